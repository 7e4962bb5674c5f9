"""The same input, model and bandwidth give a byte-identical `.ecdc` across runs and torch thread counts.

Each compression runs in a fresh process (`torch.set_num_threads(n)` then `codec compress`), for the tiny frame codec
and a random-weight Meta 24 kHz model, on a speech clip short enough to be encoded at once and on one long enough
(> 10 s) for the streaming path.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from codec.audio import read_audio, write_audio
from codec.container import CodecLayout, read_ecdc

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "codec"))

SCRIPT = """
import sys, torch
torch.set_num_threads(int(sys.argv[1]))
from codec.__main__ import main
sys.exit(main(["compress", *sys.argv[2:], "--force"]))
"""


def compress_in_process(threads: int, source: Path, out: Path, model: Path, bandwidth: float) -> bytes:
    command = [sys.executable, "-c", SCRIPT, str(threads), str(source), str(out), "--model", str(model),
               "-b", str(bandwidth)]
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return out.read_bytes()


def differing_codes(a: bytes, b: bytes) -> str:
    layout = CodecLayout(sample_rate=24_000, frame_rate=75)
    codes_a = read_ecdc(io.BytesIO(a), lambda name: layout, verify=False).encoded.codes
    codes_b = read_ecdc(io.BytesIO(b), lambda name: layout, verify=False).encoded.codes
    if codes_a.shape != codes_b.shape:
        return f"shapes {list(codes_a.shape)} vs {list(codes_b.shape)}"
    return f"{int((codes_a != codes_b).sum())} of {codes_a.numel()} codes differ"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    from conftest import tiny_frame_codec
    from encodec_fixtures import write_meta_checkpoint

    from codec.models.weights import export_frame_codec

    folder = tmp_path_factory.mktemp("models")
    export_frame_codec(tiny_frame_codec(), folder / "tiny.safetensors")
    return {"tiny": folder / "tiny.safetensors", "meta24": write_meta_checkpoint(folder, "encodec_24khz")}


@pytest.mark.parametrize(("model", "seconds", "bandwidth"), [
    ("tiny", 4.0, 6.0),
    ("tiny", 25.0, 24.0),  # more than one 20 s chunk of the frame codec
    ("meta24", 3.0, 6.0),
    ("meta24", 12.0, 24.0),  # streamed (> 10 s)
])
def test_ecdc_bytes_equal_across_runs_and_thread_counts(models, tmp_path, model, seconds, bandwidth):
    speech = read_audio(ROOT / "samples" / "speech_fr.flac")
    wav = speech.wav.mean(0, keepdim=True)
    need = int(seconds * speech.sample_rate)
    wav = wav.repeat(1, -(-need // wav.shape[1]))[:, :need]
    source = tmp_path / "in.wav"
    write_audio(source, wav, speech.sample_rate)
    runs = {
        "1 thread": compress_in_process(1, source, tmp_path / "a.ecdc", models[model], bandwidth),
        "1 thread again": compress_in_process(1, source, tmp_path / "b.ecdc", models[model], bandwidth),
        "2 threads": compress_in_process(2, source, tmp_path / "c.ecdc", models[model], bandwidth),
    }
    first = runs["1 thread"]
    for name, data in runs.items():
        assert data == first, f"{name}: {differing_codes(first, data)}"
    layout = CodecLayout(sample_rate=24_000, frame_rate=75)
    codes = read_ecdc(io.BytesIO(first), lambda name: layout).encoded.codes
    samples = -(-need * 24_000 // speech.sample_rate)
    assert list(codes.shape) == [1, round(bandwidth / 0.75), -(-samples * 75 // 24_000)]
    assert len(torch.unique(codes[0, 0])) > 10  # real codes, not a constant
