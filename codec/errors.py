"""Errors the toolkit raises on purpose.

Every error a user can cause (bad file, wrong bandwidth, corrupted container, missing weights) is a `CodecError`
with a one-line message. CLIs print `error: <message>` and exit non-zero; anything else is a bug.
"""


class CodecError(Exception):
    """A user-facing error: the message is one line that says what is wrong and, where possible, what to do."""


class AudioError(CodecError):
    """The input audio cannot be read, is empty, or holds NaN/Inf samples."""


class ContainerError(CodecError):
    """An .ecdc file is truncated, corrupted, of an unknown version, or made with other weights."""


class WeightsError(CodecError):
    """Model weights are missing, unreadable, unsafe (pickled code) or do not match the architecture."""


class BandwidthError(CodecError):
    """The model does not offer the requested bandwidth."""


def run_cli(action) -> int:
    """Runs a CLI action (a callable returning an exit status): user errors become one line on stderr.

    `CodecError` -> `error: <message>`, exit 1; an OS error (permission denied, disk full) likewise; Ctrl-C -> 130.
    Anything else is a bug and keeps its traceback.
    """
    import sys

    try:
        return int(action() or 0)
    except CodecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
