"""The torch-free runtime (`codec.runtime`): the same codec as the torch model, with no torch in the process."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from codec import WeightsError, load_codec
from codec.container import read_ecdc
from codec.models.framecodec import FrameSTFT, spectral_features
from codec.pipeline import compress, decompress, read_container
from codec.registry import layout_of
from codec.runtime import RuntimeFrameCodec, dsp, load_runtime_codec
from codec.runtime.export import runtime_dir
from tests.conftest import ROOT


def clip(seconds: float, rate: int = 24000, seed: int = 0) -> np.ndarray:
    """[1, 1, S]: a chirp with noise, so that every codebook has work to do."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    wav = 0.3 * np.sin(2 * np.pi * (200 + 900 * t) * t) + 0.05 * rng.standard_normal(t.shape)
    return wav.astype(np.float32)[None, None]


def test_dsp_matches_the_torch_framing():
    stft = FrameSTFT(1280, 320)
    wav = clip(0.52)[0]  # 39 hops
    spec = dsp.stft(wav, 1280, 320, dsp.hann_window(1280))  # frame-major [B, T, F]
    expected = stft.stft(torch.from_numpy(wav))  # [B, F, T]
    assert spec.shape == (1, wav.shape[-1] // 320, 641) and tuple(expected.shape) == (1, 641, wav.shape[-1] // 320)
    np.testing.assert_allclose(spec, expected.numpy().transpose(0, 2, 1), atol=2e-4)
    np.testing.assert_allclose(dsp.spectral_features(spec), spectral_features(expected).numpy().transpose(0, 2, 1),
                               atol=2e-3, rtol=1e-4)
    magnitude, phase = np.abs(spec), np.angle(spec)
    back = dsp.istft(magnitude, phase, 1280, 320, dsp.hann_window(1280))
    np.testing.assert_allclose(back, wav, atol=1e-5)  # perfect reconstruction, edges included
    np.testing.assert_allclose(back, stft.istft(expected).numpy(), atol=1e-5)
    np.testing.assert_allclose(back, dsp.istft(magnitude.copy(), phase.copy(), 1280, 320, dsp.hann_window(1280)))


def test_runtime_agrees_with_the_torch_model(tiny_weights):
    model = load_codec(str(tiny_weights))
    runtime = load_codec(str(tiny_weights), runtime="onnxruntime")
    assert isinstance(runtime, RuntimeFrameCodec) and runtime.runtime == "onnxruntime"
    assert runtime.weights == model.weights
    assert (runtime.sample_rate, runtime.frame_rate, runtime.bandwidths) == \
        (model.sample_rate, model.frame_rate, model.bandwidths)
    wav = clip(2.03)
    for bandwidth in (1.5, 6.0, 24.0):
        ours = runtime.encode(wav, bandwidth)
        reference = model.encode(torch.from_numpy(wav), bandwidth)
        assert isinstance(ours.codes, np.ndarray) and ours.codes.dtype == np.int64
        assert ours.codes.shape == tuple(reference.codes.shape) and ours.length == reference.length
        assert (ours.codes == reference.codes.numpy()).mean() > 0.995  # float rounding may flip a near-tie
        decoded = runtime.decode(reference)
        expected = model.decode(reference).numpy()
        assert decoded.shape == expected.shape == wav.shape
        np.testing.assert_allclose(decoded, expected, atol=1e-4)


def test_runtime_chunking_and_block_independence(tiny_weights):
    runtime = load_runtime_codec(tiny_weights)
    wav = clip(3.1)
    whole = runtime.encode(wav, 6.0)
    runtime.chunk_frames = 40  # many chunks; the kept frames see the whole receptive field
    chunked = runtime.encode(wav, 6.0)
    blocks = runtime.encode_blocks([wav[..., i: i + 3001] for i in range(0, wav.shape[-1], 3001)], 6.0)
    assert (chunked.codes == whole.codes).mean() > 0.995
    np.testing.assert_array_equal(blocks.codes, chunked.codes)  # block sizes never change the codes
    pieces = list(runtime.iter_decode(chunked))
    assert len(pieces) == -(-chunked.codes.shape[-1] // 40)
    assert sum(p.shape[-1] for p in pieces) == wav.shape[-1]
    empty = runtime.encode(np.zeros((1, 1, 0), np.float32), 6.0)
    assert empty.codes.shape == (1, 8, 0) and runtime.decode(empty).shape == (1, 1, 0)


def test_export_is_cached_per_weights_file(tiny_weights, tmp_path):
    load_runtime_codec(tiny_weights)
    directory = runtime_dir(tiny_weights, load_codec(str(tiny_weights)).weights.sha256)
    assert sorted(p.name for p in directory.iterdir()) == \
        ["codebooks.npy", "decoder.onnx", "encoder.onnx", "runtime.json"]
    stamp = (directory / "encoder.onnx").stat().st_mtime_ns
    load_runtime_codec(tiny_weights)
    assert (directory / "encoder.onnx").stat().st_mtime_ns == stamp  # not exported again
    assert not [p for p in directory.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left
    meta = json.loads((directory / "runtime.json").read_text())
    weights = load_codec(str(tiny_weights)).weights
    meta["sha256"] = "0" * 64
    (directory / "runtime.json").write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="not the runtime of"):
        RuntimeFrameCodec(directory, weights)


@pytest.mark.parametrize("damage", ["stale", "truncated"])
def test_a_damaged_export_is_made_again(tiny_weights, damage):
    wav = clip(0.5)
    expected = load_runtime_codec(tiny_weights).encode(wav, 3.0).codes
    directory = runtime_dir(tiny_weights, load_codec(str(tiny_weights)).weights.sha256)
    if damage == "stale":
        meta = json.loads((directory / "runtime.json").read_text())
        (directory / "runtime.json").write_text(json.dumps({**meta, "sha256": "0" * 64}))
    else:
        data = (directory / "decoder.onnx").read_bytes()
        (directory / "decoder.onnx").write_bytes(data[: len(data) // 2])
    codec = load_runtime_codec(tiny_weights)
    assert json.loads((directory / "runtime.json").read_text())["sha256"] == codec.weights.sha256
    np.testing.assert_array_equal(codec.encode(wav, 3.0).codes, expected)


@pytest.mark.parametrize(("value", "threads"), [("1", 1), ("2,1", 2), ("", 0), ("auto", 0)])
def test_thread_count_follows_omp_num_threads(monkeypatch, value, threads):
    from codec.runtime.framecodec import _omp_threads

    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert _omp_threads() == threads


def test_runtime_choice():
    with pytest.raises(WeightsError, match="frame codec only"):
        load_codec("encodec_24khz", runtime="onnxruntime")
    with pytest.raises(ValueError, match="runtime must be one of"):
        load_codec("default", runtime="jax")


def test_auto_falls_back_to_torch_without_a_writable_cache(tiny_weights, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("CODEC_CACHE", str(blocker / "cache"))  # under a file: nothing can be created there
    assert load_codec(str(tiny_weights), runtime="auto").runtime == "torch"
    with pytest.raises(OSError):
        load_codec(str(tiny_weights), runtime="onnxruntime")


def test_files_are_shared_between_runtimes(tiny_weights, tmp_path):
    import soundfile as sf

    source = tmp_path / "in.wav"
    sf.write(source, clip(1.5, 44100)[0, 0], 44100)  # resampled on the way in: numpy twin vs torchaudio
    model = load_codec(str(tiny_weights))
    runtime = load_codec(str(tiny_weights), runtime="onnxruntime")
    compress(runtime, source, tmp_path / "a.ecdc", 6.0)
    compress(model, source, tmp_path / "b.ecdc", 6.0)
    with open(tmp_path / "a.ecdc", "rb") as a, open(tmp_path / "b.ecdc", "rb") as b:
        codes_a = read_ecdc(a, layout_of(model), tensors=False).encoded
        codes_b = read_container(model, b)
    assert isinstance(codes_a.codes, np.ndarray) and isinstance(codes_b.codes, torch.Tensor)
    assert (codes_a.codes == codes_b.codes.numpy()).mean() > 0.995
    decompress(model, tmp_path / "a.ecdc", tmp_path / "a_torch.wav")  # a runtime's file, decoded by torch
    decompress(runtime, tmp_path / "a.ecdc", tmp_path / "a_rt.wav", rate=16000)
    a_torch, rate = sf.read(tmp_path / "a_torch.wav")
    assert rate == 24000 and a_torch.shape == (36000,)
    assert sf.info(tmp_path / "a_rt.wav").samplerate == 16000


def test_cli_runs_without_torch(tiny_weights, tmp_path):
    """`codec compress` / `decompress` / `roundtrip` (metrics included) of a frame codec never import torch once the
    export is cached."""
    load_runtime_codec(tiny_weights)  # the export (which needs torch) happens here, in this process
    import soundfile as sf

    source = tmp_path / "in.wav"
    sf.write(source, clip(1.0)[0, 0], 24000)
    script = (
        "import sys\n"
        "from codec.__main__ import main\n"
        f"assert main(['compress', {str(source)!r}, {str(tmp_path / 'x.ecdc')!r}, '-m', {str(tiny_weights)!r}]) == 0\n"
        f"assert main(['decompress', {str(tmp_path / 'x.ecdc')!r}, {str(tmp_path / 'y.wav')!r}, "
        f"'-m', {str(tiny_weights)!r}]) == 0\n"
        f"assert main(['roundtrip', {str(source)!r}, '-m', {str(tiny_weights)!r}, '--no-dnsmos']) == 0\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "y.wav").is_file()
