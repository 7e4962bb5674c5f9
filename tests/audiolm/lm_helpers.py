"""Helpers shared by the data/train/generate/eval tests: token shards of a fake codec and a tiny Gemma on disk."""

from __future__ import annotations

from pathlib import Path

import torch

from audiolm.data import PrepareConfig, prepare
from codec.audio import write_audio

BANDWIDTH = 3.0  # 4 codebooks of the fake codec (75 frames/s)


def write_clip(path: Path, codes: torch.Tensor, codec) -> Path:
    """A wav whose fake-codec codes are exactly `codes` `[K, T]`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_audio(path, codec.decode_codes(codes[None])[0], codec.sample_rate)
    return path


def periodic_codes(T: int, K: int = 4, period: int = 3, offset: int = 0) -> torch.Tensor:
    """`[K, T]` codes that repeat every `period` frames: easy to learn, far from uniform."""
    t = (torch.arange(T) + offset) % period
    return (t[None] * 7 + torch.arange(K)[:, None] * 100 + 5) % 1024


def make_shards(root: Path, codec, clips: dict[str, torch.Tensor], **config) -> Path:
    """Write `clips` (relative path -> codes) as wav files under root/audio and prepare them into root/shards."""
    for name, codes in clips.items():
        write_clip(root / "audio" / name, codes, codec)
    prepare(root / "audio", root / "shards", codec, PrepareConfig(bandwidth=BANDWIDTH, **config), progress=False)
    return root / "shards"


def tiny_base(directory: Path, gemma_factory, tokenizer_factory, seed: int = 0) -> Path:
    """A tiny random Gemma 3 with its word-level tokenizer (the conftest factories), saved as a checkpoint folder."""
    gemma_factory(seed=seed).save_pretrained(directory)
    tokenizer_factory().save_pretrained(directory)
    return directory
