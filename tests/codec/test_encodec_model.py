"""EncodecModel against Meta's `encodec.EncodecModel` holding the same (random) weights: identical codes."""

from __future__ import annotations

import math

import pytest
import torch

from codec.errors import AudioError, BandwidthError, CodecError
from codec.interface import EncodedAudio
from codec.loaders import load_meta_checkpoint
from codec.models import encodec_24khz, encodec_48khz
from codec.models.encodec import linear_overlap_add
from tests.codec.encodec_fixtures import meta_model, write_meta_checkpoint


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """arch -> (ours, Meta's) with the same weights."""
    directory = tmp_path_factory.mktemp("meta")
    return {arch: (load_meta_checkpoint(write_meta_checkpoint(directory, arch)), meta_model(arch))
            for arch in ("encodec_24khz", "encodec_48khz")}


def meta_encode(meta, wav, bandwidth):
    meta.set_target_bandwidth(bandwidth)
    with torch.no_grad():
        return meta.encode(wav)


@pytest.mark.parametrize("arch,batch,seconds", [("encodec_24khz", 2, 1.0), ("encodec_48khz", 1, 1.0)])
def test_codes_identical_to_meta_at_every_bandwidth(models, arch, batch, seconds):
    """Meta encodes at the lowest and highest bandwidth; RVQ codes at K codebooks are the first K of the codes at
    the maximum (Meta's own output shows it below), so every bandwidth of ours is compared with Meta's."""
    ours, meta = models[arch]
    torch.manual_seed(1)
    wav = 0.3 * torch.randn(batch, ours.channels, int(seconds * ours.sample_rate))
    frames = meta_encode(meta, wav, ours.bandwidths[-1])
    expected = torch.cat([codes for codes, _ in frames], dim=-1)  # [B, K_max, T]
    lowest = torch.cat([codes for codes, _ in meta_encode(meta, wav, ours.bandwidths[0])], dim=-1)
    assert torch.equal(lowest, expected[:, : lowest.shape[1]])
    for bandwidth in ours.bandwidths:
        encoded = ours.encode(wav, bandwidth)
        num_codebooks = ours.codebooks_for(bandwidth)
        assert encoded.codes.shape == (batch, num_codebooks, expected.shape[-1])
        assert torch.equal(encoded.codes, expected[:, :num_codebooks])
        assert encoded.length == wav.shape[-1]
        if arch == "encodec_48khz":
            assert torch.equal(encoded.scales, torch.cat([scale for _, scale in frames], dim=-1))
            assert encoded.scales.shape == (batch, 2) and encoded.segment_frames == 150
        else:
            assert encoded.scales is None
    # the codes use many entries (the fixture's codebooks are not degenerate)
    assert encoded.codes[:, 0].unique().numel() > 50


@pytest.mark.parametrize("arch,seconds,bandwidth", [("encodec_24khz", 1.3, 6.0), ("encodec_48khz", 1.0, 12.0)])
def test_decode_matches_meta(models, arch, seconds, bandwidth):
    ours, meta = models[arch]
    torch.manual_seed(2)
    wav = 0.3 * torch.randn(1, ours.channels, int(seconds * ours.sample_rate))
    frames = meta_encode(meta, wav, bandwidth)
    with torch.no_grad():
        expected = meta.decode(frames)[..., : wav.shape[-1]]
    encoded = ours.encode(wav, bandwidth)
    assert torch.equal(encoded.codes, torch.cat([codes for codes, _ in frames], dim=-1))
    decoded = ours.decode(encoded)
    assert decoded.shape == wav.shape
    assert (decoded - expected).abs().max() <= 1e-5


def test_geometry_of_the_presets():
    small, large = encodec_24khz(), encodec_48khz()
    assert (small.sample_rate, small.channels, small.frame_rate, small.max_codebooks) == (24_000, 1, 75, 32)
    assert small.bandwidths == (1.5, 3.0, 6.0, 12.0, 24.0)
    assert [small.codebooks_for(b) for b in small.bandwidths] == [2, 4, 8, 16, 32]
    assert (large.sample_rate, large.channels, large.frame_rate, large.max_codebooks) == (48_000, 2, 150, 16)
    assert [large.codebooks_for(b) for b in large.bandwidths] == [2, 4, 8, 16]
    assert (large.segment_length, large.segment_stride, large.segment_frames) == (48_000, 47_520, 150)
    assert small.codebook_vectors().shape == (32, 1024, 128)
    assert small.causal and not large.causal


@pytest.mark.parametrize("length", [1, 319, 320, 321, 24_000])
def test_frames_per_length_24khz(models, length):
    ours, _ = models["encodec_24khz"]
    encoded = ours.encode(torch.randn(1, 1, length), 1.5)
    assert encoded.codes.shape == (1, 2, math.ceil(length / 320)) == (1, 2, ours.num_frames(length))
    assert ours.decode(encoded).shape == (1, 1, length)


def test_segments_of_48khz(models):
    ours, _ = models["encodec_48khz"]
    wav = 0.1 * torch.randn(1, 2, 48_000)  # 1 s: a full segment and a 480-sample tail segment
    encoded = ours.encode(wav, 3.0)
    assert encoded.scales.shape == (1, 2)
    assert encoded.codes.shape == (1, 2, 150 + 2)
    assert ours.decode(encoded).shape == wav.shape
    with pytest.raises(CodecError, match="scales"):
        ours.decode(EncodedAudio(codes=encoded.codes, scales=None, segment_frames=150))


def test_codebook_vectors_are_metas(models):
    ours, meta = models["encodec_24khz"]
    expected = torch.stack([layer._codebook.embed for layer in meta.quantizer.vq.layers])
    assert torch.equal(ours.codebook_vectors(), expected)


def test_user_errors_are_one_line(models):
    ours, _ = models["encodec_24khz"]
    with pytest.raises(BandwidthError, match="1.5, 3, 6, 12, 24"):
        ours.encode(torch.zeros(1, 1, 100), 5.0)
    with pytest.raises(AudioError, match=r"\[B, 1, S\]"):
        ours.encode(torch.zeros(1, 2, 100), 6.0)
    with pytest.raises(AudioError, match="empty"):
        ours.encode(torch.zeros(1, 1, 0), 6.0)


def test_linear_overlap_add_matches_meta():
    from encodec.utils import _linear_overlap_add

    torch.manual_seed(0)
    frames = [torch.randn(2, 2, 100), torch.randn(2, 2, 100), torch.randn(2, 2, 37)]
    assert torch.equal(linear_overlap_add(frames, 90), _linear_overlap_add(frames, 90))
