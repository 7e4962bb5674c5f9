"""The `codec` command line: parse, call the package, print. Errors become one line and exit status 1."""

from __future__ import annotations

import argparse
import sys

from .errors import CodecError


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codec", description="Neural audio codec toolkit (EnCodec and friends).")
    sub = parser.add_subparsers(dest="command", required=True)
    from .cli import add_parsers as add_main
    from .train.cli import add_parsers as add_train

    add_main(sub)
    add_train(sub)
    from .sweep import add_parser as add_sweep

    add_sweep(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CodecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
