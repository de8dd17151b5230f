"""``python -m bench.republish``: runs the benchmark's command line."""

import sys

from bench.republish.cli import main

if __name__ == "__main__":
    sys.exit(main())
