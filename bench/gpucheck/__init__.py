"""``make gpu-check``: the GPU tests and the GPU benchmarks, in one timed run, into one folder.

Run as ``python -m bench.gpucheck --out DIR``; see ``cli.py`` for the flags and ``parts.py``
for what runs and how long each part may take.
"""
