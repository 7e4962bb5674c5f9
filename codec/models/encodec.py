"""Meta's EnCodec (SEANet encoder, residual VQ, SEANet decoder) behind the project's `Codec` interface.

Two presets mirror Meta's released models: `encodec_24khz()` (mono, causal, 1.5-24 kbps, 75 frames/s, whole signal
at once) and `encodec_48khz()` (stereo, non-causal with time group norm, 3-24 kbps, 150 frames/s, 1 s segments with
1 % overlap, each segment normalised by its RMS and recombined by linear overlap-add). They build the architecture
with random weights; `codec.loaders` fills them from Meta's or transformers' checkpoints. Numerics follow Meta's
`encodec` package operation for operation, so codes from the same weights are identical.
"""

from __future__ import annotations

import hashlib
import math

import torch
from torch import nn

from ..errors import AudioError, CodecError
from ..interface import Codec, EncodedAudio, WeightsInfo
from ..modules import SEANetConfig, SEANetDecoder, SEANetEncoder, fold_weight_norm
from ..quantization import ResidualVectorQuantizer


def state_dict_sha256(module: nn.Module) -> str:
    """sha256 over a module's state-dict names and tensor bytes (identifies weights that have no file)."""
    digest = hashlib.sha256()
    for key, tensor in module.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def linear_overlap_add(frames: list[torch.Tensor], stride: int) -> torch.Tensor:
    """Join segments `[B, C, S_i]` that start `stride` samples apart, cross-fading the overlaps linearly.

    Each segment is weighted by a triangle peaking at its middle and the sum is divided by the summed weights, the
    same arithmetic (and order) as Meta's `_linear_overlap_add`. Returns `[B, C, stride * (N - 1) + S_last]`.
    """
    if not frames:
        raise ValueError("linear_overlap_add needs at least one segment")
    first = frames[0]
    total = stride * (len(frames) - 1) + frames[-1].shape[-1]
    weight = overlap_weight(first.shape[-1], first.dtype, first.device)
    out = torch.zeros(*first.shape[:-1], total, dtype=first.dtype, device=first.device)
    sum_weight = torch.zeros(total, dtype=first.dtype, device=first.device)
    for i, frame in enumerate(frames):
        n, offset = frame.shape[-1], i * stride
        out[..., offset : offset + n] += weight[:n] * frame
        sum_weight[offset : offset + n] += weight[:n]
    return out / sum_weight


def overlap_weight(length: int, dtype: torch.dtype, device: torch.device | str = "cpu") -> torch.Tensor:
    """Triangle weight [length] used by `linear_overlap_add` (positive everywhere, peak 0.5 at the middle)."""
    t = torch.linspace(0, 1, length + 2, dtype=dtype, device=device)[1:-1]
    return 0.5 - (t - 0.5).abs()


