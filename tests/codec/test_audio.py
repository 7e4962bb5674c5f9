"""Tests for codec.audio: file round trips, format fallbacks, conversion, errors and atomic writes."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from codec import audio as audio_module
from codec.audio import (
    Audio,
    atomic_output,
    audio_info,
    convert_audio,
    load_for_model,
    read_audio,
    stream_audio,
    write_audio,
    write_audio_blocks,
)
from codec.errors import AudioError, CodecError

RATE = 16000


def tone(channels: int = 1, seconds: float = 0.5, rate: int = RATE, frequency: float = 440.0) -> torch.Tensor:
    """`[C, S]` sine waves at amplitude 0.5, a different phase per channel."""
    t = torch.arange(int(seconds * rate), dtype=torch.float64) / rate
    phases = torch.arange(channels, dtype=torch.float64)[:, None]
    return (0.5 * torch.sin(2 * math.pi * frequency * t + phases)).float()


def assert_one_line_error(error: pytest.ExceptionInfo, path: Path | None = None) -> None:
    message = str(error.value)
    assert message and "\n" not in message
    if path is not None:
        assert str(path) in message


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if ".part" in p.name]


# --- round trips -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("suffix", "subtype", "tolerance"),
    [
        (".wav", None, 1 / 32768),
        (".wav", "PCM_24", 1 / 2**23),
        (".wav", "FLOAT", 0.0),
        (".flac", None, 1 / 32768),
        (".flac", "PCM_24", 1 / 2**23),
    ],
)
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_lossless_round_trip(tmp_path: Path, suffix: str, subtype: str | None, tolerance: float, channels: int) -> None:
    wav = tone(channels)
    path = write_audio(tmp_path / f"x{suffix}", wav, RATE, subtype=subtype)
    audio = read_audio(path)
    assert isinstance(audio, Audio)
    assert audio.sample_rate == RATE and audio.wav.dtype == torch.float32
    assert audio.wav.shape == wav.shape == (channels, audio.num_samples)
    assert audio.duration == pytest.approx(0.5)
    assert (audio.wav - wav).abs().max().item() <= tolerance
    assert sf.info(str(path)).subtype == (subtype or "PCM_16")
    assert no_temp_files(tmp_path)


def test_integer_pcm_becomes_float_in_unit_range(tmp_path: Path) -> None:
    samples = np.array([[-32768, -16384, 0, 16384, 32767]], dtype=np.int16).T  # [S, C]
    sf.write(str(tmp_path / "int.wav"), samples, 8000, subtype="PCM_16")
    audio = read_audio(tmp_path / "int.wav")
    expected = torch.tensor([[-1.0, -0.5, 0.0, 0.5, 32767 / 32768]])
    assert torch.equal(audio.wav, expected)
    assert audio.sample_rate == 8000


@pytest.mark.parametrize("suffix", [".ogg", ".mp3"])
def test_lossy_round_trip_through_libsndfile(tmp_path: Path, suffix: str) -> None:
    wav = tone(2, seconds=1.0, rate=44100)
    audio = read_audio(write_audio(tmp_path / f"x{suffix}", wav, 44100))
    assert audio.sample_rate == 44100 and audio.channels == 2
    assert abs(audio.num_samples - wav.shape[1]) <= 44100 // 10  # MP3 frames pad a little
    # Lossy, but the tone is still there: strong correlation with the original (after trimming to equal length).
    n = min(audio.num_samples, wav.shape[1])
    spectrum = np.abs(np.fft.rfft(audio.wav[0, :n].numpy()))
    assert np.argmax(spectrum) * 44100 / n == pytest.approx(440, abs=2)


@pytest.mark.skipif(shutil.which("lame") is None, reason="lame is not installed")
def test_reads_mp3_made_by_lame(tmp_path: Path) -> None:
    write_audio(tmp_path / "in.wav", tone(1, seconds=1.0, rate=24000), 24000)
    subprocess.run(["lame", "--quiet", "-b", "64", str(tmp_path / "in.wav"), str(tmp_path / "out.mp3")], check=True)
    audio = read_audio(tmp_path / "out.mp3")
    assert audio.sample_rate == 24000 and audio.channels == 1
    assert abs(audio.duration - 1.0) < 0.1


@pytest.fixture
def m4a(tmp_path: Path) -> Path:
    """One second of a 440 Hz tone, stereo 22.05 kHz AAC in MP4 (a container libsndfile cannot read)."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    path = tmp_path / "clip.m4a"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=22050:duration=1",
         "-ac", "2", "-c:a", "aac", str(path)],
        check=True,
    )
    return path


