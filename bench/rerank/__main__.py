"""``python -m bench.rerank``: runs the benchmark's command line."""

import sys

from bench.rerank.cli import main

if __name__ == "__main__":
    sys.exit(main())
