"""The `codec` command line: parse, call the package, print. Errors become one line and exit status 1."""

from __future__ import annotations

import argparse
import sys

from .errors import run_cli


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codec", description="Neural audio codec toolkit (EnCodec and friends).")
    sub = parser.add_subparsers(dest="command", required=True)
    from .cli import add_parsers as add_main
    from .cli import add_sweep_parser
    from .train.cli import add_parsers as add_train

    add_main(sub)
    add_train(sub)
    add_sweep_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    return run_cli(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
