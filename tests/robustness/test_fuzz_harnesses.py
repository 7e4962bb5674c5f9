"""Runs each atheris harness in fuzz/ for a bounded time (`FUZZ_SECONDS`, default 20 s each) as a subprocess.

A harness fails on any exception other than the project's own errors, on an input that runs longer than 10 s
(`-timeout`, a hang), on a single allocation over 2 GB (`-malloc_limit_mb`, one that follows a forged length) and
when the process grows past 4 GB (`-rss_limit_mb`; the harness itself, torch included, sits near 0.6-0.7 GB, but a
CI run on a loaded machine once reported 2.3 GB without any large allocation). The crashing input is then in the
test's tmp folder and its bytes are printed. Skipped when atheris is not installed (`pip install atheris`, part of
the `test` extra on Linux).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

FUZZ = Path(__file__).parent / "fuzz"
ROOT = Path(__file__).resolve().parents[2]
SECONDS = int(os.environ.get("FUZZ_SECONDS", "20"))


@pytest.mark.parametrize("harness", ["fuzz_ecdc.py", "fuzz_tokens.py"])
def test_harness_finds_nothing(harness, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    corpus, artifacts = tmp_path / "corpus", tmp_path / "artifacts"
    corpus.mkdir()
    artifacts.mkdir()
    if harness == "fuzz_ecdc.py":
        subprocess.run([sys.executable, str(FUZZ / harness), "--write-seeds", str(corpus)], env=env, check=True,
                       timeout=300)
    flags = [f"-max_total_time={SECONDS}", "-rss_limit_mb=4096", "-malloc_limit_mb=2048", "-timeout=10",
             "-max_len=4096", f"-artifact_prefix={artifacts}/"]
    done = subprocess.run([sys.executable, str(FUZZ / harness), *flags, str(corpus)], env=env, capture_output=True,
                          text=True, timeout=SECONDS + 300)
    found = {p.name: p.read_bytes()[:200] for p in artifacts.iterdir()}
    assert done.returncode == 0 and not found, f"{found}\n{done.stderr[-3000:]}"
    runs = [line for line in done.stderr.splitlines() if line.startswith("Done ")]
    assert runs and int(runs[0].split()[1]) > 100, done.stderr[-2000:]  # it really ran
