"""`codec sweep`: speech/music rule, input collection, token statistics, results files, the LM hook, DNSMOS cache."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import types

import numpy as np
import pytest
import soundfile as sf
import torch

from codec.baselines import BaselineSetting, missing_tools
from codec.errors import BandwidthError, CodecError
from codec.sweep import (
    RESULT_COLUMNS,
    classify,
    code_histogram,
    collect_inputs,
    entropy_bits,
    ideal_kbps,
    read_results,
    run_sweep,
    token_statistics,
)

RATE = 24000


def write_clip(path, seconds: float = 1.0, seed: int = 0):
    """A 24 kHz mono clip: a few harmonics with an envelope and some noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    wav = sum(np.sin(2 * np.pi * 150 * h * t) / h for h in range(1, 6)) * np.sin(np.pi * 3 * t) ** 2
    sf.write(str(path), 0.2 * wav + 0.01 * rng.standard_normal(t.shape), RATE)
    return path


# ----------------------------------------------------------------------------------------------- inputs and rules
def test_classify_rules_in_order(tmp_path):
    assert classify("a/speech_en.flac") == ("speech", "name starts with 'speech'")
    assert classify("a/Music-1.wav") == ("music", "name starts with 'music'")
    assert classify("corpus/speech/x.wav") == ("speech", "folder 'speech'")
    assert classify("x.wav") == ("music", "no rule matched: treated as music")
    assert classify("music_talk.wav", speech_globs=["*talk*"]) == ("speech", "--speech *talk*")
    assert classify("speech_song.wav", music_globs=["*song*"]) == ("music", "--music *song*")
    assert classify("d/speech/x.wav", speech_globs=["d/speech/*"], music_globs=["*.wav"])[0] == "speech"


