"""scripts/lm_demo.py --tiny: the whole demonstration (shards, training, eval, continuation, spectrogram) runs."""

import importlib.util
import json
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parents[2]


def test_tiny_demo_runs_end_to_end(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("lm_demo", ROOT / "scripts" / "lm_demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    out = tmp_path / "demo"
    argv = ["--tiny", "--out", str(out), "--corpus", str(ROOT / "samples"), "--steps", "2", "--train-minutes", "0.2",
            "--prompt-seconds", "1", "--seconds", "0.5", "--quiet"]
    assert demo.main(argv) == 0
    printed = capsys.readouterr().out
    assert "unigram" in printed and "audio LM" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["eval"]["codec_bits_per_second"] == 1500
    assert sf.info(str(out / "continuation.wav")).duration <= 1.0 + 38 / 75 + 1e-6  # 38 = round(37.5) frames
    assert sf.info(str(out / "continuation.wav")).duration > 1.0  # the prompt and at least one new frame
    assert (out / "spectrogram.png").read_bytes()[:4] == b"\x89PNG"
    selection = (out / "corpus" / "manifest.csv").read_text()
    assert "music_midi.flac,valid" in selection  # the first file by name is held out, never trained on
