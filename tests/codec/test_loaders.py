"""Loading EnCodec from Meta's checkpoints and transformers' directories: same model either way, clear errors."""

from __future__ import annotations

import hashlib
import os
import pickle

import pytest
import torch

from codec.errors import WeightsError
from codec.loaders import (
    KNOWN_MODELS,
    load_encodec,
    load_hf_directory,
    load_meta_checkpoint,
    lookup_locations,
)
from tests.codec.encodec_fixtures import META_FILES, hf_model, meta_model, write_hf_directory, write_meta_checkpoint


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty torch hub and Hugging Face caches for this test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return tmp_path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """arch -> (Meta checkpoint path, transformers directory) holding the same random weights."""
    root = tmp_path_factory.mktemp("weights")
    return {arch: (write_meta_checkpoint(root / "meta", arch), write_hf_directory(root / arch, arch))
            for arch in ("encodec_24khz", "encodec_48khz")}


def sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def hf_snapshot(caches, hf_id: str):
    return caches / "hf" / "hub" / ("models--" + hf_id.replace("/", "--")) / "snapshots" / "0123abcd"


@pytest.mark.parametrize("arch,seconds,bandwidth", [("encodec_24khz", 0.7, 24.0), ("encodec_48khz", 0.5, 6.0)])
def test_meta_and_hf_loaders_give_the_same_model(files, arch, seconds, bandwidth):
    meta_path, hf_dir = files[arch]
    from_meta, from_hf = load_meta_checkpoint(meta_path), load_hf_directory(hf_dir)
    assert from_meta.weights.sha256 == sha256(meta_path) and from_meta.weights.path == str(meta_path)
    assert from_hf.weights.sha256 == sha256(hf_dir / "model.safetensors")
    assert from_meta.arch == from_hf.arch == arch
    assert from_hf.bandwidths == from_meta.bandwidths == KNOWN_MODELS[arch].bandwidths
    assert (from_hf.segment_length, from_hf.normalize) == (from_meta.segment_length, from_meta.normalize)
    for key, value in from_meta.state_dict().items():
        assert torch.equal(value, from_hf.state_dict()[key]), key
    torch.manual_seed(3)
    wav = 0.3 * torch.randn(1, from_meta.channels, int(seconds * from_meta.sample_rate))
    a, b = from_meta.encode(wav, bandwidth), from_hf.encode(wav, bandwidth)
    assert torch.equal(a.codes, b.codes)
    assert torch.equal(from_meta.decode(a), from_hf.decode(b))


@pytest.mark.parametrize("arch,seconds,bandwidth", [("encodec_24khz", 0.5, 12.0), ("encodec_48khz", 1.0, 24.0)])
def test_transformers_encodec_agrees(files, arch, seconds, bandwidth):
    ours = load_hf_directory(files[arch][1])
    theirs = hf_model(arch)
    torch.manual_seed(4)
    wav = 0.3 * torch.randn(1, ours.channels, int(seconds * ours.sample_rate))
    with torch.no_grad():
        out = theirs.encode(wav, bandwidth=bandwidth)
    frames = list(out.audio_codes)  # [N, B, K, T], the last one padded
    if out.last_frame_pad_length:
        frames[-1] = frames[-1][..., : -out.last_frame_pad_length]
    encoded = ours.encode(wav, bandwidth)
    assert torch.equal(encoded.codes, torch.cat(frames, dim=-1))
    if arch == "encodec_48khz":
        assert torch.equal(encoded.scales, torch.cat(out.audio_scales, dim=-1))
    with torch.no_grad():
        expected = theirs.decode(out.audio_codes, out.audio_scales, last_frame_pad_length=out.last_frame_pad_length)
    assert (ours.decode(encoded) - expected.audio_values[..., : wav.shape[-1]]).abs().max() <= 1e-5


def test_directory_is_valid_for_transformers_and_its_own_save_loads(files, tmp_path):
    from transformers import EncodecModel

    theirs = EncodecModel.from_pretrained(files["encodec_24khz"][1])
    expected = meta_model("encodec_24khz").state_dict()["decoder.model.0.conv.conv.weight_v"]
    assert torch.equal(theirs.decoder.layers[0].conv.parametrizations.weight.original1, expected)
    theirs.save_pretrained(tmp_path / "saved")  # transformers' own naming (parametrizations...)
    reloaded = load_hf_directory(tmp_path / "saved")
    reference = load_meta_checkpoint(files["encodec_24khz"][0])
    wav = 0.3 * torch.randn(1, 1, 9000)
    assert torch.equal(reloaded.encode(wav, 6.0).codes, reference.encode(wav, 6.0).codes)


