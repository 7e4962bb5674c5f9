"""Codec models: Meta's EnCodec architecture (`encodec`) and the project's own default (`framecodec`), with the
chunking bookkeeping they share with the torch-free runtime (`chunks`, which needs no torch; hence the lazy names)."""

__all__ = ["EncodecModel", "encodec_24khz", "encodec_48khz"]


def __getattr__(name: str):
    if name in __all__:
        from . import encodec

        return getattr(encodec, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
