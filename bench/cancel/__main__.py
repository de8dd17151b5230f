"""``python -m bench.cancel``: runs the benchmark's command line."""

import sys

from bench.cancel.cli import main

if __name__ == "__main__":
    sys.exit(main())
