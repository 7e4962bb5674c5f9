"""Neural audio codecs: audio <-> residual-VQ codes `[B, K, T]` <-> .ecdc files, with quality metrics.

`load_codec(name)` gives a `Codec`; see `codec.interface` for what every codec offers.
"""

from .errors import AudioError, BandwidthError, CodecError, ContainerError, WeightsError
from .interface import Codec, EncodedAudio, WeightsInfo
from .registry import load_codec

__all__ = ["AudioError", "BandwidthError", "Codec", "CodecError", "ContainerError", "EncodedAudio", "WeightsError",
           "WeightsInfo", "load_codec"]
