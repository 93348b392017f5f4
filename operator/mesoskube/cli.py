"""The `mesoskube` command."""

from __future__ import annotations

import argparse
import importlib
import sys

# Subcommands register themselves; each lives next to the code it drives.
_COMMANDS = (
    "mesoskube.cluster.cli",
    "mesoskube.master.cli",
    "mesoskube.frameworks.spark.cli",
    "mesoskube.frameworks.pods.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mesoskube", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for module in _COMMANDS:
        try:
            importlib.import_module(module).register(sub)
        except ModuleNotFoundError as e:
            if e.name and module.startswith(e.name):
                continue  # that part is not built yet
            raise
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
