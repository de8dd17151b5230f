"""``python -m bench.runtime``: runs the benchmark's command line."""

import sys

from bench.runtime.cli import main

if __name__ == "__main__":
    sys.exit(main())
