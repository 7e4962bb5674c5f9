import pytest
import torch

from codec.errors import BandwidthError, WeightsError
from codec.models.framecodec import FrameSTFT
from codec.models.weights import export_frame_codec, load_frame_codec


@pytest.mark.parametrize("length", [320, 321, 4000, 24011])
def test_stft_istft_reconstructs(length):
    stft = FrameSTFT(1280, 320)
    x = torch.randn(2, length + (-length) % 320)
    spec = stft.stft(x)
    assert spec.shape == (2, 641, x.shape[-1] // 320)
    assert torch.allclose(stft.istft(spec), x, atol=1e-5)


@pytest.mark.parametrize("length", [1, 319, 320, 7777])
def test_encode_decode_lengths(tiny_codec, length):
    wav = torch.randn(1, 1, length) * 0.1
    encoded = tiny_codec.encode(wav, 3.0)
    assert encoded.codes.shape == (1, 4, tiny_codec.num_frames(length))
    assert tiny_codec.decode(encoded).shape == (1, 1, length)


def test_bandwidths_and_codebooks(tiny_codec):
    assert [tiny_codec.codebooks_for(b) for b in tiny_codec.bandwidths] == [2, 4, 8, 16, 32]
    with pytest.raises(BandwidthError, match="does not offer 5 kbps"):
        tiny_codec.codebooks_for(5.0)


def test_chunked_processing_equals_whole_signal(tiny_codec):
    torch.manual_seed(3)
    wav = torch.randn(1, 1, 320 * 237 + 5) * 0.1
    whole = tiny_codec.encode(wav, 6.0)
    decoded = tiny_codec.decode(whole)
    tiny_codec.chunk_frames = 40
    try:
        chunked = tiny_codec.encode(wav, 6.0)
        assert torch.equal(chunked.codes, whole.codes)
        assert torch.allclose(tiny_codec.decode(whole), decoded, atol=1e-5)
    finally:
        del tiny_codec.chunk_frames


def test_export_and_load_round_trip(tiny_codec, tmp_path):
    path = tmp_path / "w.safetensors"
    sha = export_frame_codec(tiny_codec, path)
    loaded = load_frame_codec(path)
    assert loaded.weights.sha256 == sha and len(sha) == 64
    assert loaded.config == tiny_codec.config
    # the file is fp16: the loaded model equals the original with its weights rounded to fp16
    state = {k: (v.half().float() if v.is_floating_point() else v) for k, v in tiny_codec.state_dict().items()}
    tiny_codec.load_state_dict(state)
    wav = torch.randn(1, 1, 8000) * 0.1
    assert torch.equal(loaded.encode(wav, 6.0).codes, tiny_codec.encode(wav, 6.0).codes)


def test_load_rejects_other_files(tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError):
        load_frame_codec(bad)
    with pytest.raises(WeightsError, match="no weights file"):
        load_frame_codec(tmp_path / "missing.safetensors")
