"""How many duplicate messages the reapers send in a normal run (``python -m bench.republish``)."""
