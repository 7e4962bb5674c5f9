"""Killing `codec train` at any moment loses at most the steps since the last checkpoint and never corrupts a resume.

- A real `python -m codec train` is SIGKILLed at random moments (seeded; the seed is in the failure message), then
  resumed: it continues from the last complete checkpoint and reaches its target.
- Every failure point inside a checkpoint write (mid `torch.save`, before and between the renames) is simulated:
  the loader returns the newest complete checkpoint, never a partial one.
- A crash between the log row and the checkpoint of a step does not leave duplicate steps in `log.csv` after resume.
"""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from codec.train import checkpoint as ckpt
from codec.train.checkpoint import load_verified, save_atomic

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
TINY_SETS = ["--set", 'model={"dim": 16, "intermediate_dim": 32, "encoder_layers": 1, "decoder_layers": 1, '
             '"latent_dim": 8, "num_codebooks": 32}', "--set", "segment_seconds=0.2", "--set", "batch_size=2",
             "--set", "disc_channels=4", "--set", "valid_every=1000000000", "--set", "checkpoint_every=1",
             "--set", "log_every=1", "--set", "warmup_steps=1", "--set", "adv_start_step=2"]


def train_command(run: Path, steps: int) -> list[str]:
    return [sys.executable, "-m", "codec", "train", str(SAMPLES), "--out", str(run), "--steps", str(steps),
            "--threads", "1", "--quiet", "--device", "cpu", *TINY_SETS]


ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}


def logged_steps(run: Path) -> list[int]:
    with open(run / "log.csv") as f:
        return [int(row["step"]) for row in csv.DictReader(f)]


