import sys

from bench.gpucheck.cli import main

sys.exit(main())
