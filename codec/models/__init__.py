"""Codec models: Meta's EnCodec architecture (`encodec`) and the project's own default (`framecodec`)."""

from .encodec import EncodecModel, encodec_24khz, encodec_48khz

__all__ = ["EncodecModel", "encodec_24khz", "encodec_48khz"]
