"""Re-indexing, worker side: catching up with ingestions and swapping the alias."""
