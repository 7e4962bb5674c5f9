"""compress / decompress read and write files in blocks where the codec allows it: the results must equal the
whole-waveform path exactly (block sizes and chunk sizes are shrunk here so a short file spans many of them)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from codec import pipeline
from codec.audio import load_for_model, write_audio
from codec.loaders import load_meta_checkpoint
from tests.codec.encodec_fixtures import write_meta_checkpoint
from tests.conftest import tiny_frame_codec


def write_noise(path, seconds: float, rate: int, channels: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    data = (rng.standard_normal((int(seconds * rate) + 7, channels)) * 0.1).astype(np.float32)
    sf.write(str(path), data, rate, subtype="FLOAT")
    return path


def whole_path(codec, source, bandwidth, tmp_path):
    """What compress + decompress give without the block path: encode/decode of the whole waveform."""
    wav, _ = load_for_model(source, codec.sample_rate, codec.channels)
    encoded = pipeline.encode(codec, wav, bandwidth)
    decoded = pipeline.decode(codec, encoded)
    reference = write_audio(tmp_path / "reference.wav", decoded[0], codec.sample_rate)
    return encoded, sf.read(str(reference))[0]


@pytest.mark.parametrize("channels", [1, 2])
def test_frame_codec_block_path_equals_whole_path(tmp_path, monkeypatch, channels):
    codec = tiny_frame_codec()
    codec.chunk_frames = 7  # many chunks
    monkeypatch.setattr(pipeline, "STREAM_CHUNK_SECONDS", 0.05)  # file blocks of 1200 samples
    source = write_noise(tmp_path / "in.wav", 1.3, codec.sample_rate, channels)
    seen = []
    original = pipeline.stream_audio
    monkeypatch.setattr(pipeline, "stream_audio",
                        lambda *a, **k: (seen.append(b.shape[-1]) or b for b in original(*a, **k)))
    report = pipeline.compress(codec, source, tmp_path / "x.ecdc", 6.0)
    assert len(seen) == 27 and max(seen) == 1200  # the file was read in blocks
    encoded, reference = whole_path(codec, source, 6.0, tmp_path)
    with open(tmp_path / "x.ecdc", "rb") as f:
        stored = pipeline.read_container(codec, f)
    assert torch.equal(stored.codes, encoded.codes) and stored.length == encoded.length == report.duration_s * 24000
    pipeline.decompress(codec, tmp_path / "x.ecdc", tmp_path / "out.wav")
    assert np.array_equal(sf.read(str(tmp_path / "out.wav"))[0], reference)


def test_resampled_input_takes_the_whole_path(tmp_path, monkeypatch):
    codec = tiny_frame_codec()
    source = write_noise(tmp_path / "in.wav", 0.5, 16000, 1)
    monkeypatch.setattr(pipeline, "stream_audio", lambda *a, **k: pytest.fail("a 16 kHz file cannot be read in blocks"))
    pipeline.compress(codec, source, tmp_path / "x.ecdc", 6.0)
    encoded, _ = whole_path(codec, source, 6.0, tmp_path)
    with open(tmp_path / "x.ecdc", "rb") as f:
        assert torch.equal(pipeline.read_container(codec, f).codes, encoded.codes)
    pipeline.decompress(codec, tmp_path / "x.ecdc", tmp_path / "out.wav", rate=16000)  # resampled: whole path
    assert sf.info(str(tmp_path / "out.wav")).frames == 8008  # ceil(ceil(8007 * 3 / 2) * 2 / 3)


def test_meta_causal_block_path_equals_whole_path(tmp_path, monkeypatch):
    codec = load_meta_checkpoint(write_meta_checkpoint(tmp_path / "meta", "encodec_24khz"))
    monkeypatch.setattr(pipeline, "STREAM_CHUNK_SECONDS", 0.25)  # 1 s of audio: 4 blocks, streamed either way
    source = write_noise(tmp_path / "in.wav", 1.0, codec.sample_rate, 1)
    pipeline.compress(codec, source, tmp_path / "x.ecdc", 6.0)
    encoded, reference = whole_path(codec, source, 6.0, tmp_path)
    with open(tmp_path / "x.ecdc", "rb") as f:
        assert torch.equal(pipeline.read_container(codec, f).codes, encoded.codes)
    pipeline.decompress(codec, tmp_path / "x.ecdc", tmp_path / "out.wav")
    assert np.array_equal(sf.read(str(tmp_path / "out.wav"))[0], reference)


def test_codes_buffer_equals_concatenation_across_regrowths():
    from codec.interface import CodesBuffer

    g = torch.Generator().manual_seed(0)
    pieces = [torch.randint(0, 1024, (2, 3, n), generator=g) for n in (750, 750, 1, 0, 2000, 750, 333)]
    buffer = CodesBuffer()
    with pytest.raises(ValueError, match="no codes"):
        buffer.result()
    for piece in pieces:
        buffer.append(piece)
    codes = buffer.result()
    assert torch.equal(codes, torch.cat(pieces, dim=-1)) and codes.dtype == torch.long
    assert buffer.buffer.shape[-1] == 8192  # 1024, doubled at 1500, 3501 and 4251 codes: few reallocations
