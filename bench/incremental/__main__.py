"""``python -m bench.incremental``: runs the benchmark's command line."""

import sys

from bench.incremental.cli import main

if __name__ == "__main__":
    sys.exit(main())
