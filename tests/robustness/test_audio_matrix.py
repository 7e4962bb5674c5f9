"""Audio inputs of every format, rate, channel count, length and content through `codec compress` / `decompress`.

Each case either round-trips with the exact length (`ceil(S * 24000 / rate)` samples at the model rate, then
`ceil(S' * R / 24000)` at `--rate R`) or fails with one `error: ...` line, exit 1, and no output file (partial or
temporary) left behind. Every value of each axis appears at least once, plus a few combinations:
formats WAV 16/24-bit PCM and 32-bit float, FLAC, OGG Vorbis, MP3; rates 8, 16, 22.05, 44.1, 48, 96 kHz; mono,
stereo, 6 channels; 0 samples, 1 sample, shorter than a frame, one frame, odd lengths, 10 minutes (one cheap case);
noise, silence, DC, full-scale square waves, float samples beyond full scale, NaN, Inf.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import soundfile as sf

from codec.__main__ import main

FORMATS = {  # name: (suffix, libsndfile format, subtype)
    "wav16": (".wav", "WAV", "PCM_16"),
    "wav24": (".wav", "WAV", "PCM_24"),
    "wav32f": (".wav", "WAV", "FLOAT"),
    "flac": (".flac", "FLAC", "PCM_16"),
    "ogg": (".ogg", "OGG", "VORBIS"),
    "mp3": (".mp3", "MP3", "MPEG_LAYER_III"),
}
MODEL_RATE, HOP = 24_000, 320  # the tiny frame codec: 24 kHz mono, 75 frames/s


def signal(content: str, samples: int, channels: int) -> np.ndarray:
    """`[S, C]` float32 test signal."""
    rng = np.random.default_rng(samples * 7 + channels)
    t = np.arange(samples)[:, None]
    if content == "noise":
        return (rng.standard_normal((samples, channels)) * 0.2).astype(np.float32)
    if content == "silence":
        return np.zeros((samples, channels), np.float32)
    if content == "dc":
        return np.full((samples, channels), 0.5, np.float32)
    if content == "clip":  # full-scale square wave, 100 Hz-ish
        return np.where((t // 40) % 2 == 0, 1.0, -1.0).repeat(channels, 1).astype(np.float32)
    if content == "overrange":  # float files may exceed full scale
        return (rng.standard_normal((samples, channels)) * 4.0).astype(np.float32)
    data = (rng.standard_normal((samples, channels)) * 0.2).astype(np.float32)
    data[samples // 2, 0] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}[content]
    return data


OK, FAIL = "ok", "fail"
CASES = [
    # fmt, rate, channels, samples, content, expect, --rate
    ("wav16", 24_000, 1, 12_345, "noise", OK, None),
    ("wav24", 8_000, 2, 4_001, "noise", OK, None),
    ("wav32f", 96_000, 6, 9_601, "noise", OK, 48_000),
    ("flac", 44_100, 2, 8_820, "clip", OK, 44_100),
    ("flac", 16_000, 6, 1_601, "dc", OK, None),
    ("ogg", 22_050, 1, 5_513, "noise", OK, 8_000),
    ("ogg", 48_000, 2, 4_800, "silence", OK, None),
    ("mp3", 44_100, 2, 8_821, "noise", OK, None),
    ("mp3", 16_000, 1, 3_000, "clip", OK, 16_000),
    ("wav16", 24_000, 1, 1, "noise", OK, None),  # one sample
    ("wav16", 96_000, 6, 1, "dc", OK, None),  # one sample, resampled to one sample
    ("wav16", 24_000, 1, HOP - 1, "noise", OK, None),  # shorter than one frame
    ("wav24", 24_000, 2, HOP, "clip", OK, 96_000),  # exactly one frame
    ("flac", 8_000, 1, HOP // 3, "noise", OK, None),  # one frame after resampling (107 -> 321 samples)
    ("wav32f", 24_000, 1, 2_401, "overrange", OK, None),
    ("wav16", 48_000, 1, 0, "noise", FAIL, None),
    ("flac", 22_050, 2, 0, "noise", FAIL, None),
    ("wav32f", 16_000, 1, 999, "nan", FAIL, None),
    ("wav32f", 48_000, 2, 999, "inf", FAIL, None),
    ("wav32f", 44_100, 6, 999, "-inf", FAIL, None),
    pytest.param(("wav16", 8_000, 1, 8_000 * 600, "noise", OK, None), marks=pytest.mark.skipif(
        not os.environ.get("ROBUSTNESS_SLOW"), reason="10 minutes of audio, about 40 s: set ROBUSTNESS_SLOW=1")),
]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from codec.models.weights import export_frame_codec
    from tests.conftest import tiny_frame_codec

    path = tmp_path_factory.mktemp("tiny") / "tiny.safetensors"
    export_frame_codec(tiny_frame_codec(), path)
    return path


def case_id(case) -> str:
    fmt, rate, channels, samples, content, _, out_rate = case
    return f"{fmt}-{rate}-{channels}ch-{samples}-{content}" + (f"-to{out_rate}" if out_rate else "")


@pytest.mark.parametrize("case", CASES, ids=[case_id(c.values[0] if hasattr(c, "values") else c) for c in CASES])
def test_compress_decompress_matrix(weights, tmp_path, capsys, case):
    fmt, rate, channels, samples, content, expect, out_rate = case
    suffix, file_format, subtype = FORMATS[fmt]
    source = tmp_path / f"in{suffix}"
    sf.write(str(source), signal(content, samples, channels), rate, subtype=subtype, format=file_format)
    ecdc, out = tmp_path / "out.ecdc", tmp_path / "out.wav"
    code = main(["compress", str(source), str(ecdc), "--model", str(weights), "-b", "3"])
    err = capsys.readouterr().err
    if expect == FAIL:
        assert code == 1
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
        # an empty FLAC is a 0-byte file (libsndfile writes nothing), which no decoder recognises
        reason = ("no samples" if fmt != "flac" else "cannot decode") if samples == 0 else "NaN or Inf"
        assert str(source) in err and reason in err, err
        assert [p.name for p in tmp_path.iterdir()] == [source.name]  # nothing partial left behind
        return
    assert code == 0, err
    read_samples = sf.info(str(source)).frames
    model_samples = math.ceil(read_samples * MODEL_RATE / rate)
    args = ["decompress", str(ecdc), str(out), "--model", str(weights)]
    assert main(args + (["--rate", str(out_rate)] if out_rate else [])) == 0, capsys.readouterr().err
    info = sf.info(str(out))
    expected_rate = out_rate or MODEL_RATE
    assert (info.samplerate, info.channels) == (expected_rate, 1)
    assert info.frames == math.ceil(model_samples * expected_rate / MODEL_RATE)
    decoded, _ = sf.read(str(out), dtype="float32")
    assert np.isfinite(decoded).all() and np.abs(decoded).max() <= 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([source.name, ecdc.name, out.name])


def test_every_axis_value_is_covered():
    cases = [c.values[0] if hasattr(c, "values") else c for c in CASES]
    assert {c[0] for c in cases} == set(FORMATS)
    assert {c[1] for c in cases} >= {8_000, 16_000, 22_050, 44_100, 48_000, 96_000}
    assert {c[2] for c in cases} == {1, 2, 6}
    lengths = {c[3] for c in cases}
    assert {0, 1, HOP - 1, HOP, 8_000 * 600} <= lengths and any(n % 2 for n in lengths)
    assert {c[4] for c in cases} >= {"noise", "silence", "dc", "clip", "nan", "inf"}
