"""One-iteration smoke tests of the training recipe, resume, and crash-safe checkpoints."""

import csv
from pathlib import Path

import pytest
import torch

from codec.errors import WeightsError
from codec.train.balancer import Balancer
from codec.train.checkpoint import load_verified, save_atomic
from codec.train.config import TrainConfig
from codec.train.trainer import Trainer

SAMPLES = Path(__file__).resolve().parents[2] / "samples"

TINY = TrainConfig(
    model={"dim": 16, "intermediate_dim": 32, "encoder_layers": 1, "decoder_layers": 1, "latent_dim": 8,
           "num_codebooks": 32},
    segment_seconds=0.2, batch_size=2, adv_start_step=1, disc_channels=4, valid_every=10**9, log_every=1,
    checkpoint_every=1, warmup_steps=1,
)


def _weights(trainer):
    return {k: v.clone() for k, v in trainer.raw_model.state_dict().items()}


def test_one_iteration_then_resume_equals_uninterrupted(tmp_path):
    torch.set_num_threads(1)
    straight = Trainer(TINY, SAMPLES, tmp_path / "a", device="cpu", quiet=True)
    straight.fit(steps=2)
    with open(tmp_path / "a" / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows] == ["1", "2"]
    # the discriminator joins at step 1 (after one step): its columns are added and every row stays aligned
    assert rows[0]["disc"] == "" and float(rows[1]["disc"]) > 0
    assert all(float(r["mel"]) > 0 and 0 < float(r["usage"]) <= 1 for r in rows)
    first = Trainer(TINY, SAMPLES, tmp_path / "b", device="cpu", quiet=True)
    first.fit(steps=1)
    resumed = Trainer(TINY, SAMPLES, tmp_path / "b", device="cpu", quiet=True)
    assert resumed.state.step == 1
    resumed.fit(steps=2)
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-6), name


def test_validation_reports_metrics(tmp_path):
    trainer = Trainer(TINY, SAMPLES, tmp_path / "v", device="cpu", quiet=True)
    trainer.init_codebooks(batches=1)
    results = trainer.validate()
    assert {"mel@6", "sisdr@6", "mel@24"} <= results.keys()


def test_damaged_checkpoint_falls_back_to_previous(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_atomic({"step": 1, "model": {}}, path)
    save_atomic({"step": 2, "model": {}}, path)
    assert load_verified(path)["step"] == 2
    path.write_bytes(path.read_bytes()[:20])  # a crash mid-write cannot do this (atomic rename), a disk error can
    assert load_verified(path)["step"] == 1
    path.with_name("checkpoint.pt.prev").write_bytes(b"junk")
    with pytest.raises(WeightsError, match="cannot resume"):
        load_verified(path)


def test_pickled_code_in_checkpoint_is_refused(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    path = tmp_path / "checkpoint.pt"
    with open(path, "wb") as f:
        pickle.dump({"step": 1, "model": Evil()}, f)
    with pytest.raises(WeightsError):
        load_verified(path)


def test_balancer_splits_the_output_gradient_by_weight():
    out = torch.randn(100, requires_grad=True)
    balancer = Balancer({"a": 3.0, "b": 1.0}, total_norm=1.0)
    y = out * 1.0
    losses = {"a": (y * 5).sum(), "b": (y * 0.01).sum()}  # very different natural scales
    balancer.backward(losses, y)
    # each gradient is rescaled to weight/total of the norm: 0.75 * ones/|ones| + 0.25 * ones/|ones|
    assert torch.allclose(out.grad, torch.full((100,), 1.0 / 10.0), atol=1e-6)


def test_encodec_architecture_trains_and_exports(tmp_path):
    """Meta's EnCodec 24 kHz architecture through the same recipe: one step, export, load as a codec."""
    from codec import load_codec
    from codec.train.cli import export_run

    config = TrainConfig(arch="encodec_24khz", segment_seconds=0.1, batch_size=1, adv_start_step=-1,
                         valid_every=10**9, log_every=1, checkpoint_every=1, warmup_steps=1)
    trainer = Trainer(config, SAMPLES, tmp_path / "e", device="cpu", quiet=True)
    trainer.fit(steps=1)
    sha = export_run(tmp_path / "e", tmp_path / "e.safetensors")
    codec = load_codec(str(tmp_path / "e.safetensors"))
    assert codec.weights.sha256 == sha and codec.sample_rate == 24000
    wav = torch.randn(1, 1, 4000) * 0.1
    trained = trainer.raw_model.codec.eval()
    assert torch.equal(codec.encode(wav, 6.0).codes, trained.encode(wav, 6.0).codes)


def test_training_continues_from_exported_weights(tmp_path):
    """`--init weights.safetensors` (what scripts/train_default.sh does on a fresh machine) keeps the step count."""
    from codec.train.cli import export_run

    trainer = Trainer(TINY, SAMPLES, tmp_path / "a", device="cpu", quiet=True)
    trainer.fit(steps=1)
    export_run(tmp_path / "a", tmp_path / "w.safetensors")
    again = Trainer(TINY, SAMPLES, tmp_path / "b", device="cpu", quiet=True, init_weights=tmp_path / "w.safetensors")
    assert again.state.step == 1
    weights = dict(again.raw_model.state_dict())
    assert torch.allclose(weights["encoder.proj.weight"], trainer.raw_model.encoder.proj.weight.half().float())
    again.fit(steps=2)
    assert again.state.step == 2
