"""Checks the sample clips in samples/ against samples/SOURCES.md, and the pure helpers of scripts/build_corpus.py."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
AUDIO_SUFFIXES = {".flac", ".wav", ".ogg", ".mp3", ".opus"}


def listed_clips() -> list[str]:
    """Audio file names named in backticks in SOURCES.md (its table and section headings)."""
    text = (SAMPLES / "SOURCES.md").read_text()
    return sorted(set(re.findall(r"`([\w.-]+\.(?:flac|wav|ogg|mp3|opus))`", text)))


def load_build_corpus():
    spec = importlib.util.spec_from_file_location("build_corpus", ROOT / "scripts" / "build_corpus.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_corpus"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_sources_lists_some_clips():
    assert len(listed_clips()) >= 4


@pytest.mark.parametrize("name", listed_clips())
def test_listed_clip_is_readable_and_sane(name):
    path = SAMPLES / name
    assert path.exists(), f"{name} is listed in SOURCES.md but missing"
    wav, sr = sf.read(str(path), dtype="float32", always_2d=True)  # [S, C]
    duration = len(wav) / sr
    assert 3.0 <= duration <= 15.0, f"{name}: {duration:.1f} s"
    rms_db = 20 * np.log10(np.sqrt(np.mean(wav**2)) + 1e-12)
    assert rms_db > -40, f"{name} is (nearly) silent: {rms_db:.1f} dBFS"
    clipped = np.mean(np.abs(wav) >= 0.999)
    assert clipped < 1e-4, f"{name} is clipped ({clipped:.2%} of samples at full scale)"


def test_every_audio_file_is_listed():
    on_disk = sorted(p.name for p in SAMPLES.iterdir() if p.suffix in AUDIO_SUFFIXES)
    assert on_disk == listed_clips()


def test_sample_sources_are_found():
    bc = load_build_corpus()
    paths = bc.sample_source_paths(SAMPLES / "SOURCES.md")
    assert any(p.endswith(".ogg") for p in paths) and any(p.endswith(".mid") for p in paths)


def test_split_is_deterministic_disjoint_and_about_five_percent():
    bc = load_build_corpus()
    paths = [f"/usr/share/x/{i:05d}_desc_fr.ogg" for i in range(4000)]
    first = {p: bc.split_for(p) for p in paths}
    assert first == {p: bc.split_for(p) for p in reversed(paths)}  # order-independent, repeatable
    valid = {p for p, s in first.items() if s == "valid"}
    train = {p for p, s in first.items() if s == "train"}
    assert valid.isdisjoint(train) and len(valid) + len(train) == len(paths)
    assert 0.035 < len(valid) / len(paths) < 0.065
    forced = paths[:10]
    assert all(bc.split_for(p, forced_valid=forced) == "valid" for p in forced)


def test_speech_groups_use_each_clip_once_and_are_prefix_stable():
    bc = load_build_corpus()
    clips = [(f"c{i}", 1.0 + (i % 5) * 0.2) for i in range(200)]
    groups = bc.group_clips(clips)
    flat = [p for g in groups for p in g]
    assert flat == [p for p, _ in clips]
    durations = dict(clips)
    for g in groups:
        length = sum(durations[p] + bc.PAUSE_S for p in g)
        assert bc.SPEECH_MIN_S <= length <= 32.0
    shorter = bc.group_clips(clips[:120], keep_partial=False)
    assert shorter == groups[: len(shorter)]


def test_music_pieces_cover_the_track():
    bc = load_build_corpus()
    for duration in (12.0, 30.0, 74.1, 95.3, 557.2):
        pieces = bc.music_pieces(duration)
        assert pieces[0][0] == 0.0
        assert abs(sum(length for _, length in pieces) - duration) < 1e-6
        assert all(10.0 <= length < 40.0 for _, length in pieces)
