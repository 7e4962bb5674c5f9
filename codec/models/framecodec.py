"""The project's own default codec: a frame-rate ConvNeXt codec with an inverse-STFT head (after Vocos).

Why not SEANet for the default: SEANet upsamples 320x through strided convolutions, so most of its compute runs at
the sample rate; here every layer runs at the frame rate (75 Hz) and the waveform comes from an inverse STFT whose hop
is the codec's hop. That makes it roughly an order of magnitude cheaper per second of audio, to train and to run on a
CPU, for the same residual-VQ bottleneck (32 codebooks of 1024 entries, 75 frames/s at 24 kHz: 1.5 to 24 kbps).

    wav [B, 1, S] --STFT (n_fft 4*hop, hop 320)--> features [B, 3F, T] --ConvNeXt--> latent [B, D, T]
      --RVQ--> codes [B, K, T] --> latent --ConvNeXt--> log-magnitude, phase [B, F, T] --ISTFT--> wav [B, 1, S]

Frames are aligned so that T = ceil(S / hop): frame t is centred on the middle of hop block t.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import nn

from ..interface import Codec, EncodedAudio, WeightsInfo
from ..quantization import QuantizedResult, ResidualVectorQuantizer
from .chunks import decode_in_chunks, encode_in_chunks


@dataclass
class FrameCodecConfig:
    """Architecture of a `FrameCodec`; stored inside every checkpoint and weights file."""

    sample_rate: int = 24000
    hop_length: int = 320  # 75 frames/s at 24 kHz
    fft_factor: int = 4  # n_fft = fft_factor * hop_length (75 % window overlap)
    dim: int = 256
    intermediate_dim: int = 768
    encoder_layers: int = 3
    decoder_layers: int = 8
    kernel_size: int = 7
    encoder_embed_kernel: int = 1  # the encoder's input has 3F = 1923 channels: a wide kernel there costs MBs
    latent_dim: int = 128
    num_codebooks: int = 32
    codebook_size: int = 1024
    # EMA usage below which a code is replaced. The expected usage of a code is (vectors per step) / 1024: about 0.6
    # for batches of 8 one-second crops, so EnCodec's threshold of 2 (meant for far larger batches) would declare
    # nearly every code dead at every step.
    dead_code_threshold: float = 0.02
    bandwidths: tuple[float, ...] = field(default_factory=lambda: (1.5, 3.0, 6.0, 12.0, 24.0))

    @property
    def n_fft(self) -> int:
        return self.fft_factor * self.hop_length

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> FrameCodecConfig:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        if "bandwidths" in data:
            data["bandwidths"] = tuple(float(b) for b in data["bandwidths"])
        return cls(**data)


class ConvNeXtBlock(nn.Module):
    """Depthwise conv -> LayerNorm -> pointwise MLP -> layer scale, with a residual connection. `[B, D, T]`.

    Args:
        dim: channels D.
        intermediate_dim: hidden width of the MLP.
        kernel_size: depthwise kernel (odd; 'same' padding, non-causal).
        layer_scale: initial value of the per-channel output scale.
    """

    def __init__(self, dim: int, intermediate_dim: int, kernel_size: int = 7, layer_scale: float = 0.1):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).transpose(1, 2)  # [B, T, D]
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).transpose(1, 2)


class ConvNeXtStack(nn.Module):
    """Input conv -> LayerNorm -> N ConvNeXt blocks -> LayerNorm -> linear output. `[B, C_in, T] -> [B, C_out, T]`.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        dim, intermediate_dim, num_layers, kernel_size: the blocks.
        embed_kernel: kernel of the input conv (default: kernel_size).
    """

    def __init__(self, in_channels: int, out_channels: int, dim: int, intermediate_dim: int, num_layers: int,
                 kernel_size: int = 7, embed_kernel: int | None = None):
        super().__init__()
        embed_kernel = embed_kernel or kernel_size
        self.embed = nn.Conv1d(in_channels, dim, embed_kernel, padding=embed_kernel // 2)
        self.kernel_size = kernel_size
        self.norm_in = nn.LayerNorm(dim, eps=1e-6)
        scale = 1.0 / max(num_layers, 1)
        self.blocks = nn.ModuleList(ConvNeXtBlock(dim, intermediate_dim, kernel_size, scale) for _ in range(num_layers))
        self.norm_out = nn.LayerNorm(dim, eps=1e-6)
        self.proj = nn.Linear(dim, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm_in(self.embed(x).transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        return self.proj(self.norm_out(x.transpose(1, 2))).transpose(1, 2)

    @property
    def receptive_frames(self) -> int:
        """Frames of context on each side that influence one output frame."""
        return self.embed.kernel_size[0] // 2 + (self.kernel_size // 2) * len(self.blocks)


class FrameSTFT(nn.Module):
    """STFT/ISTFT pair with 'same' framing: S = T * hop samples <-> T frames (Hann window, n_fft = 4 hop).

    Frame t covers samples [t*hop - pad, t*hop - pad + n_fft) with pad = (n_fft - hop) / 2 (zero padded at the edges),
    so it is centred on the middle of hop block t. The ISTFT overlap-adds with the same window and divides by the
    summed squared window, which makes `istft(stft(x)) == x` up to float rounding, edges included.
    """

    def __init__(self, n_fft: int, hop_length: int):
        super().__init__()
        if (n_fft - hop_length) % 2:
            raise ValueError("n_fft - hop_length must be even")
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.pad = (n_fft - hop_length) // 2
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=False)

    def stft(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, S] with S a multiple of hop -> complex spectrum [B, F, T], F = n_fft/2 + 1."""
        padded = F.pad(wav, (self.pad, self.pad))
        return torch.stft(padded, self.n_fft, self.hop_length, window=self.window, center=False, return_complex=True)

    def istft(self, spec: torch.Tensor) -> torch.Tensor:
        """complex spectrum [B, F, T] -> wav [B, T * hop]."""
        B, _, T = spec.shape
        frames = torch.fft.irfft(spec, n=self.n_fft, dim=1) * self.window[None, :, None]  # [B, n_fft, T]
        total = (T - 1) * self.hop_length + self.n_fft
        out = F.fold(frames, (1, total), (1, self.n_fft), stride=(1, self.hop_length)).reshape(B, total)
        envelope = F.fold(self.window.square()[None, :, None].expand(1, -1, T), (1, total), (1, self.n_fft),
                          stride=(1, self.hop_length)).reshape(1, total)
        out = out / envelope.clamp(min=1e-8)
        return out[:, self.pad: total - self.pad]