def test_ffmpeg_fallback_reads_containers_libsndfile_cannot(m4a: Path) -> None:
    path = m4a
    with pytest.raises(sf.LibsndfileError):
        sf.read(str(path))
    audio = read_audio(path)
    assert audio.sample_rate == 22050 and audio.channels == 2
    assert abs(audio.duration - 1.0) < 0.1
    assert torch.isfinite(audio.wav).all() and audio.wav.abs().max() > 0.05


def test_without_ffmpeg_the_error_says_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not audio at all\n" * 10)
    monkeypatch.setattr(audio_module.shutil, "which", lambda name: None)
    with pytest.raises(AudioError, match="install ffmpeg") as error:
        read_audio(path)
    assert_one_line_error(error, path)


# --- audio_info and stream_audio ----------------------------------------------------------------------------------

def test_stream_audio_blocks_concatenate_to_the_file(tmp_path: Path) -> None:
    wav = tone(2, seconds=0.5)
    path = write_audio(tmp_path / "x.flac", wav, RATE)
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.num_samples) == (RATE, 2, 8000)
    assert info.duration == pytest.approx(0.5)
    blocks = list(stream_audio(path, block_samples=3000))
    assert [b.shape for b in blocks] == [(2, 3000), (2, 3000), (2, 2000)]
    assert torch.equal(torch.cat(blocks, dim=1), read_audio(path).wav)


def test_stream_audio_through_ffmpeg(m4a: Path) -> None:
    info = audio_info(m4a)
    assert (info.sample_rate, info.channels) == (22050, 2) and abs(info.duration - 1.0) < 0.1
    blocks = list(stream_audio(m4a, block_samples=4096))
    assert all(b.shape == (2, 4096) for b in blocks[:-1]) and 0 < blocks[-1].shape[1] <= 4096
    assert torch.equal(torch.cat(blocks, dim=1), read_audio(m4a).wav)
    first = next(iter(stream_audio(m4a, block_samples=100)))  # stopping early must not hang or leak ffmpeg
    assert first.shape == (2, 100)


def test_stream_audio_errors(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="no such file"):
        stream_audio(tmp_path / "absent.wav", 100)  # at once, before iterating
    with pytest.raises(AudioError, match="no such file"):
        audio_info(tmp_path / "absent.wav")
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros((0, 1), dtype=np.float32), RATE)
    with pytest.raises(AudioError, match="no samples"):
        list(stream_audio(empty, 100))
    bad = tmp_path / "bad.wav"
    data = np.zeros((1000, 1), dtype=np.float32)
    data[950] = np.nan
    sf.write(str(bad), data, RATE, subtype="FLOAT")
    blocks = stream_audio(bad, 500)
    assert next(blocks).shape == (1, 500)
    with pytest.raises(AudioError, match="1 NaN or Inf samples in the block at sample 500"):
        next(blocks)


# --- read errors -------------------------------------------------------------------------------------------------

def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="no such file") as error:
        read_audio(tmp_path / "absent.wav")
    assert_one_line_error(error, tmp_path / "absent.wav")


def test_directory_is_not_audio(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="directory") as error:
        read_audio(tmp_path)
    assert_one_line_error(error, tmp_path)


def test_non_audio_file(tmp_path: Path) -> None:
    path = tmp_path / "fake.wav"
    path.write_bytes(b"RIFF garbage that is not a wave file" * 3)
    with pytest.raises(AudioError) as error:
        read_audio(path)
    assert_one_line_error(error, path)


