"""Checkpoints carrying code are refused by every loader, with a clear error, and the code never runs.

Each hostile file unpickles to `os.system("touch MARKER")`; after every load attempt the marker must not exist.
Loaders covered: `load_codec` on Meta `.th`/`.pt`/`.bin` files and on a transformers directory with
`pytorch_model.bin`, `codec decompress --model`, `codec train` resume (`checkpoint.pt` and its `.prev`),
`codec export`, `codec train --init`, the audio-LM trainer's resume (`optimizer.pt`) and transformers'
`from_pretrained` on a saved bridge's `pytorch_model.bin`.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
from pathlib import Path

import pytest
import torch

from codec.errors import CodecError, WeightsError

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
sys.path.insert(0, str(ROOT / "tests" / "codec"))


class Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def marker(tmp_path) -> Path:
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "the pickled payload ran"


def write_evil(path: Path, marker: Path, kind: str) -> Path:
    """A pickle whose loading runs the payload: a raw pickle, or torch.save's zip format around a state dict."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"step": 3, "model": {"w": torch.zeros(2)}, "evil": Payload(marker)}
    if kind == "raw":
        path.write_bytes(pickle.dumps(state, protocol=2))
    else:
        torch.save(state, path)
    return path


def test_the_payload_really_runs_under_plain_pickle(tmp_path):
    """Guards the other tests: the files are dangerous, so a loader that refuses them is doing real work."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()
    marker2 = tmp_path / "ran2"
    write_evil(tmp_path / "x.pt", marker2, "zip")
    torch.load(tmp_path / "x.pt", weights_only=False)
    assert marker2.exists()


@pytest.mark.parametrize("kind", ["raw", "zip"])
@pytest.mark.parametrize("suffix", [".th", ".pt", ".bin"])
def test_load_codec_refuses_a_pickled_meta_checkpoint(tmp_path, marker, kind, suffix):
    from codec.registry import load_codec

    path = write_evil(tmp_path / f"encodec_24khz{suffix}", marker, kind)
    with pytest.raises(WeightsError, match="refused|cannot read") as error:
        load_codec(str(path))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("kind", ["raw", "zip"])
def test_load_codec_refuses_a_transformers_directory_with_pickled_bin(tmp_path, marker, kind):
    from codec.registry import load_codec
    from tests.codec.encodec_fixtures import hf_config

    directory = tmp_path / "hf"
    write_evil(directory / "pytorch_model.bin", marker, kind)
    (directory / "config.json").write_text(json.dumps(hf_config("encodec_24khz").to_dict()))
    with pytest.raises(WeightsError, match="refused|cannot read"):
        load_codec(str(directory))


def test_decompress_with_a_pickled_model_is_exit_1(tmp_path, marker, capsys):
    from codec.__main__ import main

    path = write_evil(tmp_path / "model.th", marker, "zip")
    (tmp_path / "in.ecdc").write_bytes(b"ECDC")
    assert main(["decompress", str(tmp_path / "in.ecdc"), str(tmp_path / "out.wav"), "--model", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "refused" in err
    assert not (tmp_path / "out.wav").exists()


TINY_SETS = ["--set", 'model={"dim": 16, "intermediate_dim": 32, "encoder_layers": 1, "decoder_layers": 1, '
             '"latent_dim": 8, "num_codebooks": 32}', "--set", "segment_seconds=0.2", "--set", "batch_size=2",
             "--set", "disc_channels=4", "--set", "valid_every=1000000000", "--set", "checkpoint_every=1"]


@pytest.mark.parametrize("which", ["checkpoint.pt", "both"])
def test_train_resume_refuses_a_pickled_checkpoint(tmp_path, marker, capsys, which):
    from codec.__main__ import main

    run = tmp_path / "run"
    write_evil(run / "checkpoint.pt", marker, "zip")
    if which == "both":
        write_evil(run / "checkpoint.pt.prev", marker, "raw")
    code = main(["train", str(SAMPLES), "--out", str(run), "--steps", "1", "--quiet", "--threads", "1", *TINY_SETS])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot resume from") and err.count("\n") == 1, err
    assert sorted(p.name for p in run.iterdir()) == sorted(["checkpoint.pt", "config.json"]
                                                           + (["checkpoint.pt.prev"] if which == "both" else []))


def test_a_pickled_checkpoint_falls_back_to_the_previous_good_one(tmp_path, marker):
    from codec.train.checkpoint import load_verified, save_atomic

    path = tmp_path / "checkpoint.pt"
    save_atomic({"step": 7, "model": {"w": torch.ones(3)}}, path)
    write_evil(path.with_name("checkpoint.pt.tmp"), marker, "zip")
    os.replace(path, path.with_name("checkpoint.pt.prev"))
    os.replace(path.with_name("checkpoint.pt.tmp"), path)
    state = load_verified(path)
    assert state["step"] == 7 and torch.equal(state["model"]["w"], torch.ones(3))


def test_export_refuses_a_pickled_checkpoint(tmp_path, marker, capsys):
    from codec.__main__ import main

    write_evil(tmp_path / "run" / "checkpoint.pt", marker, "raw")
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "out.safetensors")]) == 1
    assert capsys.readouterr().err.startswith("error: cannot resume from")
    assert not (tmp_path / "out.safetensors").exists()


def test_train_init_refuses_a_pickle_named_safetensors(tmp_path, marker, capsys):
    from codec.__main__ import main

    init = write_evil(tmp_path / "init.safetensors", marker, "zip")
    code = main(["train", str(SAMPLES), "--out", str(tmp_path / "run"), "--steps", "1", "--quiet", "--threads", "1",
                 "--init", str(init), *TINY_SETS])
    assert code == 1
    assert "not a readable safetensors file" in capsys.readouterr().err


def test_audiolm_resume_refuses_a_pickled_optimizer_state(tmp_path, marker):
    train = pytest.importorskip("audiolm.train")
    from safetensors.torch import save_file

    directory = tmp_path / "run" / train.CHECKPOINT_DIR
    directory.mkdir(parents=True)
    (directory / "state.json").write_text('{"step": 3, "config": {}}')
    save_file({"w": torch.zeros(2)}, str(directory / "trainable.safetensors"))
    save_file({"torch": torch.get_rng_state()}, str(directory / "rng.safetensors"))
    write_evil(directory / "optimizer.pt", marker, "zip")
    try:
        train.load_checkpoint(tmp_path / "run", None, None, torch.Generator())
    except CodecError as error:
        assert "\n" not in str(error)
    else:
        pytest.fail("a pickled optimizer state was accepted")


def test_transformers_from_pretrained_refuses_a_pickled_bin(tmp_path, marker):
    """The loader behind `audiolm.model.load_bridge` (and Gemma directories): `pytorch_model.bin` holding code."""
    from transformers import AutoModelForCausalLM, Gemma3TextConfig

    directory = tmp_path / "bridge"
    config = Gemma3TextConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                              num_attention_heads=1, num_key_value_heads=1, head_dim=16)
    config.save_pretrained(directory)
    write_evil(directory / "pytorch_model.bin", marker, "zip")
    with pytest.raises(Exception) as error:  # noqa: B017 - transformers' own error type; what matters is the marker
        AutoModelForCausalLM.from_pretrained(str(directory), local_files_only=True, use_safetensors=False)
    assert "weights_only" in str(error.value) or "Unpickl" in type(error.value).__name__ + str(error.value)
