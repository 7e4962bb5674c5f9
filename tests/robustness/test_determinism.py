"""The same input, model and bandwidth give a byte-identical `.ecdc` across runs and thread counts.

Each compression runs in a fresh process (`torch.set_num_threads(n)` and `OMP_NUM_THREADS=n`, then `codec
compress`), for the tiny frame codec (which the CLI runs on ONNX Runtime, `codec.runtime`) and a random-weight Meta
24 kHz model, on a speech clip short enough to be encoded at once and on one long enough (> 10 s) for the streaming
path. Meta's encoder sums its oneDNN convolutions in a thread-dependent order, so `compress` runs it on one thread
unless `--any-threads` is given; with that flag, a few codes at near-ties of the nearest-codebook search may differ
between thread counts (measured 0.1-0.3 %), and only that is allowed.
"""

from __future__ import annotations

import io
import os
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
import sys, torch  # the frame codec's runtime (onnxruntime) takes its thread count from OMP_NUM_THREADS
torch.set_num_threads(int(sys.argv[1]))
from codec.__main__ import main
sys.exit(main(["compress", *sys.argv[2:], "--force"]))
"""


def compress_in_process(threads: int, source: Path, out: Path, model: Path, bandwidth: float,
                        *flags: str) -> bytes:
    command = [sys.executable, "-c", SCRIPT, str(threads), str(source), str(out), "--model", str(model),
               "-b", str(bandwidth), *flags]
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": str(threads),
           "CODEC_CACHE": os.environ["CODEC_CACHE"]}  # the frame codec runs on ONNX Runtime, from this cache
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return out.read_bytes()


LAYOUT = CodecLayout(sample_rate=24_000, frame_rate=75)


def differing_codes(a: bytes, b: bytes) -> str:
    codes_a = read_ecdc(io.BytesIO(a), lambda name: LAYOUT, verify=False).encoded.codes
    codes_b = read_ecdc(io.BytesIO(b), lambda name: LAYOUT, verify=False).encoded.codes
    if codes_a.shape != codes_b.shape:
        return f"shapes {list(codes_a.shape)} vs {list(codes_b.shape)}"
    return f"{int((codes_a != codes_b).sum())} of {codes_a.numel()} codes differ"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    from codec.models.weights import export_frame_codec
    from tests.codec.encodec_fixtures import write_meta_checkpoint
    from tests.conftest import tiny_frame_codec

    folder = tmp_path_factory.mktemp("models")
    export_frame_codec(tiny_frame_codec(), folder / "tiny.safetensors")
    return {"tiny": folder / "tiny.safetensors", "meta24": write_meta_checkpoint(folder, "encodec_24khz")}


# Thread counts each case runs with (a fresh process each). Meta's model runs 1 and 2 threads twice: equal within a
# thread count, and the codes that differ between thread counts are counted (see below).
CASES = [
    ("tiny", 4.0, 6.0, (1, 1, 2)),
    ("tiny", 25.0, 24.0, (1, 2)),  # more than one 20 s chunk of the frame codec
    ("meta24", 3.0, 6.0, (1, 1, 2, 2)),
    ("meta24", 12.0, 24.0, (1, 2)),  # streamed (> 10 s)
]
CROSS_THREAD_TOLERANCE = 0.01  # --any-threads: at most this fraction of Meta's codes may differ between counts


@pytest.mark.parametrize(("model", "seconds", "bandwidth", "threads"), CASES, ids=[f"{c[0]}-{c[1]:g}s" for c in CASES])
def test_ecdc_bytes_equal_across_runs_and_thread_counts(models, tmp_path, model, seconds, bandwidth, threads):
    """Byte-identical across runs and across thread counts, for both architectures."""
    speech = read_audio(ROOT / "samples" / "speech_fr.flac")
    wav = speech.wav.mean(0, keepdim=True)
    need = int(seconds * speech.sample_rate)
    wav = wav.repeat(1, -(-need // wav.shape[1]))[:, :need]
    source = tmp_path / "in.wav"
    write_audio(source, wav, speech.sample_rate)
    runs: dict[int, list[bytes]] = {}
    for index, count in enumerate(threads):
        data = compress_in_process(count, source, tmp_path / f"{index}.ecdc", models[model], bandwidth)
        runs.setdefault(count, []).append(data)
    for count, outputs in runs.items():
        for data in outputs[1:]:
            assert data == outputs[0], f"{count} threads: {differing_codes(outputs[0], data)}"
    first, second = runs[1][0], runs[2][0]
    assert first == second, f"1 vs 2 threads: {differing_codes(first, second)}"
    if model == "meta24":  # every thread: equal within a thread count, near-ties may flip between counts
        fast = [compress_in_process(n, source, tmp_path / f"any{n}.ecdc", models[model], bandwidth, "--any-threads")
                for n in (2, 2)]
        assert fast[0] == fast[1], differing_codes(*fast)
        a, b = (read_ecdc(io.BytesIO(x), lambda name: LAYOUT, verify=False).encoded.codes for x in (first, fast[0]))
        assert a.shape == b.shape and float((a != b).float().mean()) <= CROSS_THREAD_TOLERANCE, differing_codes(
            first, fast[0])
    codes = read_ecdc(io.BytesIO(first), lambda name: LAYOUT).encoded.codes
    samples = -(-need * 24_000 // speech.sample_rate)
    assert list(codes.shape) == [1, round(bandwidth / 0.75), -(-samples * 75 // 24_000)]
    assert len(torch.unique(codes)) > 10  # real codes, not a constant
