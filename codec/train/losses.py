"""Differentiable training losses for codecs (kept apart from `codec.metrics`, which evaluates and never trains).

All losses take waveforms `[B, 1, S]` (prediction first, target second) and return a scalar; lower is better.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn


class MultiScaleMelLoss(nn.Module):
    """Sum over STFT scales of L1 on log-mel plus L1 on linear mel (EnCodec's multi-scale spectral reconstruction).

    Args:
        sample_rate: audio rate in Hz.
        scales: FFT sizes; hop = n_fft / 4, mel bins = min(n_mels, n_fft / 8).
        n_mels: mel bins at the largest scales.
        eps: floor inside the log.
    """

    def __init__(self, sample_rate: int, scales: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048), n_mels: int = 80,
                 eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.mels = nn.ModuleList(
            torchaudio.transforms.MelSpectrogram(
                sample_rate=sample_rate, n_fft=n, hop_length=n // 4, n_mels=min(n_mels, n // 8), power=1.0,
                normalized=False, center=True, f_min=0.0, norm="slaney", mel_scale="slaney",
            )
            for n in scales
        )

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = prediction.new_zeros(())
        for mel in self.mels:
            p, t = mel(prediction), mel(target)
            loss = loss + F.l1_loss(p, t) + F.l1_loss(torch.log(p + self.eps), torch.log(t + self.eps))
        return loss / len(self.mels)


def compressed_spectrum_loss(prediction: torch.Tensor, target: torch.Tensor, power: float = 0.3) -> torch.Tensor:
    """Phase-aware loss between complex spectra `[B, F, T]`: MSE of power-law compressed complex values + magnitudes.

    Compressing |X| to |X|^0.3 keeps quiet bins from being ignored; the complex term is what teaches the decoder a
    coherent phase, which a mel loss cannot see (as in MP-SENet / "compressed spectral" losses).
    """
    pm, tm = prediction.abs() + 1e-7, target.abs() + 1e-7
    pc, tc = prediction * pm.pow(power - 1), target * tm.pow(power - 1)
    return F.mse_loss(torch.view_as_real(pc), torch.view_as_real(tc)) + F.mse_loss(pm.pow(power), tm.pow(power))


def time_l1_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute sample error."""
    return F.l1_loss(prediction, target)


def hinge_discriminator_loss(real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """Hinge loss for the discriminator: mean(relu(1 - D(x))) + mean(relu(1 + D(G(z)))), averaged over
    sub-discriminators."""
    loss = real_logits[0].new_zeros(())
    for real, fake in zip(real_logits, fake_logits, strict=True):
        loss = loss + F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return loss / len(real_logits)


def hinge_generator_loss(fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """Hinge loss for the generator: mean(relu(1 - D(G(z)))), averaged over sub-discriminators."""
    return sum(F.relu(1 - fake).mean() for fake in fake_logits) / len(fake_logits)


def feature_matching_loss(real_features: list[list[torch.Tensor]],
                          fake_features: list[list[torch.Tensor]]) -> torch.Tensor:
    """Relative L1 between discriminator feature maps of real and generated audio (EnCodec's normalisation)."""
    loss, count = None, 0
    for real_maps, fake_maps in zip(real_features, fake_features, strict=True):
        for real, fake in zip(real_maps, fake_maps, strict=True):
            term = F.l1_loss(fake, real.detach()) / (real.detach().abs().mean() + 1e-8)
            loss = term if loss is None else loss + term
            count += 1
    return loss / max(count, 1)