def test_empty_audio(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    sf.write(str(path), np.zeros((0, 1), dtype=np.float32), RATE)
    with pytest.raises(AudioError, match="no samples") as error:
        read_audio(path)
    assert_one_line_error(error, path)


def test_nan_and_inf_samples_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "bad.wav"
    data = np.zeros((100, 2), dtype=np.float32)
    data[3, 0], data[50, 1], data[70, 0] = np.nan, np.inf, -np.inf
    sf.write(str(path), data, RATE, subtype="FLOAT")
    with pytest.raises(AudioError, match="3 NaN or Inf") as error:
        read_audio(path)
    assert_one_line_error(error, path)


# --- convert_audio -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("from_rate", "to_rate"), [(44100, 24000), (16000, 24000), (48000, 24000), (22050, 16000)])
@pytest.mark.parametrize("length", [1, 999, 4410])
def test_resampled_length_is_ceil_of_scaled_length(from_rate: int, to_rate: int, length: int) -> None:
    wav = torch.randn(2, length)
    out = convert_audio(wav, from_rate, to_rate, 2)
    assert out.shape == (2, math.ceil(length * to_rate / from_rate))


def test_resampling_keeps_a_tone_at_its_frequency() -> None:
    out = convert_audio(tone(1, seconds=1.0, rate=44100, frequency=1000.0), 44100, 24000, 1)
    spectrum = np.abs(np.fft.rfft(out[0].numpy()))
    assert np.argmax(spectrum) == 1000  # bins are 1 Hz apart for one second
    assert out.abs().max().item() == pytest.approx(0.5, abs=0.01)


def test_resampling_removes_content_above_the_new_nyquist() -> None:
    out = convert_audio(tone(1, seconds=1.0, rate=48000, frequency=15000.0), 48000, 24000, 1)
    assert out[:, 1000:-1000].abs().max().item() < 0.01  # 15 kHz is above 12 kHz: filtered, not aliased


def test_channel_conversion() -> None:
    stereo = torch.randn(3, 2, 100)  # [B, C, S]
    mono = convert_audio(stereo, RATE, RATE, 1)
    assert mono.shape == (3, 1, 100)
    assert torch.allclose(mono[:, 0], (stereo[:, 0] + stereo[:, 1]) / 2)
    up = convert_audio(mono, RATE, RATE, 4)
    assert up.shape == (3, 4, 100) and all(torch.equal(up[:, c], mono[:, 0]) for c in range(4))
    assert torch.equal(convert_audio(stereo, RATE, RATE, 2), stereo)


def test_channel_conversion_without_layout_is_refused() -> None:
    with pytest.raises(AudioError, match="6 channels to 2") as error:
        convert_audio(torch.zeros(6, 10), RATE, RATE, 2)
    assert_one_line_error(error)


def test_convert_audio_accepts_integers_and_leaves_input_alone() -> None:
    wav = torch.tensor([[1, 2, 3, 4]], dtype=torch.int16)
    copy = wav.clone()
    out = convert_audio(wav, 8000, 8000, 2)
    assert out.dtype == torch.float32 and out.shape == (2, 4)
    assert torch.equal(wav, copy)


# --- write_audio and atomic_output ---------------------------------------------------------------------------------

def test_write_clips_to_unit_range(tmp_path: Path) -> None:
    wav = torch.tensor([[2.0, -3.0, 0.25]])
    audio = read_audio(write_audio(tmp_path / "c.wav", wav, RATE, subtype="FLOAT"))
    assert torch.equal(audio.wav, torch.tensor([[1.0, -1.0, 0.25]]))


def test_write_unknown_suffix_and_bad_samples(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="unknown audio suffix") as error:
        write_audio(tmp_path / "x.xyz", tone(), RATE)
    assert_one_line_error(error)
    with pytest.raises(AudioError, match="1 NaN"):
        write_audio(tmp_path / "x.wav", torch.tensor([[0.0, float("nan")]]), RATE)
    with pytest.raises(AudioError, match="subtype"):
        write_audio(tmp_path / "x.flac", tone(), RATE, subtype="FLOAT")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = audio_module.sf.SoundFile.write

    def broken_write(self, data):
        real_write(self, data[:10])  # half a file on disk, then the disk is full
        raise RuntimeError("disk full")

    monkeypatch.setattr(audio_module.sf.SoundFile, "write", broken_write)
    with pytest.raises(AudioError, match="disk full"):
        write_audio(tmp_path / "x.wav", tone(), RATE)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_block_writer_equals_one_write(tmp_path: Path, suffix: str) -> None:
    wav = torch.randn(2, 5000, generator=torch.Generator().manual_seed(0)) * 0.3
    whole = write_audio(tmp_path / f"whole{suffix}", wav, RATE)
    blocks = write_audio_blocks(tmp_path / f"blocks{suffix}", [wav[:, :1], wav[:, 1:2999], wav[:, 2999:]], RATE)
    assert sf.read(str(whole))[0].tolist() == sf.read(str(blocks))[0].tolist()


def test_block_writer_bad_block_leaves_no_file(tmp_path: Path) -> None:
    good = torch.zeros(1, 100)
    with pytest.raises(AudioError, match="1 NaN"):
        write_audio_blocks(tmp_path / "x.wav", [good, torch.tensor([[0.0, float("nan")]]), good], RATE)
    with pytest.raises(AudioError, match="expected a waveform"):
        write_audio_blocks(tmp_path / "x.wav", [good, torch.zeros(2, 100)], RATE)  # channels changed mid-file

    def failing():
        yield good
        raise AudioError("the source went away")

    with pytest.raises(AudioError, match="went away"):
        write_audio_blocks(tmp_path / "x.wav", failing(), RATE)
    with pytest.raises(AudioError, match="nothing to write"):
        write_audio_blocks(tmp_path / "x.wav", [], RATE)
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_success_and_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.ecdc"
    with atomic_output(target) as temp:
        assert temp.parent == tmp_path and temp.suffix == ".ecdc" and temp != target
        temp.write_bytes(b"payload")
        assert not target.exists()  # nothing visible until the block succeeds
    assert target.read_bytes() == b"payload"
    assert target.stat().st_mode & 0o777 == 0o666 & ~audio_module._umask()  # not mkstemp's 0600

    with pytest.raises(ValueError), atomic_output(tmp_path / "other.ecdc") as temp:
        temp.write_bytes(b"partial")
        raise ValueError("encoder crashed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.ecdc"]


def test_atomic_output_refuses_existing_without_force(tmp_path: Path) -> None:
    target = tmp_path / "out.wav"
    target.write_bytes(b"old")
    with pytest.raises(CodecError, match="already exists") as error:
        with atomic_output(target) as temp:
            temp.write_bytes(b"new")
    assert_one_line_error(error, target)
    assert target.read_bytes() == b"old"
    with pytest.raises(CodecError, match="already exists"):
        write_audio(target, tone(), RATE, force=False)
    assert target.read_bytes() == b"old"
    with atomic_output(target, force=True) as temp:
        temp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert no_temp_files(tmp_path)


def test_atomic_output_refuses_a_file_that_appears_meanwhile(tmp_path: Path) -> None:
    target = tmp_path / "race.wav"
    with pytest.raises(CodecError, match="already exists"):
        with atomic_output(target) as temp:
            temp.write_bytes(b"mine")
            target.write_bytes(b"theirs")
    assert target.read_bytes() == b"theirs"
    assert no_temp_files(tmp_path)


def test_never_overwrites_an_input_even_with_force(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "in.wav"
    write_audio(source, tone(), RATE)
    before = source.read_bytes()
    link = tmp_path / "link.wav"
    link.symlink_to(source)
    monkeypatch.chdir(tmp_path)
    for output in (source, Path("in.wav"), link, tmp_path / "sub" / ".." / "in.wav"):
        with pytest.raises(CodecError, match="input") as error:
            write_audio(output, tone(), RATE, force=True, inputs=[source])
        assert_one_line_error(error)
    with pytest.raises(CodecError, match="input"):
        with atomic_output(source, force=True, inputs=["in.wav"]):
            pass
    assert source.read_bytes() == before


def test_atomic_output_path_errors(tmp_path: Path) -> None:
    with pytest.raises(CodecError, match="directory"):
        with atomic_output(tmp_path, force=True):
            pass
    with pytest.raises(CodecError, match="does not exist"):
        with atomic_output(tmp_path / "missing" / "x.wav"):
            pass


# --- load_for_model ----------------------------------------------------------------------------------------------

def test_load_for_model(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "s.flac", tone(2, seconds=0.5, rate=44100), 44100)
    wav, original_rate = load_for_model(path, 24000, 1)
    assert original_rate == 44100
    assert wav.shape == (1, 1, math.ceil(22050 * 24000 / 44100))
    assert wav.dtype == torch.float32
