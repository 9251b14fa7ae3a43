#!/usr/bin/env python
"""Django's command-line utility. platform/ is a source folder (never a package named `platform`)."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def main() -> None:
    sys.path.insert(0, str(ROOT / "platform"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    if sys.argv[1:2] != ["runplatform"]:
        # Find the data of the platform `make run` started (it records its settings), unless the
        # environment names a DATA_DIR itself: see platform/config/recorded.py.
        from config import recorded

        recorded.apply(os.environ, say=sys.stderr)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