def test_collect_inputs(tmp_path):
    (tmp_path / "sub").mkdir()
    a = write_clip(tmp_path / "sub" / "b.wav", 0.1)
    b = write_clip(tmp_path / "a.flac", 0.1)
    (tmp_path / "notes.txt").write_text("x")
    assert collect_inputs([tmp_path, a]) == [b, a]
    with pytest.raises(CodecError, match="no such file"):
        collect_inputs([tmp_path / "missing.wav"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(CodecError, match="no audio files"):
        collect_inputs([tmp_path / "empty"])


# ----------------------------------------------------------------------------------------------- token statistics
def test_histogram_entropy_and_ideal_bitrate_exact():
    codes = torch.tensor([[[0, 1, 2, 3, 0, 1, 2, 3], [5, 5, 5, 5, 5, 5, 5, 5]]])  # [B=1, K=2, T=8]
    counts = code_histogram(codes, 16)
    assert counts.shape == (2, 16) and counts[0, :4].tolist() == [2, 2, 2, 2] and counts[1, 5] == 8
    assert entropy_bits(counts).tolist() == [2.0, 0.0]
    assert entropy_bits(np.zeros((1, 4))).tolist() == [0.0]
    assert ideal_kbps(counts, 75.0) == 2.0 * 75 / 1000
    rows = token_statistics("all", 1.5, counts, 75.0, 16)
    assert [(r.codebook, r.codes, r.used_entries, r.usage) for r in rows] == [(0, 8, 4, 0.25), (1, 8, 1, 1 / 16)]
    assert rows[0].perplexity == 4.0 and rows[1].perplexity == 1.0 and rows[0].entropy_kbps == 0.15


def test_histogram_pools_batch_items():
    codes = torch.randint(0, 1024, (3, 4, 50), generator=torch.Generator().manual_seed(0))
    counts = code_histogram(codes, 1024)
    assert counts.sum() == codes.numel() and (counts.sum(axis=1) == 150).all()
    assert counts[2, int(codes[1, 2, 7])] >= 1


# ----------------------------------------------------------------------------------------------- the sweep
@pytest.fixture
def clips(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    return [write_clip(folder / "speech_a.wav", 1.2, 0), write_clip(folder / "music_b.wav", 0.8, 1)]


def test_sweep_writes_consistent_results(tiny_codec, clips, tmp_path):
    from codec.pipeline import encode, write_container

    out = tmp_path / "out"
    have_opus = not missing_tools("opus")
    result = run_sweep([clips[0].parent], tiny_codec, out, bandwidths=[1.5, 3], dnsmos=False, progress=False,
                       report=False, baselines=(BaselineSetting("opus", 6),))
    assert [f.kind for f in result.files] == ["music", "speech"]  # sorted by path: music_b, speech_a
    per_file = 1 + 2 + (1 if have_opus else 0)
    assert len(result.rows) == 2 * per_file
    with open(out / "results.csv") as fo:
        table = list(csv.DictReader(fo))
    assert tuple(table[0].keys()) == RESULT_COLUMNS and len(table) == len(result.rows)
    assert [r.family for r in result.rows[:per_file]] == ["reference", "neural", "neural"] + ["baseline"] * have_opus

    for row in result.rows:
        assert (out / row.audio).is_file()
        speech = row.kind == "speech"
        if row.family != "reference":
            assert (row.pesq_wb is not None) == speech and (row.stoi is not None) == speech
            assert row.mel_distance is not None and row.si_sdr is not None
        assert row.dnsmos_ovrl is None  # dnsmos=False
        if row.family == "neural":
            wav = torch.from_numpy(sf.read(str(row.file), dtype="float32")[0])[None, None]
            encoded = encode(tiny_codec, wav, row.nominal_kbps)
            buffer = io.BytesIO()
            write_container(tiny_codec, encoded, buffer)
            assert row.file_kbps == len(buffer.getvalue()) * 8 / 1000 / row.duration_s
            assert row.entropy_kbps == ideal_kbps(code_histogram(encoded.codes, 1024), 75.0)
            assert row.num_codebooks == {1.5: 2, 3.0: 4}[row.nominal_kbps] and row.lm_kbps is None

    assert [(s.group, s.bandwidth_kbps) for s in result.token_summary] == [
        ("all", 1.5), ("all", 3.0), ("speech", 1.5), ("speech", 3.0), ("music", 1.5), ("music", 3.0)]
    for summary in result.token_summary:
        rows = [c for c in result.codebooks if (c.group, c.bandwidth_kbps) == (summary.group, summary.bandwidth_kbps)]
        assert len(rows) == summary.num_codebooks
        assert summary.tokens_per_second == summary.num_codebooks * 75.0
        assert math.isclose(summary.entropy_kbps, sum(r.entropy_kbps for r in rows))
        assert summary.entropy_kbps <= summary.nominal_kbps
        assert all(0 < r.usage <= 1 and math.isclose(r.perplexity, 2 ** r.entropy_bits) for r in rows)
    first = [c for c in result.codebooks if c.group == "all" and c.bandwidth_kbps == 1.5][0]
    assert first.codes == tiny_codec.num_frames(int(1.2 * RATE)) + tiny_codec.num_frames(int(0.8 * RATE))
    with open(out / "tokens.csv") as fo:
        assert len(list(csv.DictReader(fo))) == len(result.codebooks) == 3 * (2 + 4)

    again = read_results(out)
    assert again.rows == result.rows and again.token_summary == result.token_summary and again.files == result.files
    assert json.loads((out / "results.json").read_text())["meta"]["bandwidths"] == [1.5, 3.0]


def test_sweep_rejects_bad_bandwidth_before_work(tiny_codec, clips, tmp_path):
    with pytest.raises(BandwidthError):
        run_sweep(clips, tiny_codec, tmp_path / "out", bandwidths=[5.0], progress=False, report=False)
    assert not (tmp_path / "out").exists()


def _one_run(codec, clip, out, **kwargs):
    return run_sweep([clip], codec, out, bandwidths=[1.5], baselines=(), dnsmos=False, progress=False,
                     report=False, **kwargs)


def test_lm_hook_is_called_lazily(tiny_codec, clips, tmp_path, monkeypatch):
    calls = []

    def bits_per_second(run_dir, codes, codec):
        calls.append((run_dir, tuple(codes.shape)))
        return 1234.0

    module = types.ModuleType("audiolm.evaluate")
    module.bits_per_second = bits_per_second
    monkeypatch.setitem(sys.modules, "audiolm.evaluate", module)
    result = _one_run(tiny_codec, clips[0], tmp_path / "out", lm_run="runs/x")
    assert calls == [("runs/x", (1, 2, tiny_codec.num_frames(int(1.2 * RATE))))]
    assert [r.lm_kbps for r in result.rows if r.family == "neural"] == [1.234]
    assert {s.lm_kbps for s in result.token_summary} == {1.234} and result.notes == []


def test_lm_missing_is_a_note_not_a_crash(tiny_codec, clips, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "audiolm.evaluate", None)  # makes the import raise ImportError
    result = _one_run(tiny_codec, clips[0], tmp_path / "out", lm_run="runs/x")
    assert len(result.notes) == 1 and result.notes[0].startswith("LM not available")
    assert all(r.lm_kbps is None for r in result.rows)


def test_dnsmos_is_cached_by_content(tmp_path, monkeypatch):
    import codec.metrics
    from codec.metrics import DnsmosScore
    from codec.sweep import _dnsmos_cached

    calls = []

    def fake(signal, rate):
        calls.append(rate)
        return DnsmosScore(3.0, 3.5, 4.0, float(len(calls)))

    monkeypatch.setattr(codec.metrics, "dnsmos", fake)
    wav = torch.randn(1, 800)
    first = _dnsmos_cached(wav, RATE, tmp_path)
    assert _dnsmos_cached(wav.clone(), RATE, tmp_path) == first == DnsmosScore(3.0, 3.5, 4.0, 1.0)
    assert _dnsmos_cached(wav * 0.5, RATE, tmp_path).p808 == 2.0 and len(calls) == 2
    assert _dnsmos_cached(torch.zeros(1, 800), RATE, tmp_path) is None and len(calls) == 2


def test_cli_sweep(tiny_weights, clips, tmp_path, capsys):
    from codec.__main__ import main

    out = tmp_path / "report"
    code = main(["sweep", str(clips[1]), "--report", str(out), "--model", str(tiny_weights), "-b", "1.5",
                 "--no-baselines", "--no-dnsmos", "--quiet", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 2 and summary["model"] == "tiny" and (out / "report.html").is_file()
    assert main(["sweep", str(tmp_path / "nothing.wav"), "--report", str(out), "--quiet"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "no such file" in error and "\n" not in error


def test_summary_table_means_per_system_and_setting():
    from codec.sweep import summary_table

    rows = [
        {"kind": "speech", "family": "neural", "system": "default", "setting": "6 kbps", "nominal_kbps": "6",
         "file_kbps": "6.2", "pesq_wb": "1.0", "stoi": "0.5", "si_sdr": "-1", "mel_distance": "0.4"},
        {"kind": "speech", "family": "neural", "system": "default", "setting": "6 kbps", "nominal_kbps": "6",
         "file_kbps": "6.4", "pesq_wb": "2.0", "stoi": "0.7", "si_sdr": "3", "mel_distance": "0.6"},
        {"kind": "speech", "family": "baseline", "system": "codec2", "setting": "codec2 3.2k", "nominal_kbps": "3.2",
         "file_kbps": "3.2", "pesq_wb": "1.4", "stoi": "0.8", "si_sdr": "-30", "si_sdr_meaningful": "False",
         "mel_distance": "0.7"},
        {"kind": "speech", "family": "reference", "system": "original", "setting": "", "nominal_kbps": ""},
    ]
    lines = summary_table(rows).splitlines()
    assert lines[2] == "| speech | default | 6 kbps | 6.30 | 1.50 | 0.600 | 1.00 | 0.500 |"
    assert lines[3] == "| speech | codec2 | codec2 3.2k | 3.20 | 1.40 | 0.800 | – | 0.700 |"
    assert len(lines) == 4