class EncodecModel(nn.Module, Codec):
    """EnCodec: waveform `[B, C, S]` <-> codes `[B, K, T]`.

    Args:
        encoder: SEANet encoder, `[B, C, S]` -> latent `[B, D, T]`.
        decoder: SEANet decoder, latent `[B, D, T]` -> `[B, C, T * hop]`.
        quantizer: residual VQ over D with `max_codebooks` codebooks of 1024 entries.
        sample_rate: audio sample rate (Hz).
        channels: audio channels.
        bandwidths: offered bandwidths in kbps, ascending.
        normalize: divide each segment by its RMS before encoding (the scale travels with the codes).
        segment: segment duration in seconds, or None to encode the whole signal at once.
        overlap: overlap between segments as a fraction of `segment`.
        name: architecture name as Meta's tools know it ("encodec_24khz"), written into .ecdc headers.
        weights: which weights these are; defaults to `name` and a hash of the current state dict.
    """

    def __init__(
        self,
        encoder: SEANetEncoder,
        decoder: SEANetDecoder,
        quantizer: ResidualVectorQuantizer,
        sample_rate: int,
        channels: int,
        bandwidths: tuple[float, ...],
        normalize: bool = False,
        segment: float | None = None,
        overlap: float = 0.01,
        name: str = "unset",
        weights: WeightsInfo | None = None,
    ):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.quantizer = quantizer
        self.sample_rate = sample_rate
        self.channels = channels
        self.bandwidths = tuple(float(b) for b in bandwidths)
        self.normalize = normalize
        self.segment = segment
        self.overlap = overlap
        self.arch = name
        self.hop_length = encoder.config.hop_length
        self.frame_rate = math.ceil(sample_rate / self.hop_length)
        self.max_codebooks = quantizer.num_codebooks
        self.cardinality = quantizer.codebook_size
        self.weights = weights or WeightsInfo(name, state_dict_sha256(self))
        self.eval()

    # -- geometry -------------------------------------------------------------------------------------------------

    @property
    def causal(self) -> bool:
        return self.encoder.config.causal

    @property
    def segment_length(self) -> int | None:
        """Samples per segment, or None when the whole signal is one segment."""
        return None if self.segment is None else int(self.segment * self.sample_rate)

    @property
    def segment_stride(self) -> int | None:
        """Samples between segment starts."""
        length = self.segment_length
        return None if length is None else max(1, int((1 - self.overlap) * length))

    @property
    def segment_frames(self) -> int | None:
        """Frames T of one full segment."""
        length = self.segment_length
        return None if length is None else math.ceil(length / self.hop_length)

    def fold_weight_norm(self) -> EncodecModel:
        """Fold weight norm into plain weights once (identical outputs, faster inference); returns self."""
        fold_weight_norm(self)
        return self

    def codebook_vectors(self) -> torch.Tensor:
        """All codebooks `[K, 1024, D]`."""
        return self.quantizer.codebook_vectors()

    # -- one segment ----------------------------------------------------------------------------------------------

    def encode_segment(self, wav: torch.Tensor, num_codebooks: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One segment `[B, C, s]` -> codes `[B, K, ceil(s / hop)]` and its scale `[B, 1]` (None unless normalize)."""
        scale = None
        if self.normalize:
            mono = wav.mean(dim=1, keepdim=True)
            volume = mono.pow(2).mean(dim=2, keepdim=True).sqrt()
            scale = 1e-8 + volume  # [B, 1, 1]
            wav = wav / scale
            scale = scale.view(-1, 1)
        latent = self.encoder(wav)  # [B, D, T]
        return self.quantizer.encode(latent, num_codebooks), scale

    def decode_segment(self, codes: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """Codes `[B, K, t]` (and scale `[B, 1]`) -> waveform `[B, C, t * hop]`."""
        out = self.decoder(self.quantizer.decode(codes))
        if scale is not None:
            out = out * scale.view(-1, 1, 1)
        return out

    # -- Codec interface ------------------------------------------------------------------------------------------

    def check_audio(self, wav: torch.Tensor) -> None:
        if wav.dim() != 3 or wav.shape[1] != self.channels:
            raise AudioError(f"{self.arch} expects audio [B, {self.channels}, S], got {list(wav.shape)}")
        if wav.shape[-1] == 0:
            raise AudioError("the audio is empty (0 samples)")

    def encode(self, wav: torch.Tensor, bandwidth: float) -> EncodedAudio:
        """Waveform `[B, C, S]` -> codes `[B, K, T]`; segmented models concatenate segments along T, scales `[B, N]`."""
        self.check_audio(wav)
        num_codebooks = self.codebooks_for(bandwidth)
        length = wav.shape[-1]
        with torch.inference_mode():
            if self.segment_length is None:
                codes, scale = self.encode_segment(wav, num_codebooks)
                return EncodedAudio(codes=codes, scales=scale, segment_frames=None, length=length)
            pieces = [self.encode_segment(wav[..., offset : offset + self.segment_length], num_codebooks)
                      for offset in range(0, length, self.segment_stride)]
        codes = torch.cat([c for c, _ in pieces], dim=-1)
        scales = torch.cat([s for _, s in pieces], dim=-1) if self.normalize else None
        return EncodedAudio(codes=codes, scales=scales, segment_frames=self.segment_frames, length=length)

    def split_segments(self, encoded: EncodedAudio) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Per-segment (codes `[B, K, t]`, scale `[B, 1]` or None) of a segmented model's `EncodedAudio`."""
        frames = encoded.segment_frames or self.segment_frames
        pieces = torch.split(encoded.codes, frames, dim=-1)
        if encoded.scales is None:
            if self.normalize:
                raise CodecError(f"{self.arch} needs per-segment scales to decode, and none were given")
            return [(p, None) for p in pieces]
        if encoded.scales.shape[-1] != len(pieces):
            raise CodecError(f"{len(pieces)} segments of codes but {encoded.scales.shape[-1]} scales")
        return [(p, encoded.scales[:, i : i + 1]) for i, p in enumerate(pieces)]

    def decode(self, encoded: EncodedAudio) -> torch.Tensor:
        """Codes -> waveform `[B, C, S]`, trimmed to `encoded.length` when set."""
        codes = encoded.codes
        if codes.dim() != 3 or not 1 <= codes.shape[1] <= self.max_codebooks:
            raise CodecError(f"{self.arch} decodes codes [B, K<={self.max_codebooks}, T], got {list(codes.shape)}")
        with torch.inference_mode():
            if self.segment_length is None:
                scale = encoded.scales[:, :1] if encoded.scales is not None else None
                wav = self.decode_segment(codes, scale)
            else:
                frames = [self.decode_segment(c, s) for c, s in self.split_segments(encoded)]
                wav = linear_overlap_add(frames, self.segment_stride)
        if encoded.length is not None:
            wav = wav[..., : encoded.length]
        return wav


def encodec_24khz(name: str = "encodec_24khz", weights: WeightsInfo | None = None) -> EncodecModel:
    """EnCodec 24 kHz mono, causal, weight norm, 32 codebooks (1.5/3/6/12/24 kbps), random weights."""
    config = SEANetConfig(channels=1, norm="weight_norm", causal=True)
    quantizer = ResidualVectorQuantizer(dim=config.dimension, num_codebooks=32, codebook_size=1024)
    return EncodecModel(SEANetEncoder(config), SEANetDecoder(config), quantizer, sample_rate=24_000, channels=1,
                        bandwidths=(1.5, 3.0, 6.0, 12.0, 24.0), normalize=False, segment=None, name=name,
                        weights=weights)


def encodec_48khz(name: str = "encodec_48khz", weights: WeightsInfo | None = None) -> EncodecModel:
    """EnCodec 48 kHz stereo, non-causal, time group norm, 16 codebooks (3/6/12/24 kbps), 1 s segments, random."""
    config = SEANetConfig(channels=2, norm="time_group_norm", causal=False)
    quantizer = ResidualVectorQuantizer(dim=config.dimension, num_codebooks=16, codebook_size=1024)
    return EncodecModel(SEANetEncoder(config), SEANetDecoder(config), quantizer, sample_rate=48_000, channels=2,
                        bandwidths=(3.0, 6.0, 12.0, 24.0), normalize=True, segment=1.0, overlap=0.01, name=name,
                        weights=weights)
