"""Errors of the audio-LM bridge: every user-caused one is a `codec.errors.CodecError` with a one-line message."""

from codec.errors import CodecError


class BridgeError(CodecError):
    """A token sequence, vocabulary or saved bridge does not fit the codec or the pattern it is used with."""


class GemmaNotFoundError(CodecError):
    """No Gemma 3 weights could be found at the requested name or path (no download is attempted)."""
