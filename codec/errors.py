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
