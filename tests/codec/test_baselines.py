"""Classic-codec baselines: measured bitrates, decoded shapes, delay alignment, missing tools, Codec2's SI-SDR flag."""

from __future__ import annotations

import math
import os

import pytest
import torch

from codec.baselines import BaselineSetting, missing_tools, run_baseline
from codec.metrics import evaluate, mel_distance

RATE = 24000


def voice_like(seconds: float = 1.0, channels: int = 1, seed: int = 0) -> torch.Tensor:
    """`[C, S]` harmonics of a gliding 120-220 Hz pitch with a syllable-rate envelope and a little noise."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * RATE)) / RATE
    pitch = 120 + 100 * t / seconds
    phase = 2 * math.pi * torch.cumsum(pitch, 0) / RATE
    voice = sum(torch.sin(h * phase) / h for h in range(1, 12))
    envelope = 0.5 * (1 - torch.cos(2 * math.pi * 4 * t))
    wav = 0.3 * voice * envelope + 0.003 * torch.randn(t.shape, generator=generator)
    return wav.repeat(channels, 1).float()


def needs(system: str):
    return pytest.mark.skipif(bool(missing_tools(system)), reason=f"{system}: {missing_tools(system)} not installed")


@needs("opus")
def test_opus_bitrate_is_measured_and_quality_grows_with_it():
    wav = voice_like()
    low = run_baseline(BaselineSetting("opus", 6), wav, RATE, speech=True)
    high = run_baseline(BaselineSetting("opus", 24), wav, RATE, speech=True)
    for result in (low, high):
        assert not result.skipped and result.si_sdr_meaningful
        assert result.file_kbps == result.file_bytes * 8 / 1000 / 1.0
        assert result.wav.shape[0] == 1 and abs(result.wav.shape[1] - wav.shape[1]) < RATE // 10
        assert "voip" in result.note
    assert low.file_bytes < high.file_bytes
    assert mel_distance(wav, high.wav, RATE) < mel_distance(wav, low.wav, RATE)
    assert run_baseline(BaselineSetting("opus", 12), wav, RATE, speech=False).note == "libopus -application audio"


@needs("opus")
def test_opus_delay_is_removed_before_scoring():
    wav = voice_like()
    result = run_baseline(BaselineSetting("opus", 24), wav, RATE, speech=False)
    aligned = evaluate(wav, result.wav, RATE, speech=False, dnsmos=False, align_delay=True)
    raw = evaluate(wav, result.wav, RATE, speech=False, dnsmos=False, align_delay=False)
    assert abs(aligned.delay) < RATE // 10
    assert aligned.si_sdr >= raw.si_sdr


@needs("mp3")
def test_mp3_notes_lame_resampling_and_returns_the_reference_rate():
    wav = voice_like()
    result = run_baseline(BaselineSetting("mp3", 8), wav, RATE, speech=True)
    assert result.note == "lame resampled 24 -> 8 kHz"
    assert result.wav.shape[0] == 1 and abs(result.wav.shape[1] - wav.shape[1]) < RATE // 5
    assert 7.0 < result.file_kbps < 10.0  # CBR 8 kbps frames plus the Xing/LAME header


@needs("codec2")
def test_codec2_is_marked_and_keeps_channels():
    wav = voice_like(channels=2)
    result = run_baseline(BaselineSetting("codec2", 3.2), wav, RATE, speech=True)
    assert not result.si_sdr_meaningful
    assert result.wav.shape[0] == 2 and torch.equal(result.wav[0], result.wav[1])  # mono codec, repeated
    assert abs(result.file_kbps - 3.2) < 0.1  # 8 bytes per 20 ms frame plus a 7-byte header
    assert "SI-SDR not meaningful" in result.note


def test_missing_tool_is_a_skip_with_a_note(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no tool is found
    assert missing_tools("codec2") == ["c2enc", "c2dec"]
    result = run_baseline(BaselineSetting("opus", 6), voice_like(0.2), RATE, speech=True)
    assert result.skipped and result.note == "skipped: ffmpeg not installed" and result.file_bytes == 0


def test_failing_tool_is_a_skip_with_its_message(monkeypatch, tmp_path):
    fake = tmp_path / "lame"
    fake.write_text("#!/bin/sh\necho 'first line' >&2\necho 'lame: bad things' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    result = run_baseline(BaselineSetting("mp3", 16), voice_like(0.2), RATE, speech=True)
    assert result.skipped and result.note == "skipped: lame failed: lame: bad things"


def test_unknown_system_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown baseline"):
        missing_tools("vorbis")
