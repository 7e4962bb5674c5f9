"""`FrameCodec`'s signal processing in numpy (float32): analysis STFT, encoder features, inverse STFT.

Mirrors `codec.models.framecodec.FrameSTFT` and `spectral_features` (see them for the framing: frame t is centred on
hop block t; n_fft is a multiple of the hop). Shapes: waveforms `[B, S]`; spectra and features frame-major
`[B, T, F]`, F = n_fft / 2 + 1, which is how the FFT makes them and how the exported graphs take them (the torch model
is channel-major, `[B, F, T]`; transposing a 20 s spectrum in numpy costs more than the FFT).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def hann_window(n_fft: int) -> np.ndarray:
    """Periodic Hann window (as `torch.hann_window(n_fft, periodic=True)`), float32."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


def stft(wav: np.ndarray, n_fft: int, hop: int, window: np.ndarray) -> np.ndarray:
    """wav [B, S], S a multiple of hop -> complex64 spectrum, frame-major [B, S / hop, F]."""
    pad = (n_fft - hop) // 2
    padded = np.pad(wav, [(0, 0), (pad, pad)])
    frames = sliding_window_view(padded, n_fft, axis=-1)[:, ::hop] * window  # [B, T, n_fft]
    return np.fft.rfft(frames, axis=-1).astype(np.complex64, copy=False)


def spectral_features(spec: np.ndarray) -> np.ndarray:
    """complex spectrum [B, T, F] -> [B, T, 3F]: log power and power-law compressed real and imaginary parts."""
    magnitude = np.abs(spec)
    gain = (magnitude + np.float32(1e-7)) ** np.float32(-0.7)
    F = spec.shape[-1]
    out = np.empty((*spec.shape[:2], 3 * F), np.float32)
    np.log(magnitude * magnitude + np.float32(1e-5), out=out[..., :F])
    np.multiply(spec.real, gain, out=out[..., F: 2 * F])
    np.multiply(spec.imag, gain, out=out[..., 2 * F:])
    return out


def istft(magnitude: np.ndarray, phase: np.ndarray, n_fft: int, hop: int, window: np.ndarray) -> np.ndarray:
    """Spectrum as magnitude and phase [B, T, F] -> wav [B, T * hop]: windowed inverse FFT, overlap-add, divided by
    the summed squared window, the analysis padding trimmed."""
    B, T, _ = magnitude.shape
    spec = np.empty(magnitude.shape, np.complex64)
    np.multiply(magnitude, np.cos(phase), out=spec.real)  # as torch.polar; a complex exp is 5x slower
    np.multiply(magnitude, np.sin(phase), out=spec.imag)
    frames = np.fft.irfft(spec, n=n_fft, axis=-1).astype(np.float32, copy=False) * window  # [B, T, n_fft]
    parts = n_fft // hop
    pieces = frames.reshape(B, T, parts, hop)
    out = np.zeros((B, T + parts - 1, hop), np.float32)
    envelope = np.zeros((T + parts - 1, hop), np.float32)
    square = (window * window).reshape(parts, hop)
    for j in range(parts):  # piece j of frame t lands on hop block t + j
        out[:, j: j + T] += pieces[:, :, j]
        envelope[j: j + T] += square[j]
    out = (out / np.maximum(envelope, np.float32(1e-8))).reshape(B, -1)
    pad = (n_fft - hop) // 2
    return out[:, pad: out.shape[1] - pad]
