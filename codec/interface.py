"""The `Codec` interface: everything `audiolm` (and the CLI) may rely on from a neural audio codec.

Shapes: waveforms are `[B, C, S]` (batch, channels, samples) at `sample_rate`; codes are `[B, K, T]` (K codebooks,
T frames at `frame_rate`), integers in `0..cardinality-1`.
"""

from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .arrays import is_tensor
from .errors import BandwidthError

if TYPE_CHECKING:
    import torch


@dataclass
class EncodedAudio:
    """The output of `Codec.encode`.

    Args:
        codes: `[B, K, T]` int64 codes (a torch tensor; a numpy array from the torch-free runtime).
        scales: `[B, N]` float per-segment scales for models that normalise each segment (EnCodec 48 kHz), else None.
        segment_frames: frames per segment when `scales` is set (segments are concatenated along T), else None.
        length: number of waveform samples that were encoded (decode trims to it).
    """

    codes: torch.Tensor
    scales: torch.Tensor | None = None
    segment_frames: int | None = None
    length: int | None = None

    @property
    def num_codebooks(self) -> int:
        return self.codes.shape[1]


@dataclass(frozen=True)
class WeightsInfo:
    """Which weights a codec was built from: a name users can type and the sha256 of the weights file."""

    name: str
    sha256: str
    path: str | None = None


def file_sha256(path) -> str:
    """sha256 (hex) of a file, read in 1 MiB blocks: how weights files are identified (`WeightsInfo.sha256`)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class Codec(ABC):
    """A neural audio codec with residual vector quantisation.

    Implementations set: `sample_rate`, `channels`, `frame_rate`, `cardinality`, `max_codebooks`, `bandwidths`
    (kbps, ascending) and `weights` (a `WeightsInfo`). `runtime` says what runs it: "torch" (tensors in and out) or
    "onnxruntime" (`codec.runtime`: numpy arrays in and out, no torch in the process).
    """

    runtime: str = "torch"

    sample_rate: int
    channels: int
    frame_rate: float
    cardinality: int = 1024
    max_codebooks: int
    bandwidths: tuple[float, ...]
    weights: WeightsInfo

    @property
    def name(self) -> str:
        return self.weights.name

    @property
    def bits_per_code(self) -> int:
        return int(math.log2(self.cardinality))

    def codebooks_for(self, bandwidth: float) -> int:
        """Number of codebooks K used at `bandwidth` kbps; raises `BandwidthError` for one the model does not offer."""
        if not any(math.isclose(bandwidth, b) for b in self.bandwidths):
            offered = ", ".join(f"{b:g}" for b in self.bandwidths)
            raise BandwidthError(f"{self.name} does not offer {bandwidth:g} kbps; choose one of: {offered}")
        per_codebook = self.frame_rate * self.bits_per_code / 1000  # kbps one codebook costs
        return max(1, int(round(bandwidth / per_codebook)))

    def bandwidth_for(self, num_codebooks: int) -> float:
        """Nominal kbps of `num_codebooks` codebooks."""
        return num_codebooks * self.frame_rate * self.bits_per_code / 1000

    @abstractmethod
    def encode(self, wav: torch.Tensor, bandwidth: float) -> EncodedAudio:
        """Encode `wav` `[B, C, S]` (at `sample_rate`, `channels`) into codes `[B, K, T]`."""

    @abstractmethod
    def decode(self, encoded: EncodedAudio) -> torch.Tensor:
        """Decode codes back to a waveform `[B, C, S]`; trims to `encoded.length` when it is set."""

    def decode_codes(self, codes: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """Decode bare codes `[B, K, T]` (models without per-segment scales only)."""
        return self.decode(EncodedAudio(codes=codes, length=length))

    def num_frames(self, num_samples: int) -> int:
        """Frames T that `num_samples` samples encode to."""
        hop = self.sample_rate / self.frame_rate
        return int(math.ceil(num_samples / hop))


class CodesBuffer:
    """Codes `[B, K, T]` gathered chunk by chunk (the streamed encoders) into one buffer that doubles when full.

    Keeping one small tensor per chunk until the end (and concatenating them) left a long-lived 48 KB allocation
    after each chunk's megabyte-sized buffers on glibc's heap; the next, slightly larger buffer then no longer fit
    the freed hole, and in some runs the heap grew by about one 10 s block per block (`codec compress` of an hour:
    from 750 MB to 1.1-1.5 GB, VmRSS sampled over time). One buffer, reallocated log2(T) times, does not do that.
    """

    def __init__(self):
        self.buffer: torch.Tensor | None = None
        self.filled = 0

    def append(self, piece: torch.Tensor) -> None:
        need = self.filled + piece.shape[-1]
        if self.buffer is None or need > self.buffer.shape[-1]:
            capacity = max(need, 2 * (0 if self.buffer is None else self.buffer.shape[-1]), 1024)
            shape = (*piece.shape[:-1], capacity)
            grown = piece.new_empty(shape) if is_tensor(piece) else np.empty(shape, piece.dtype)
            if self.buffer is not None:
                grown[..., : self.filled] = self.buffer[..., : self.filled]
            self.buffer = grown
        self.buffer[..., self.filled: need] = piece
        self.filled = need

    def result(self) -> torch.Tensor:
        """The codes appended so far, `[B, K, T]`, as a tensor of their own."""
        if self.buffer is None:
            raise ValueError("no codes were appended")
        kept = self.buffer[..., : self.filled]
        return kept.clone() if is_tensor(kept) else kept.copy()
