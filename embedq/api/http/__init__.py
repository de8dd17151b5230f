"""The HTTP API (FastAPI): producers in any language submit jobs and poll them."""
