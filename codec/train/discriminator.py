"""Multi-scale STFT discriminator (as described in the EnCodec paper), written for this project.

Each sub-discriminator looks at the complex STFT (real and imaginary parts as two channels) at one resolution through
2-D convolutions dilated along time; it returns logits and its intermediate feature maps (for feature matching).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class STFTDiscriminator(nn.Module):
    """One resolution. `[B, 1, S]` -> (logits [B, 1, T', F'], feature maps).

    Args:
        n_fft: FFT size (hop n_fft / 4, Hann window).
        channels: conv width.
        dilations: time dilations of the middle convolutions.
    """

    def __init__(self, n_fft: int, channels: int = 32, dilations: tuple[int, ...] = (1, 2, 4)):
        super().__init__()
        self.n_fft = n_fft
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        layers = [weight_norm(nn.Conv2d(2, channels, (3, 9), padding=(1, 4)))]
        for d in dilations:
            layers.append(weight_norm(nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), dilation=(d, 1),
                                                padding=(d, 4))))
        layers.append(weight_norm(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))))
        self.convs = nn.ModuleList(layers)
        self.out = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))
        self.activation = nn.LeakyReLU(0.2)

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = torch.stft(wav[:, 0], self.n_fft, self.n_fft // 4, window=self.window, return_complex=True)
        x = torch.view_as_real(spec).permute(0, 3, 2, 1)  # [B, 2, T, F]
        features = []
        for conv in self.convs:
            x = self.activation(conv(x))
            features.append(x)
        return self.out(x), features


class MultiScaleSTFTDiscriminator(nn.Module):
    """Several `STFTDiscriminator`s at different FFT sizes.

    Args:
        n_ffts: one sub-discriminator per FFT size.
        channels: conv width of each.
    """

    def __init__(self, n_ffts: tuple[int, ...] = (2048, 1024, 512, 256, 128), channels: int = 32):
        super().__init__()
        self.discriminators = nn.ModuleList(STFTDiscriminator(n, channels) for n in n_ffts)

    def forward(self, wav: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        logits, features = [], []
        for disc in self.discriminators:
            out, maps = disc(wav)
            logits.append(out)
            features.append(maps)
        return logits, features