def test_registry_names_found_in_the_caches(files, caches):
    meta_path, hf_dir = files["encodec_24khz"]
    hub = caches / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    os.symlink(meta_path, hub / META_FILES["encodec_24khz"])
    model = load_encodec("encodec_24khz")
    assert model.weights.path == str(hub / META_FILES["encodec_24khz"])
    assert model.weights.name == "encodec_24khz" and model.weights.sha256 == sha256(meta_path)

    snapshot = hf_snapshot(caches, "facebook/encodec_48khz")
    snapshot.parent.mkdir(parents=True)
    os.symlink(files["encodec_48khz"][1], snapshot)
    model = load_encodec("facebook/encodec_48khz")
    assert model.weights.path == str(snapshot / "model.safetensors") and model.arch == "encodec_48khz"
    # a registry name falls back on the Hugging Face cache
    assert load_encodec("encodec_48khz").weights.path == str(snapshot / "model.safetensors")
    # explicit paths: a file and a directory
    assert load_encodec(str(meta_path)).weights.path == str(meta_path)
    assert load_encodec(str(hf_dir)).arch == "encodec_24khz"


def test_lookup_locations(caches):
    assert lookup_locations("encodec_24khz") == [
        str(caches / "torch" / "hub" / "checkpoints" / "encodec_24khz-d7cc33bc.th"),
        str(hf_snapshot(caches, "facebook/encodec_24khz").parent / "*"),
    ]
    assert lookup_locations("facebook/encodec_48khz")[1].endswith("encodec_48khz-7e698e3e.th")


def test_missing_weights_name_every_place_and_the_fix(caches):
    with pytest.raises(WeightsError) as info:
        load_encodec("encodec_24khz")
    message = str(info.value)
    assert "\n" not in message
    for place in lookup_locations("encodec_24khz"):
        assert place in message
    assert "copy encodec_24khz-d7cc33bc.th into" in message and "--model /path/to/encodec_24khz-d7cc33bc.th" in message


def test_unknown_name_and_wrong_paths(caches, tmp_path):
    with pytest.raises(WeightsError, match="not a known model"):
        load_encodec("encodec_96khz")
    with pytest.raises(WeightsError, match="config.json"):
        load_encodec(str(tmp_path))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(WeightsError, match="unknown weights file type"):
        load_encodec(str(tmp_path / "notes.txt"))
    torch.save({"x": torch.zeros(1000)}, tmp_path / "whole.th")
    (tmp_path / "broken.th").write_bytes((tmp_path / "whole.th").read_bytes()[:700])
    with pytest.raises(WeightsError, match="cannot read"):
        load_encodec(str(tmp_path / "broken.th"))


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['EXPLOIT_MARKER']}",))


def test_pickled_code_is_refused(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("EXPLOIT_MARKER", str(marker))
    path = tmp_path / "encodec_24khz-d7cc33bc.th"
    with open(path, "wb") as f:
        pickle.dump({"encoder.model.0.conv.conv.weight_g": _Exploit()}, f)
    torch.save({"x": _Exploit()}, tmp_path / "evil.pt")
    for candidate in (path, tmp_path / "evil.pt"):
        with pytest.raises(WeightsError, match="refused") as info:
            load_encodec(str(candidate))
        assert "\n" not in str(info.value)
    assert not marker.exists()
    with pytest.raises(WeightsError, match="GLOBAL posix.system"):
        load_encodec(str(tmp_path / "evil.pt"))


def test_mismatched_weights_are_a_clear_error(files, tmp_path):
    state = torch.load(files["encodec_24khz"][0], weights_only=True)
    del state["decoder.model.0.conv.conv.bias"]
    torch.save(state, tmp_path / "partial.th")
    with pytest.raises(WeightsError, match="1 missing"):
        load_encodec(str(tmp_path / "partial.th"))
    torch.save({"something.else": torch.zeros(3)}, tmp_path / "other.th")
    with pytest.raises(WeightsError, match="not an EnCodec"):
        load_encodec(str(tmp_path / "other.th"))
