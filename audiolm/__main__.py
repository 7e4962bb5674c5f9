"""`audiolm` command line: a thin dispatcher over subcommands, each living in its own module.

Add a subcommand by adding one entry to `COMMANDS`: name -> (module, one-line help). The module defines
`add_<name>_arguments(parser)` and `run_<name>(args) -> int`. Every `CodecError` becomes `error: <message>` and exit 1.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from codec.errors import run_cli

COMMANDS: dict[str, tuple[str, str]] = {
    "tokenize": ("audiolm.cli_tokens", "print the audio tokens (strings or ids) an audio file becomes"),
    "detokenize": ("audiolm.cli_tokens", "turn audio tokens (strings or ids) back into sound"),
    "prepare": ("audiolm.data", "encode audio files into Parquet shards of codec tokens"),
    "train": ("audiolm.train", "fine-tune Gemma 3 on token shards (loss on audio tokens, restricted head)"),
    "generate": ("audiolm.generate", "sample audio from a trained run (constrained, KV-cached) and decode it"),
    "eval": ("audiolm.evaluate", "cross-entropy, accuracy and bits/s of a run against n-gram baselines"),
}


def _command(name: str, kind: str):
    module = importlib.import_module(COMMANDS[name][0])
    return getattr(module, f"{kind}_{name}" if kind == "run" else f"add_{name}_arguments")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="audiolm", description="Audio-token language models: EnCodec codes as tokens of Gemma 3."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in COMMANDS.items():
        _command(name, "add")(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    return run_cli(lambda: _command(args.command, "run")(args))


if __name__ == "__main__":
    sys.exit(main())
