"""Print the API's OpenAPI schema: ``python -m embedq.api.http.openapi > docs/openapi.json``.

The schema does not depend on any service, so it is built on a throwaway
embedded configuration; a test checks the copy in ``docs/`` is current.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any


def openapi_schema() -> dict[str, Any]:
    from embedq.api.http.app import create_app
    from embedq.settings import Settings

    with tempfile.TemporaryDirectory(prefix="embedq-openapi-") as home:
        settings = Settings(home=Path(home), api_dev_mode=True, qdrant_url="http://127.0.0.1:1")
        return create_app(settings).openapi()


def main() -> int:
    json.dump(openapi_schema(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
