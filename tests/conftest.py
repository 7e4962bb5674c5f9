"""Shared fixtures: tiny codecs with random but fixed weights, and a short speech clip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"


def tiny_frame_codec(seed: int = 0):
    """A FrameCodec small enough for tests, with random codebooks (a zero codebook would make every code 0)."""
    from codec.models.framecodec import FrameCodecConfig, frame_codec

    torch.manual_seed(seed)
    model = frame_codec(FrameCodecConfig(dim=32, intermediate_dim=64, encoder_layers=1, decoder_layers=1,
                                         latent_dim=16), kmeans_init=False)
    for layer in model.quantizer.layers:
        layer.embed.normal_()
        layer.cluster_size.fill_(1.0)
        layer.inited.fill_(1.0)
    return model.eval()


@pytest.fixture(autouse=True)
def codec_cache(tmp_path_factory, monkeypatch) -> Path:
    """Runtime exports (`codec.runtime`) go to a folder of this test session, never to the user's cache."""
    root = tmp_path_factory.getbasetemp() / "codec-cache"
    monkeypatch.setenv("CODEC_CACHE", str(root))
    return root


@pytest.fixture
def tiny_codec():
    return tiny_frame_codec()


@pytest.fixture
def tiny_weights(tmp_path) -> Path:
    """The tiny codec exported as a weights file, as `codec train export` writes it."""
    from codec.models.weights import export_frame_codec

    path = tmp_path / "tiny.safetensors"
    export_frame_codec(tiny_frame_codec(), path)
    return path


@pytest.fixture
def speech_path() -> Path:
    return SAMPLES / "speech_fr.flac"