def spectral_features(spec: torch.Tensor) -> torch.Tensor:
    """Encoder input from a complex spectrum [B, F, T] -> [B, 3F, T]: log power and power-law compressed real/imag."""
    magnitude = spec.abs()
    compressed = spec * (magnitude + 1e-7).pow(-0.7)  # |X|^0.3 with the phase of X
    return torch.cat([torch.log(magnitude.square() + 1e-5), compressed.real, compressed.imag], dim=1)


@dataclass
class FrameCodecOutput:
    """A training/eval pass of `FrameCodec.forward`.

    Args:
        wav: `[B, 1, S]` reconstruction.
        spec: `[B, F, T]` complex spectrum the decoder predicted (before the ISTFT).
        quantized: the quantiser's result (codes [B, K, T], commitment loss, codebook usage).
    """

    wav: torch.Tensor
    spec: torch.Tensor
    quantized: QuantizedResult


class FrameCodec(nn.Module, Codec):
    """The default codec (24 kHz mono). Built from finished parts by `frame_codec(config)`.

    Args:
        config: the architecture (stored with the weights).
        encoder: features [B, 3F, T] -> latent [B, D, T].
        quantizer: residual VQ over D.
        decoder: latent [B, D, T] -> [B, 2F, T] (log-magnitude, phase).
        stft: the framing shared by analysis and synthesis.
        weights: which weights these are (name + sha256).
    """

    channels = 1
    cardinality = 1024
    arch = "framecodec"  # the model name in .ecdc headers; the weights are identified by their sha256

    def __init__(self, config: FrameCodecConfig, encoder: ConvNeXtStack, quantizer: ResidualVectorQuantizer,
                 decoder: ConvNeXtStack, stft: FrameSTFT, weights: WeightsInfo | None = None):
        super().__init__()
        self.config = config
        self.encoder = encoder
        self.quantizer = quantizer
        self.decoder = decoder
        self.stft = stft
        self.sample_rate = config.sample_rate
        self.frame_rate = config.frame_rate
        self.max_codebooks = config.num_codebooks
        self.cardinality = config.codebook_size
        self.bandwidths = tuple(config.bandwidths)
        self.weights = weights or WeightsInfo(name="framecodec-untrained", sha256="")

    # -- building blocks ----------------------------------------------------------------------------------------
    def _pad(self, wav: torch.Tensor) -> torch.Tensor:
        hop = self.config.hop_length
        return F.pad(wav, (0, (-wav.shape[-1]) % hop))

    def analyse(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, 1, S] -> latent [B, D, T], T = ceil(S / hop)."""
        spec = self.stft.stft(self._pad(wav)[:, 0])
        return self.encoder(spectral_features(spec))

    def synthesise_spec(self, latent: torch.Tensor) -> torch.Tensor:
        """latent [B, D, T] -> complex spectrum [B, F, T]."""
        out = self.decoder(latent)
        log_magnitude, phase = out.chunk(2, dim=1)
        magnitude = torch.exp(log_magnitude.clamp(max=6.0))
        return torch.polar(magnitude, phase)

    def synthesise(self, latent: torch.Tensor) -> torch.Tensor:
        """latent [B, D, T] -> wav [B, 1, T * hop]."""
        return self.stft.istft(self.synthesise_spec(latent))[:, None]

    def forward(self, wav: torch.Tensor, num_codebooks: int) -> FrameCodecOutput:
        """Training pass: wav [B, 1, S] (S a multiple of hop) through `num_codebooks` codebooks."""
        quantized = self.quantizer(self.analyse(wav), num_codebooks)
        spec = self.synthesise_spec(quantized.quantized)
        return FrameCodecOutput(wav=self.stft.istft(spec)[:, None], spec=spec, quantized=quantized)

    # -- the Codec interface ---------------------------------------------------------------------------------------
    # Long inputs run in chunks of `chunk_frames` frames with `context` frames of overlap on each side (`.chunks`), so
    # memory is bounded by the chunk, not the file. Every layer has a finite receptive field (see `receptive_frames`)
    # and the STFT frames are local, so the kept frames equal a whole-signal pass up to float rounding.
    chunk_frames: int = 1500  # 20 s at 75 Hz

    def _context(self) -> tuple[int, int]:
        enc, dec = self.receptive_frames
        analysis = math.ceil(self.stft.pad / self.config.hop_length)  # frames an STFT window reaches past its hop
        return enc + analysis + 1, dec + analysis + 1

    @torch.inference_mode()
    def encode(self, wav: torch.Tensor, bandwidth: float) -> EncodedAudio:
        return self.encode_blocks([wav], bandwidth)

    @torch.inference_mode()
    def encode_blocks(self, blocks: Iterable[torch.Tensor], bandwidth: float) -> EncodedAudio:
        """Encode a waveform that arrives in consecutive blocks `[B, 1, s_i]` (any sizes), holding at most one chunk
        plus its context and one block in memory. The codes equal `encode` of the concatenated blocks exactly: every
        chunk sees the same samples (the same zero padding at the end) either way (`chunks.encode_in_chunks`)."""
        num_codebooks = self.codebooks_for(bandwidth)

        def encode_window(window: torch.Tensor, first: int, last: int) -> torch.Tensor:
            return self.quantizer.encode(self.analyse(window)[..., first:last], num_codebooks)

        codes, length, batch = encode_in_chunks(blocks, self.config.hop_length, self.chunk_frames,
                                                self._context()[0], encode_window)
        if codes is None:  # no samples at all
            codes = torch.zeros(batch, num_codebooks, 0, dtype=torch.long)
        return EncodedAudio(codes=codes, length=length)

    @torch.inference_mode()
    def decode(self, encoded: EncodedAudio) -> torch.Tensor:
        codes = encoded.codes
        pieces = list(self.iter_decode(encoded))
        return torch.cat(pieces, dim=-1) if pieces else codes.new_zeros(codes.shape[0], 1, 0, dtype=torch.float32)

    @torch.inference_mode()
    def iter_decode(self, encoded: EncodedAudio) -> Iterator[torch.Tensor]:
        """The decoded waveform as consecutive pieces `[B, 1, s_i]` (one per chunk), trimmed to `encoded.length`."""
        yield from decode_in_chunks(encoded.codes, self.config.hop_length, self.chunk_frames, self._context()[1],
                                    encoded.length, lambda codes: self.synthesise(self.quantizer.decode(codes)))

    def codebook_vectors(self) -> torch.Tensor:
        """[K, 1024, D] codebook vectors (used to initialise LM embeddings)."""
        return self.quantizer.codebook_vectors()

    @property
    def receptive_frames(self) -> tuple[int, int]:
        """(encoder, decoder) context in frames on each side; chunked processing overlaps by at least this."""
        return self.encoder.receptive_frames, self.decoder.receptive_frames


def frame_codec(config: FrameCodecConfig | None = None, weights: WeightsInfo | None = None,
                kmeans_init: bool = True) -> FrameCodec:
    """Builds a `FrameCodec` with fresh weights from `config`."""
    config = config or FrameCodecConfig()
    bins = config.n_fft // 2 + 1
    encoder = ConvNeXtStack(3 * bins, config.latent_dim, config.dim, config.intermediate_dim, config.encoder_layers,
                            config.kernel_size, config.encoder_embed_kernel)
    decoder = ConvNeXtStack(config.latent_dim, 2 * bins, config.dim, config.intermediate_dim, config.decoder_layers,
                            config.kernel_size)
    quantizer = ResidualVectorQuantizer(config.latent_dim, config.num_codebooks, config.codebook_size,
                                        kmeans_init=kmeans_init, threshold_ema_dead_code=config.dead_code_threshold)
    return FrameCodec(config, encoder, quantizer, decoder, FrameSTFT(config.n_fft, config.hop_length), weights)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def nominal_kbps(config: FrameCodecConfig, num_codebooks: int) -> float:
    return num_codebooks * config.frame_rate * math.log2(config.codebook_size) / 1000
