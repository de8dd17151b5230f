"""How soon a cancelled job's running batch stops in a real worker (``python -m bench.cancel``)."""
