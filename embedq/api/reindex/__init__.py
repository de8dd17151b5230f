"""Re-indexing, producer side: starting a re-index, rolling back, dropping unused versions."""
