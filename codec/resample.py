"""Band-limited resampling in numpy, the same filter as `torchaudio.functional.resample` with its defaults.

The torch path resamples with torchaudio (`codec.audio.convert_audio`). The torch-free runtime (`codec.runtime`) must
not import torch, and should still feed the codec what the torch path feeds it, or the codes of a 44.1 kHz file would
depend on the runtime. So this is torchaudio's windowed-sinc filter (`sinc_interp_hann`, 6 zero crossings, roll-off
0.99, kernel computed in the signal's float type) applied as the same strided polyphase product; outputs agree to
float rounding (tests/codec/test_resample.py). Why not `soxr` or `scipy.signal.resample_poly`: their filters differ,
and scipy costs most of a second to import.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

ZERO_CROSSINGS = 6
ROLLOFF = 0.99
_BLOCK_FRAMES = 1 << 14  # polyphase frames computed at once: bounds the temporary copy of input windows


def sinc_kernel(from_rate: int, to_rate: int, dtype=np.float32) -> tuple[np.ndarray, int]:
    """The polyphase filter `[new, 2 * width + orig]` for rates reduced by their gcd, and `width` (input samples of
    context on each side). Output phase j of each block of `new` samples uses row j."""
    gcd = math.gcd(from_rate, to_rate)
    orig, new = from_rate // gcd, to_rate // gcd
    base = min(orig, new) * ROLLOFF
    width = math.ceil(ZERO_CROSSINGS * orig / base)
    idx = np.arange(-width, width + orig, dtype=dtype)[None] / dtype(orig)
    t = (np.arange(0, -new, -1, dtype=dtype)[:, None] / dtype(new) + idx) * dtype(base)
    t = np.clip(t, -ZERO_CROSSINGS, ZERO_CROSSINGS)
    window = np.cos(t * dtype(math.pi / ZERO_CROSSINGS / 2)) ** 2
    t = t * dtype(math.pi)
    with np.errstate(invalid="ignore", divide="ignore"):
        kernel = np.where(t == 0, dtype(1.0), np.sin(t) / t)
    return (kernel * window * dtype(base / orig)).astype(dtype), width


def resample(wav: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """`wav` `[..., S]` (float) at `from_rate` Hz -> `[..., ceil(S * to_rate / from_rate)]` at `to_rate` Hz."""
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
    if from_rate == to_rate:
        return wav
    kernel, width = sinc_kernel(from_rate, to_rate, wav.dtype.type)
    gcd = math.gcd(from_rate, to_rate)
    orig, new = from_rate // gcd, to_rate // gcd
    shape = wav.shape
    flat = wav.reshape(-1, shape[-1])
    length = shape[-1]
    padded = np.pad(flat, [(0, 0), (width, width + orig)])
    windows = sliding_window_view(padded, kernel.shape[1], axis=-1)[:, ::orig]  # [N, frames, taps], no copy
    frames = windows.shape[1]
    out = np.empty((flat.shape[0], frames, new), dtype=wav.dtype)
    for start in range(0, frames, _BLOCK_FRAMES):
        stop = min(start + _BLOCK_FRAMES, frames)
        out[:, start:stop] = np.ascontiguousarray(windows[:, start:stop]) @ kernel.T
    target = -(-new * length // orig)
    return out.reshape(flat.shape[0], -1)[:, :target].reshape(*shape[:-1], target)
