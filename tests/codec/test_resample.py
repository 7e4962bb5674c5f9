"""The numpy resampler is torchaudio's filter: same lengths, same samples up to float rounding."""

import numpy as np
import pytest
import torch
import torchaudio.functional as AF

from codec.audio import convert_audio
from codec.resample import resample, sinc_kernel


@pytest.mark.parametrize("rates", [(44100, 24000), (48000, 24000), (16000, 24000), (22050, 24000), (24000, 16000),
                                   (8000, 24000), (24000, 48000), (32000, 24000)])
def test_resample_equals_torchaudio(rates):
    source, target = rates
    wav = np.random.default_rng(0).standard_normal((2, source // 5 + 17)).astype(np.float32) * 0.3
    expected = AF.resample(torch.from_numpy(wav), source, target).numpy()
    out = resample(wav, source, target)
    assert out.shape == expected.shape == (2, -(-wav.shape[1] * target // source))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_resample_same_rate_is_identity_and_kernel_sums_to_gain():
    wav = np.ones((1, 100), np.float32)
    assert resample(wav, 24000, 24000) is wav
    kernel, width = sinc_kernel(48000, 24000)
    assert kernel.shape == (1, 2 * width + 2)
    # downsampling by 2 with a cut-off at 0.99 x the new Nyquist: a constant keeps its level within a few percent
    assert abs(kernel.sum() - 1.0) < 0.02


def test_convert_audio_numpy_matches_torch():
    wav = np.random.default_rng(1).standard_normal((2, 4410)).astype(np.float32) * 0.2
    for rate, channels in [(24000, 1), (44100, 1), (44100, 2)]:
        from_numpy = convert_audio(wav, 44100, rate, channels)
        from_torch = convert_audio(torch.from_numpy(wav), 44100, rate, channels).numpy()
        assert isinstance(from_numpy, np.ndarray)
        np.testing.assert_allclose(from_numpy, from_torch, atol=1e-6)
