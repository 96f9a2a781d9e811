"""`python -m devtools.store copy --from sqlite:///var/leadflow.db --to postgresql://…`:
move an SQLite store into PostgreSQL (see shared/storecopy.py). Stop every service first."""

from __future__ import annotations

import argparse
import asyncio
import sys

from shared.storecopy import CopyRefused, copy_store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.store")
    commands = parser.add_subparsers(dest="command", required=True)
    copy = commands.add_parser("copy", help="copy an SQLite store into an empty PostgreSQL one")
    copy.add_argument("--from", dest="source", required=True, help="sqlite:///path/leadflow.db")
    copy.add_argument("--to", dest="target", required=True, help="postgresql://user@host/db")
    args = parser.parse_args(argv)
    try:
        copied = asyncio.run(copy_store(args.source, args.target, say=print))
    except CopyRefused as e:
        print(f"refused: {e}", file=sys.stderr)
        return 2
    print(f"copied {sum(copied.values())} rows in {len(copied)} tables")
    return 0


if __name__ == "__main__":
    sys.exit(main())
