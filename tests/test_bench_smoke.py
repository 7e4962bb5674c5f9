"""The benchmark scripts run end to end on tiny models (`--smoke`) and print their tables. Not a timed test: the
numbers they print are meaningless at this size; what is checked is that every part runs and the equality checks
(codes, waveforms, greedy tokens, training loss) pass."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_bench_codec_smoke(capsys):
    bench = _script("bench_codec")
    status = bench.main(["--smoke", "--seconds", "2", "--repeats", "1", "--threads", "1", "--memory-seconds", "1",
                         "--profile", "1", "--layers", "1"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "| `aten::mkldnn_convolution` |" in out  # the profile table
    assert "identical-codes limit:" in out and "opt-in time-major encoder" in out
    assert "| decoder transposed conv 32->16 k16 s8 | 32 x 75 |" in out  # the layer table, tiny model
    assert "| encodec_24khz (random weights) | 2 s | encode |" in out
    assert "0/" in out and "codes differ" in out  # identical codes, counted
    assert "| default (" in out and "peak RSS" in out
    assert re.search(r"torch-free runtime .* 0/1200 codes differ from the torch model's", out)  # 2 s, K = 8
    assert "smoke run: speed targets not enforced" in out


def test_bench_startup_runs(capsys):
    """Every case runs in a fresh process and gets a row; whether the targets are met depends on the machine."""
    bench = _script("bench_startup")
    status = bench.main(["--repeats", "1", "--skip", "gemma"])
    out = capsys.readouterr().out
    assert status in (0, 1), out
    for case in ("import torch", "codec (onnxruntime)", "codec (torch)", "codec compress, 1 s clip (CLI)"):
        assert f"| {case} |" in out
    assert out.count("(no torch)") == 2


def test_bench_lm_smoke(capsys):
    bench = _script("bench_lm")
    status = bench.main(["--smoke", "--repeats", "1", "--threads", "1", "--tokens", "16", "--train-tokens", "16",
                         "--profile-train"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "| `aten::mm` |" in out  # the training step's profile
    for label in ("baseline", "generate_codes", "FastDecoder", "restricted_forward", "GB/s", "the recipe's step",
                  "attention alone"):
        assert label in out
    assert "loss differs" not in out  # both heads give the same loss in both training steps
    assert "| NO |" not in out  # every greedy output equals the baseline's


def test_peak_memory_of_a_child_is_its_own():
    """A child started while the parent holds 300 MB reports its own peak, not the parent's (`ru_maxrss` would)."""
    import subprocess

    import pytest

    if not Path("/proc/self/status").exists():
        pytest.skip("VmHWM needs Linux /proc")
    ballast = bytearray(300 * 2**20)
    ballast[:: 4096] = b"\x01" * len(ballast[:: 4096])  # touch every page
    child = "import sys; sys.path.insert(0, 'scripts'); from peakmem import peak_rss_mb; print(peak_rss_mb())"
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert 1 < float(out) < 100
    del ballast


def test_bench_decode_step_smoke(capsys):
    bench = _script("bench_decode_step")
    assert bench.main(["--smoke", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    for label in ("F.linear(x, W)", "x @ W^T", "(W @ x^T)^T", "| B = 1 |", "| B = 8 |", "fastgen._rms_norm"):
        assert label in out


def test_reset_peak_forgets_what_came_before():
    """After `reset_peak`, the peak covers only what follows: a freed 200 MB buffer no longer counts, a new one does."""
    import subprocess

    import pytest

    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc/self/clear_refs")
    child = """
import sys; sys.path.insert(0, 'scripts')
from peakmem import current_rss_mb, peak_rss_mb, reset_peak
def touch(mb):
    b = bytearray(mb * 2**20); b[::4096] = b"\\x01" * len(b[::4096]); return b
b = touch(200); del b
before = peak_rss_mb()
assert reset_peak()
after_reset = peak_rss_mb()
c = touch(100)
print(before, after_reset, peak_rss_mb(), current_rss_mb())
"""
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    before, after_reset, peak, now = map(float, out.split())
    assert before > 200 and after_reset < 100 and 100 < peak < 200 and now > 100
