"""``python -m bench.pipeline``: runs the benchmark's command line."""

import sys

from bench.pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main())
