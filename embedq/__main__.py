"""The ``embedq`` command (and ``python -m embedq``).

embedq's dependencies are checked before the command line imports any of them, so an
unsupported or missing package is one line saying how to fix it, never a traceback from
inside that package.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from embedq.dependencies import exit_if_unsupported

    exit_if_unsupported()
    from embedq.api.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
