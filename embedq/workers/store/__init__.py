"""The parts of the Qdrant writer; import them from ``embedq.workers.qdrant_store``."""
