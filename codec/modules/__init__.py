"""Building blocks of SEANet codecs (EnCodec): padded convolutions, the skip LSTM, encoder and decoder."""

from .conv import (
    SConv1d,
    SConvTranspose1d,
    conv_transpose1d_by_matmul,
    conv_transpose1d_time_major,
    extra_padding_for_conv1d,
    fold_weight_norm,
    from_time_major,
    pad1d,
    to_time_major,
    unpad1d,
)
from .lstm import SLSTM
from .seanet import SEANetConfig, SEANetDecoder, SEANetEncoder, SEANetResnetBlock

__all__ = [
    "SConv1d",
    "SConvTranspose1d",
    "SEANetConfig",
    "SEANetDecoder",
    "SEANetEncoder",
    "SEANetResnetBlock",
    "SLSTM",
    "conv_transpose1d_by_matmul",
    "conv_transpose1d_time_major",
    "extra_padding_for_conv1d",
    "fold_weight_norm",
    "from_time_major",
    "pad1d",
    "to_time_major",
    "unpad1d",
]
