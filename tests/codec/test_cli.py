"""The `codec` command line: outputs, reports, and one clear line + exit 1 for every bad input."""

import json
import os
import subprocess
import sys

import pytest

from codec.__main__ import main


def run(*args):
    return main([str(a) for a in args])


def test_compress_decompress_roundtrip(tiny_weights, speech_path, tmp_path, capsys):
    ecdc, wav = tmp_path / "a.ecdc", tmp_path / "a.wav"
    assert run("compress", speech_path, ecdc, "-b", "3", "--model", tiny_weights, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_codebooks"] == 4 and report["weights_sha256"] and ecdc.stat().st_size == report["file_bytes"]
    # 4 codebooks x 75 frames/s x 10 bits = 3 kbps of payload, plus the header
    assert 3.0 <= report["file_kbps"] < 3.3
    assert run("decompress", ecdc, wav, "--model", tiny_weights, "--rate", "16000") == 0
    assert "16000 Hz" in capsys.readouterr().out
    import soundfile as sf

    info = sf.info(str(wav))
    assert info.samplerate == 16000 and abs(info.duration - report["duration_s"]) < 1e-3
    assert run("roundtrip", speech_path, "-b", "1.5", "--model", tiny_weights, "--no-dnsmos", "--json") == 0
    rt = json.loads(capsys.readouterr().out)
    assert rt["num_codebooks"] == 2 and {"si_sdr", "pesq_wb", "stoi", "mel_distance"} <= rt["quality"].keys()


def test_roundtrip_prints_model_and_sha(tiny_weights, speech_path, capsys):
    assert run("roundtrip", speech_path, "--model", tiny_weights, "--no-dnsmos") == 0
    out = capsys.readouterr().out
    assert "weights    sha256 " in out and "PESQ-wb" in out and "real time" in out


def _error(capsys):
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.parametrize("bad", ["missing.wav", "empty.wav", "text.wav"])
def test_bad_inputs_fail_cleanly(tiny_weights, tmp_path, capsys, bad):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("not audio")
    out = tmp_path / "out.ecdc"
    assert run("compress", tmp_path / bad, out, "--model", tiny_weights) == 1
    _error(capsys)
    assert not out.exists() and not list(tmp_path.glob("*.tmp*"))


def test_nan_input_fails_cleanly(tiny_weights, tmp_path, capsys):
    import numpy as np
    import soundfile as sf

    data = np.zeros(2400, dtype=np.float32)
    data[100] = np.nan
    sf.write(tmp_path / "nan.wav", data, 24000, subtype="FLOAT")
    assert run("compress", tmp_path / "nan.wav", tmp_path / "o.ecdc", "--model", tiny_weights) == 1
    assert "NaN" in _error(capsys)


def test_bandwidth_and_existing_output(tiny_weights, speech_path, tmp_path, capsys):
    out = tmp_path / "o.ecdc"
    assert run("compress", speech_path, out, "-b", "5", "--model", tiny_weights) == 1
    assert "does not offer 5 kbps" in _error(capsys)
    out.write_bytes(b"keep me")
    assert run("compress", speech_path, out, "--model", tiny_weights) == 1
    assert "--force" in _error(capsys) and out.read_bytes() == b"keep me"
    assert run("compress", speech_path, out, "--model", tiny_weights, "--force") == 0
    assert run("compress", speech_path, speech_path, "--model", tiny_weights, "--force") == 1  # never the input
    _error(capsys)


def test_corrupted_truncated_and_foreign_containers(tiny_weights, speech_path, tmp_path, capsys):
    from codec.models.weights import export_frame_codec

    ecdc = tmp_path / "a.ecdc"
    assert run("compress", speech_path, ecdc, "--model", tiny_weights) == 0
    data = bytearray(ecdc.read_bytes())
    flipped, truncated = tmp_path / "flip.ecdc", tmp_path / "trunc.ecdc"
    data[-10] ^= 0x10
    flipped.write_bytes(bytes(data))
    truncated.write_bytes(ecdc.read_bytes()[:-7])
    for bad in (flipped, truncated):
        assert run("decompress", bad, tmp_path / "x.wav", "--model", tiny_weights) == 1
        _error(capsys)
        assert not (tmp_path / "x.wav").exists()
    other = tmp_path / "other.safetensors"
    from tests.conftest import tiny_frame_codec

    export_frame_codec(tiny_frame_codec(seed=1), other)
    assert run("decompress", ecdc, tmp_path / "x.wav", "--model", other) == 1
    assert "weights" in _error(capsys)


def test_python_dash_m_and_missing_default(tmp_path, speech_path, monkeypatch):
    monkeypatch.setenv("CODEC_MODEL", str(tmp_path / "nothing.safetensors"))
    proc = subprocess.run([sys.executable, "-m", "codec", "roundtrip", str(speech_path)], capture_output=True,
                          text=True, env={**__import__("os").environ})
    assert proc.returncode == 1 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


def test_info_lists_models_and_places(capsys):
    assert run("info", "--json") == 0
    info = json.loads(capsys.readouterr().out)
    names = [m["name"] for m in info["models"]]
    assert names == ["default", "encodec_24khz", "encodec_48khz"]
    assert any("encodec_24khz-d7cc33bc.th" in p for p in info["models"][1]["weights"])
    assert info["models"][0]["runtime"].startswith("onnxruntime") and info["models"][1]["runtime"] == "torch"
    assert info["models"][0]["runtime_export"].startswith(os.environ["CODEC_CACHE"])  # conftest's per-session cache
    assert isinstance(info["models"][0]["runtime_exported"], bool)
