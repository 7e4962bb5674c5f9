"""Training data: a corpus of audio files (a manifest CSV or a folder) held in memory, served as random crops."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ..audio import convert_audio
from ..errors import CodecError

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3"}


def list_corpus(source: str | Path, split: str, kind: str | None = None) -> list[Path]:
    """Files of `split` ('train' or 'valid') from a corpus folder with `manifest.csv`, a manifest path, or a folder.

    `kind` ('speech', 'music') filters by the manifest's kind column. A plain folder (no manifest) is taken whole for
    both splits.
    """
    source = Path(source)
    manifest = source / "manifest.csv" if source.is_dir() else source
    if manifest.is_file() and manifest.suffix == ".csv":
        root = manifest.parent
        with open(manifest, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("split", split) == split
                    and (kind is None or r.get("kind", kind) == kind)]
        return [root / r["path"] if not Path(r["path"]).is_absolute() else Path(r["path"]) for r in rows]
    if source.is_dir():
        return sorted(p for p in source.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    raise CodecError(f"no corpus at {source}: expected a folder of audio files or a manifest.csv")


@dataclass
class Clip:
    """One file of the corpus in memory: samples int16 at the training rate, mono."""

    path: str
    samples: np.ndarray


def load_clips(paths: list[Path], sample_rate: int) -> list[Clip]:
    """Reads every file, converts to mono `sample_rate`, stores as int16 (half the memory of float32)."""
    clips = []
    for path in paths:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        wav = torch.from_numpy(data.T.copy())
        if rate != sample_rate or wav.shape[0] != 1:
            wav = convert_audio(wav, rate, sample_rate, 1)
        samples = (wav[0].clamp(-1, 1) * 32767).round().to(torch.int16).numpy()
        if samples.size:
            clips.append(Clip(str(path), samples))
    if not clips:
        raise CodecError("the corpus holds no readable audio")
    return clips


class RandomCrops:
    """Endless batches of random crops `[B, 1, S]`, files drawn in proportion to their length, random gain.

    Args:
        clips: the corpus in memory.
        segment: crop length in samples.
        batch_size: crops per batch.
        generator: torch RNG (its state is saved in checkpoints, so a resumed run draws the same batches).
        gain_db: crops are scaled to a random RMS level between these dBFS values (silence stays silence).
    """

    def __init__(self, clips: list[Clip], segment: int, batch_size: int, generator: torch.Generator,
                 gain_db: tuple[float, float] = (-30.0, -14.0)):
        self.clips = clips
        self.segment = segment
        self.batch_size = batch_size
        self.generator = generator
        self.gain_db = gain_db
        lengths = torch.tensor([max(len(c.samples), 1) for c in clips], dtype=torch.float64)
        self.weights = lengths / lengths.sum()

    def batch(self) -> torch.Tensor:
        g = self.generator
        out = torch.zeros(self.batch_size, 1, self.segment)
        picks = torch.multinomial(self.weights, self.batch_size, replacement=True, generator=g)
        for i, index in enumerate(picks.tolist()):
            samples = self.clips[index].samples
            if len(samples) > self.segment:
                start = int(torch.randint(0, len(samples) - self.segment + 1, (1,), generator=g))
                crop = samples[start: start + self.segment]
            else:
                crop = samples
            wav = torch.from_numpy(crop.astype(np.float32) / 32768.0)
            rms = wav.square().mean().sqrt()
            target_db = self.gain_db[0] + (self.gain_db[1] - self.gain_db[0]) * float(torch.rand((), generator=g))
            if rms > 1e-4:
                wav = wav * (10 ** (target_db / 20) / rms)
            out[i, 0, : len(wav)] = wav.clamp(-1, 1)
        return out


def fixed_validation_batch(clips: list[Clip], segment: int, count: int) -> torch.Tensor:
    """A deterministic validation batch `[N, 1, S]`: the middle `segment` samples of up to `count` clips."""
    out = []
    for clip in clips[:count]:
        s = clip.samples
        start = max(0, (len(s) - segment) // 2)
        crop = torch.from_numpy(s[start: start + segment].astype(np.float32) / 32768.0)
        out.append(torch.nn.functional.pad(crop, (0, segment - len(crop))))
    return torch.stack(out)[:, None]
