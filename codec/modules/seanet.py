"""SEANet encoder and decoder (the convolutional halves of EnCodec), layer for layer as in Meta's `encodec`.

Layer order (and so state-dict indices) matches Meta's and transformers' implementations; `codec.loaders` maps
their parameter names onto these modules.

    encoder: conv7 | [resblock, ELU, strided conv] per ratio | SLSTM | ELU, conv7   [B, C, S] -> [B, D, S / hop]
    decoder: conv7 | SLSTM | [ELU, transposed conv, resblock] per ratio | ELU, conv7  [B, D, T] -> [B, C, T * hop]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .conv import SConv1d, SConvTranspose1d, from_time_major, to_time_major
from .lstm import SLSTM


@dataclass
class SEANetConfig:
    """Architecture shared by a SEANet encoder and its decoder (defaults: EnCodec 24 kHz).

    Args:
        channels: audio channels.
        dimension: latent dimension D.
        n_filters: width of the first convolution (doubled at every downsampling).
        n_residual_layers: residual blocks per resolution.
        ratios: upsampling ratios of the decoder; the encoder downsamples by them in reverse order.
        norm: "weight_norm" or "time_group_norm" (non-causal only).
        causal: causal padding everywhere (streamable).
        pad_mode: padding of the convolutions.
        kernel_size: kernel of the first convolution.
        last_kernel_size: kernel of the last convolution.
        residual_kernel_size: kernel of the first convolution of each residual block.
        dilation_base: dilation growth across residual blocks of one resolution.
        true_skip: identity shortcut in residual blocks (else a 1x1 convolution, as EnCodec).
        compress: channel reduction inside residual blocks.
        lstm_layers: LSTM layers at the bottleneck (0 = none).
        trim_right_ratio: right share of the padding trimmed by causal transposed convolutions.
    """

    channels: int = 1
    dimension: int = 128
    n_filters: int = 32
    n_residual_layers: int = 1
    ratios: tuple[int, ...] = (8, 5, 4, 2)
    norm: str = "weight_norm"
    causal: bool = True
    pad_mode: str = "reflect"
    kernel_size: int = 7
    last_kernel_size: int = 7
    residual_kernel_size: int = 3
    dilation_base: int = 2
    true_skip: bool = False
    compress: int = 2
    lstm_layers: int = 2
    trim_right_ratio: float = 1.0

    @property
    def hop_length(self) -> int:
        return math.prod(self.ratios)

    def conv(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, dilation: int = 1):
        return SConv1d(in_channels, out_channels, kernel_size, stride, dilation, causal=self.causal, norm=self.norm,
                       pad_mode=self.pad_mode)


class ELU(nn.ELU):
    """ELU (alpha 1). On a time-major signal (the inference layout, `codec.modules.conv`) it is computed as
    `max(x, exp(min(x, 0)) - 1)` in place on one new tensor: the same function (`exp(x) - 1 >= x` for x <= 0), within
    6e-8 absolute of the `expm1` form near 0, and faster on a CPU, where PyTorch's ELU kernel spends its time in a
    vectorised `expm1` (`scripts/bench_codec.py --layers` times both). `[B, C, T]` signals get PyTorch's ELU, bit for
    bit as Meta's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3 or self.alpha != 1.0:
            return super().forward(x)
        y = x.clamp(max=0.0).exp_().sub_(1.0)
        return torch.maximum(y, x, out=y)


class SEANetResnetBlock(nn.Module):
    """`shortcut(x) + block(x)` with block = ELU, conv(k, dilation), ELU, conv(1), channels dim -> dim/compress -> dim.

    Args:
        config: the architecture.
        dim: channels in and out.
        dilation: dilation of the first convolution.
    """

    def __init__(self, config: SEANetConfig, dim: int, dilation: int = 1):
        super().__init__()
        hidden = dim // config.compress
        self.block = nn.ModuleList([
            ELU(),
            config.conv(dim, hidden, config.residual_kernel_size, dilation=dilation),
            ELU(),
            config.conv(hidden, dim, 1),
        ])
        self.shortcut = nn.Identity() if config.true_skip else config.conv(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for layer in self.block:
            y = layer(y)
        return self.shortcut(x) + y


def _run(layers: nn.ModuleList, x: torch.Tensor, time_major: bool) -> torch.Tensor:
    """`x` [B, C, T] through `layers`, inside in the time-major layout when asked and no gradient is recorded."""
    time_major = time_major and not torch.is_grad_enabled()
    if time_major:
        x = to_time_major(x)
    for layer in layers:
        x = layer(x)
    return from_time_major(x) if time_major else x


class SEANetEncoder(nn.Module):
    """Waveform `[B, channels, S]` -> latent `[B, dimension, ceil(S / hop_length)]`.

    `time_major` (off by default; inference only) runs the layers time-major (`codec.modules.conv`): its convolutions
    take 1.4-1.5x less time (`scripts/bench_codec.py --layers`; encode ~1.1x), but the latent moves by float rounding,
    which changes a few residual VQ codes at near-ties against Meta's package (41 of 36,000 on a minute of noise,
    `scripts/bench_codec.py`).

    Args:
        config: the architecture.
    """

    time_major = False

    def __init__(self, config: SEANetConfig):
        super().__init__()
        self.config = config
        width = config.n_filters
        layers: list[nn.Module] = [config.conv(config.channels, width, config.kernel_size)]
        for ratio in reversed(config.ratios):
            for j in range(config.n_residual_layers):
                layers.append(SEANetResnetBlock(config, width, dilation=config.dilation_base**j))
            layers += [ELU(), config.conv(width, width * 2, kernel_size=ratio * 2, stride=ratio)]
            width *= 2
        if config.lstm_layers:
            layers.append(SLSTM(width, config.lstm_layers))
        layers += [ELU(), config.conv(width, config.dimension, config.last_kernel_size)]
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _run(self.layers, x, self.time_major)


class SEANetDecoder(nn.Module):
    """Latent `[B, dimension, T]` -> waveform `[B, channels, T * hop_length]`.

    `time_major` (on by default; inference only) runs the layers time-major (`codec.modules.conv`): the waveform
    equals the `[B, C, T]` computation within float rounding, and the convolutions take 1.5x less time on a CPU.

    Args:
        config: the architecture.
    """

    time_major = True

    def __init__(self, config: SEANetConfig):
        super().__init__()
        self.config = config
        width = config.n_filters * 2 ** len(config.ratios)
        layers: list[nn.Module] = [config.conv(config.dimension, width, config.kernel_size)]
        if config.lstm_layers:
            layers.append(SLSTM(width, config.lstm_layers))
        for ratio in config.ratios:
            layers += [
                ELU(),
                SConvTranspose1d(width, width // 2, kernel_size=ratio * 2, stride=ratio, causal=config.causal,
                                 norm=config.norm, trim_right_ratio=config.trim_right_ratio),
            ]
            width //= 2
            for j in range(config.n_residual_layers):
                layers.append(SEANetResnetBlock(config, width, dilation=config.dilation_base**j))
        layers += [ELU(), config.conv(width, config.channels, config.last_kernel_size)]
        self.layers = nn.ModuleList(layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return _run(self.layers, z, self.time_major)
