"""Fixtures for the audio-LM tests: a fake codec, a tiny Gemma 3 model and a tiny tokenizer (all built in memory)."""

from __future__ import annotations

import math

import pytest
import torch

from audiolm.vocab import AudioVocab
from codec.interface import Codec, EncodedAudio, WeightsInfo

TINY_TEXT_VOCAB = 512


class FakeCodec(Codec):
    """A deterministic stand-in for EnCodec whose decode is an exact inverse of encode on decoded waves.

    Code (k, t) is read from sample `t * hop + k` of channel 0 (mapped from [-1, 1] to 0..1023); decode writes each
    code at the centre of its bucket there and zeros elsewhere, so encode(decode(codes)) == codes even after 16-bit PCM.

    Args:
        sample_rate: samples per second.
        frame_rate: frames per second (hop = sample_rate / frame_rate samples).
        max_codebooks: K at the highest bandwidth.
        channels: waveform channels.
        sha256: the fake weights' hash.
    """

    def __init__(self, sample_rate=24000, frame_rate=75, max_codebooks=32, channels=1, sha256="f" * 64):
        self.sample_rate = sample_rate
        self.frame_rate = frame_rate
        self.max_codebooks = max_codebooks
        self.channels = channels
        per_book = frame_rate * 10 / 1000
        self.bandwidths = tuple(per_book * k for k in (2, 4, 8, 16, 32) if k <= max_codebooks)
        self.weights = WeightsInfo(name=f"fake_{sample_rate // 1000}khz", sha256=sha256)
        self.hop = int(sample_rate // frame_rate)

    def encode(self, wav: torch.Tensor, bandwidth: float) -> EncodedAudio:
        K = self.codebooks_for(bandwidth)
        B, _, S = wav.shape
        T = self.num_frames(S)
        padded = torch.nn.functional.pad(wav[:, 0], (0, T * self.hop - S)).reshape(B, T, self.hop)[..., :K]
        codes = ((padded.clamp(-1, 1) + 1) / 2 * self.cardinality).floor().clamp(0, self.cardinality - 1)
        return EncodedAudio(codes=codes.long().transpose(1, 2), length=S)

    def decode(self, encoded: EncodedAudio) -> torch.Tensor:
        codes = encoded.codes  # [B, K, T]
        B, K, T = codes.shape
        frames = torch.zeros(B, T, self.hop)
        frames[..., :K] = ((codes.transpose(1, 2).float() + 0.5) / self.cardinality) * 2 - 1
        wav = frames.reshape(B, 1, T * self.hop).expand(B, self.channels, -1).clone()
        return wav[..., : encoded.length] if encoded.length else wav

    def codebook_vectors(self) -> torch.Tensor:
        """`[K, 1024, 8]`: a smooth curve per codebook, so neighbouring codes have neighbouring vectors."""
        c = torch.arange(self.cardinality).float() / self.cardinality
        k = torch.arange(self.max_codebooks).float()[:, None, None] + 1
        f = torch.arange(1, 9).float()
        return torch.sin(2 * math.pi * c[None, :, None] * f * k / 4) / k


@pytest.fixture
def fake_codec() -> FakeCodec:
    return FakeCodec()


@pytest.fixture
def fake_codec_48k() -> FakeCodec:
    """Like EnCodec 48 kHz: stereo, 150 frames/s, 16 codebooks per stereo frame."""
    return FakeCodec(sample_rate=48000, frame_rate=150, max_codebooks=16, channels=2, sha256="e" * 64)


@pytest.fixture
def tiny_vocab() -> AudioVocab:
    """4 codebooks after a 512-token text vocabulary."""
    return AudioVocab(audio_base=TINY_TEXT_VOCAB, num_codebooks=4)


def make_tiny_gemma(softcap: float | None = None, seed: int = 0):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(seed)
    config = Gemma3TextConfig(
        vocab_size=TINY_TEXT_VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=1024,
        sliding_window=32,
        final_logit_softcapping=softcap,
        tie_word_embeddings=True,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )
    return Gemma3ForCausalLM(config).eval()


@pytest.fixture
def tiny_gemma():
    return make_tiny_gemma()


def make_tiny_tokenizer(size: int = TINY_TEXT_VOCAB):
    """A word-level fast tokenizer with `size` entries: <pad> <eos> <bos> <unk> w4 w5 ..."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<eos>", "<bos>", "<unk>"] + [f"w{i}" for i in range(4, size)]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece()  # joins words with spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>"
    )


@pytest.fixture
def tiny_tokenizer():
    return make_tiny_tokenizer()


@pytest.fixture
def tokenizer_factory():
    return make_tiny_tokenizer


@pytest.fixture
def gemma_factory():
    return make_tiny_gemma