def test_sigkill_at_random_moments_then_resume(tmp_path):
    seed = int(os.environ.get("CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    run = tmp_path / "run"
    steps_seen = [0]
    for _ in range(3):
        process = subprocess.Popen(train_command(run, 10_000), env=ENV, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.time() + 300
        start_mtime = (run / "checkpoint.pt").stat().st_mtime_ns if (run / "checkpoint.pt").exists() else 0
        while time.time() < deadline and process.poll() is None:  # wait for a new checkpoint, then a random delay
            path = run / "checkpoint.pt"
            if path.exists() and path.stat().st_mtime_ns != start_mtime:
                break
            time.sleep(0.05)
        assert process.poll() is None, process.communicate()[1].decode()[-2000:]
        time.sleep(rng.uniform(0, 2.0))
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        state = load_verified(run / "checkpoint.pt")  # must load: the newest complete checkpoint
        assert state["step"] >= steps_seen[-1], f"seed {seed}: went back from {steps_seen[-1]} to {state['step']}"
        steps_seen.append(int(state["step"]))
    last = steps_seen[-1]
    done = subprocess.run(train_command(run, last + 2), env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"seed {seed}: {done.stderr[-2000:]}"
    assert f"from step {last}" in done.stdout, f"seed {seed}: {done.stdout}"
    assert load_verified(run / "checkpoint.pt")["step"] == last + 2
    assert logged_steps(run) == list(range(1, last + 3)), f"seed {seed}: steps {steps_seen}"


class Crash(Exception):
    """Stands for the process dying at this point."""


@pytest.mark.parametrize("point", ["mid_torch_save", "before_first_rename", "between_renames", "after_renames"])
def test_crash_at_every_point_of_a_checkpoint_write(tmp_path, monkeypatch, point):
    path = tmp_path / "checkpoint.pt"
    for step in (1, 2):
        save_atomic({"step": step, "model": {"w": torch.full((1000,), float(step))}}, path)
    real_save, real_replace, calls = torch.save, os.replace, []

    def partial_save(state, f):
        real_save(state, f)
        f.seek(0)
        f.truncate(100)  # the bytes a kill would leave behind
        raise Crash

    def replace(src, dst):
        calls.append(dst)
        if (point == "before_first_rename" and len(calls) == 1) or (point == "between_renames" and len(calls) == 2):
            raise Crash
        real_replace(src, dst)

    if point == "mid_torch_save":
        monkeypatch.setattr(ckpt.torch, "save", partial_save)
    monkeypatch.setattr(ckpt.os, "replace", replace)
    try:
        save_atomic({"step": 3, "model": {"w": torch.full((1000,), 3.0)}}, path)
    except Crash:
        pass
    monkeypatch.undo()
    state = load_verified(path)
    expected = 3 if point == "after_renames" else 2
    assert state["step"] == expected and torch.equal(state["model"]["w"], torch.full((1000,), float(expected)))


def test_no_duplicate_log_rows_after_a_crash_between_log_and_checkpoint(tmp_path, monkeypatch):
    from codec.train.config import TrainConfig
    from codec.train.trainer import Trainer

    torch.set_num_threads(1)
    config = TrainConfig(
        model={"dim": 16, "intermediate_dim": 32, "encoder_layers": 1, "decoder_layers": 1, "latent_dim": 8,
               "num_codebooks": 32},
        segment_seconds=0.2, batch_size=2, adv_start_step=2, disc_channels=4, valid_every=10**9, log_every=1,
        checkpoint_every=1, warmup_steps=1,
    )
    first = Trainer(config, SAMPLES, tmp_path, device="cpu", quiet=True)
    real = Trainer.save_checkpoint

    def dies_at_step_3(self):
        if self.state.step == 3:
            raise Crash
        real(self)

    monkeypatch.setattr(Trainer, "save_checkpoint", dies_at_step_3)
    with pytest.raises(Crash):
        first.fit(steps=5)
    monkeypatch.undo()
    assert load_verified(tmp_path / "checkpoint.pt")["step"] == 2
    resumed = Trainer(config, SAMPLES, tmp_path, device="cpu", quiet=True)
    assert resumed.state.step == 2
    resumed.fit(steps=4)
    assert logged_steps(tmp_path) == [1, 2, 3, 4]


def test_audiolm_prepare_killed_at_a_random_moment_resumes_to_the_same_shards(tmp_path):
    """SIGKILL `audiolm prepare` once a shard exists; the rerun verifies complete shards, redoes the rest, and the
    result equals an uninterrupted run (every shard passes its page checksums; no temporary file is taken for one)."""
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from audiolm.data import SHARD_GLOB, read_shard_record
    from codec.audio import write_audio
    from codec.models.weights import export_frame_codec
    from tests.conftest import tiny_frame_codec

    seed = int(os.environ.get("CRASH_SEED", random.randrange(1 << 30)))
    weights = tmp_path / "tiny.safetensors"
    export_frame_codec(tiny_frame_codec(), weights)
    inputs = tmp_path / "audio"
    inputs.mkdir()
    gen = torch.Generator().manual_seed(0)
    for index in range(48):
        write_audio(inputs / f"clip{index:02d}.wav", torch.randn(1, 24_000, generator=gen) * 0.1, 24_000)

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "audiolm", "prepare", str(inputs), "--out", str(out), "--model", str(weights),
                "--files-per-shard", "1", "-b", "3", "--quiet"]

    killed, straight = tmp_path / "killed", tmp_path / "straight"
    process = subprocess.Popen(command(killed), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None and not list(killed.glob(SHARD_GLOB)):
        time.sleep(0.02)
    time.sleep(random.Random(seed).uniform(0, 0.3))  # all 48 shards take about 2 s
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    before = sorted(p.name for p in killed.glob(SHARD_GLOB))
    assert 0 < len(before) < 48, f"seed {seed}: the kill came after {len(before)} shards"
    for name in before:  # what a kill leaves under a shard's name is complete
        read_shard_record(killed / name)
    resumed = subprocess.run(command(killed), env=ENV, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, f"seed {seed}: {resumed.stderr[-2000:]}"
    assert f"{len(before)} already complete" in resumed.stdout, f"seed {seed}: {resumed.stdout}"
    done = subprocess.run(command(straight), env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    names = sorted(p.name for p in straight.glob(SHARD_GLOB))
    assert len(names) == 48 and sorted(p.name for p in killed.glob(SHARD_GLOB)) == names
    for name in names:
        read_shard_record(killed / name)
        a = pq.read_table(killed / name, columns=["codes", "source"]).to_pylist()
        b = pq.read_table(straight / name, columns=["codes", "source"]).to_pylist()
        assert a == b, f"seed {seed}: {name} differs from an uninterrupted run"


def test_audiolm_train_killed_at_a_random_moment_resumes_from_its_last_checkpoint(tmp_path):
    """SIGKILL `audiolm train` (tiny Gemma, tiny codec's shards) after a checkpoint; the checkpoint left behind loads,
    the rerun resumes from it, reaches its target, and `log.csv` holds each training step once."""
    import importlib.util

    from audiolm.data import PrepareConfig, prepare
    from audiolm.train import CHECKPOINT_DIR
    from codec.audio import write_audio
    from tests.conftest import tiny_frame_codec

    spec = importlib.util.spec_from_file_location("audiolm_fixtures", ROOT / "tests" / "audiolm" / "conftest.py")
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    seed = int(os.environ.get("CRASH_SEED", random.randrange(1 << 30)))
    gen = torch.Generator().manual_seed(0)
    (tmp_path / "audio" / "train").mkdir(parents=True)
    for index in range(3):
        write_audio(tmp_path / "audio" / "train" / f"{index}.wav", torch.randn(1, 24_000, generator=gen) * 0.1,
                    24_000)
    prepare(tmp_path / "audio", tmp_path / "shards", tiny_frame_codec(), PrepareConfig(bandwidth=1.5), progress=False)
    base = tmp_path / "base"
    fixtures.make_tiny_gemma().save_pretrained(base)
    fixtures.make_tiny_tokenizer().save_pretrained(base)
    run = tmp_path / "run"

    def command(steps: int) -> list[str]:
        return [sys.executable, "-m", "audiolm", "train", str(tmp_path / "shards"), "--out", str(run), "--base",
                str(base), "--steps", str(steps), "--seq-len", "32", "--batch-size", "1", "--save-every", "1",
                "--eval-every", "1000000", "--log-every", "1", "--warmup", "1", "--quiet"]

    process = subprocess.Popen(command(100_000), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None and not (run / CHECKPOINT_DIR).is_dir():
        time.sleep(0.02)
    assert process.poll() is None, process.communicate()[1].decode()[-2000:]
    time.sleep(random.Random(seed).uniform(0, 2.0))
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    import json

    step = json.loads((run / CHECKPOINT_DIR / "state.json").read_text())["step"]
    assert step >= 1
    done = subprocess.run(command(step + 2), env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"seed {seed}: {done.stderr[-2000:]}"
    with open(run / "log.csv") as f:
        train_steps = [int(row["step"]) for row in csv.DictReader(f) if row["split"] == "train"]
    assert train_steps == list(range(1, step + 3)), f"seed {seed}: killed at step {step}"
