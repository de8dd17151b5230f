"""Benchmarks of embedq's model runtime, run as modules (``python -m bench.runtime``).

Results go to ``bench/results/``; corpora are read from ``../shared/data`` and never copied here.
"""
