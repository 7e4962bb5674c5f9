"""Tests for codec.metrics: exact values on identical signals, known SNRs and delays, monotonicity with noise."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import torch

from codec import metrics
from codec.audio import convert_audio, read_audio

RATE = 16000


def add_noise(signal: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """`signal` plus white Gaussian noise scaled to exactly `snr_db` dB (signal power / noise power)."""
    noise = np.random.default_rng(seed).standard_normal(len(signal))
    noise *= np.sqrt(np.mean(signal**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return signal + noise


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """About 4 s of synthetic English speech at 16 kHz (flite, else espeak-ng), `[S]` float64."""
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    text = "The quick brown fox jumps over the lazy dog. Codecs turn speech into a few tokens."
    if shutil.which("flite"):
        subprocess.run(["flite", "-voice", "slt", "-t", text, "-o", str(path)], check=True)
    elif shutil.which("espeak-ng"):
        subprocess.run(["espeak-ng", "-w", str(path), text], check=True)
    else:
        pytest.skip("neither flite nor espeak-ng is installed to synthesise test speech")
    audio = read_audio(path)
    return convert_audio(audio.wav, audio.sample_rate, RATE, 1)[0].double().numpy()


@pytest.fixture(scope="module")
def music() -> np.ndarray:
    """Two seconds of a chord with a little vibrato at 24 kHz, `[S]`."""
    t = np.arange(2 * 24000) / 24000
    return sum(0.2 * np.sin(2 * np.pi * f * t + 3 * np.sin(2 * np.pi * 5 * t)) for f in (220, 277, 330))


# --- SI-SDR --------------------------------------------------------------------------------------------------------

def test_si_sdr_identical_is_large(music: np.ndarray) -> None:
    value = metrics.si_sdr(music, music)
    expected = 10 * np.log10(np.sum((music - music.mean()) ** 2) / metrics.SI_SDR_EPS)  # see the docstring
    assert value > 100 and value == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize("snr_db", [10.0, 20.0])
def test_si_sdr_matches_white_noise_snr(music: np.ndarray, speech: np.ndarray, snr_db: float) -> None:
    assert metrics.si_sdr(music, add_noise(music, snr_db)) == pytest.approx(snr_db, abs=0.5)
    assert metrics.si_sdr(speech, add_noise(speech, snr_db, seed=1)) == pytest.approx(snr_db, abs=0.5)


def test_si_sdr_is_scale_and_offset_invariant(music: np.ndarray) -> None:
    noisy = add_noise(music, 15.0)
    base = metrics.si_sdr(music, noisy)
    assert metrics.si_sdr(music, 0.3 * noisy) == pytest.approx(base, abs=1e-6)  # only eps depends on scale
    assert metrics.si_sdr(music, 4.0 * noisy + 0.1) == pytest.approx(base, abs=1e-6)
    assert metrics.si_sdr(music, -noisy) == pytest.approx(base, abs=1e-6)  # the optimal gain may be negative


def test_si_sdr_accepts_torch_and_channels(music: np.ndarray) -> None:
    noisy = add_noise(music, 12.0)
    value = metrics.si_sdr(music, noisy)
    as_torch = metrics.si_sdr(torch.from_numpy(music).float()[None], torch.from_numpy(noisy).float()[None, None])
    assert as_torch == pytest.approx(value, abs=1e-3)
    as_bf16 = metrics.si_sdr(torch.from_numpy(music).bfloat16(), torch.from_numpy(noisy).bfloat16())
    assert as_bf16 == pytest.approx(value, abs=0.5)  # bfloat16 keeps 8 bits of mantissa
    stereo = np.stack([noisy + 0.01, noisy - 0.01])  # mixes down to `noisy`
    assert metrics.si_sdr(music, stereo) == pytest.approx(value, abs=1e-9)


# --- spectral distances ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sample_rate", [16000, 24000, 48000])
def test_spectral_distances_are_zero_for_identical_signals(music: np.ndarray, sample_rate: int) -> None:
    assert metrics.multi_resolution_stft_distance(music, music, sample_rate) == 0.0
    assert metrics.mel_distance(music, music, sample_rate) == 0.0


def test_metrics_are_monotone_in_noise_level(speech: np.ndarray) -> None:
    levels = [30.0, 20.0, 10.0, 0.0]  # SNR in dB, cleanest first
    noisy = [add_noise(speech, snr) for snr in levels]
    sdr = [metrics.si_sdr(speech, y) for y in noisy]
    stft = [metrics.multi_resolution_stft_distance(speech, y, RATE) for y in noisy]
    mel = [metrics.mel_distance(speech, y, RATE) for y in noisy]
    pesq = [metrics.pesq_wb(speech, y, RATE) for y in noisy]
    stoi = [metrics.stoi(speech, y, RATE) for y in noisy]
    assert sdr == sorted(sdr, reverse=True)
    assert stft == sorted(stft) and stft[0] > 0
    assert mel == sorted(mel) and mel[0] > 0
    assert pesq == sorted(pesq, reverse=True) and all(1.0 <= p <= 4.65 for p in pesq)
    assert stoi == sorted(stoi, reverse=True) and all(0.0 <= s <= 1.0 for s in stoi)


# --- PESQ, STOI, DNSMOS --------------------------------------------------------------------------------------------

def test_pesq_and_stoi_on_identical_speech(speech: np.ndarray) -> None:
    assert metrics.pesq_wb(speech, speech, RATE) > 4.5
    assert metrics.stoi(speech, speech, RATE) > 0.99
    assert metrics.stoi(speech, speech, RATE, extended=True) > 0.99


def test_pesq_resamples_other_rates(speech: np.ndarray) -> None:
    at_24k = convert_audio(torch.from_numpy(speech)[None], RATE, 24000, 1)[0].numpy()
    assert metrics.pesq_wb(at_24k, at_24k, 24000) > 4.5


def test_unscorable_signals_give_none(speech: np.ndarray) -> None:
    silence = np.zeros(RATE * 2)
    assert metrics.pesq_wb(silence, silence, RATE) is None
    assert metrics.pesq_wb(speech[:1000], speech[:1000], RATE) is None  # 62 ms is too short
    assert metrics.stoi(speech[:2000], speech[:2000], RATE) is None


def test_dnsmos_scores_speech_and_prefers_clean(speech: np.ndarray) -> None:
    clean = metrics.dnsmos(speech, RATE)
    report = metrics.evaluate(speech, add_noise(speech, 0.0), RATE)  # DNSMOS through `evaluate`, of the estimate
    noisy = report.dnsmos
    assert report.to_dict()["dnsmos_ovrl"] == noisy.ovrl
    for score in (clean, noisy):
        assert all(1.0 <= value <= 5.0 for value in (score.ovrl, score.sig, score.bak, score.p808))
    assert clean.bak > noisy.bak and clean.ovrl > noisy.ovrl
    assert metrics._dnsmos_model.cache_info().currsize == 1  # ONNX sessions loaded once


# --- delay and alignment ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("delay", [137, -137, 0])
def test_estimate_delay_finds_a_known_shift(speech: np.ndarray, delay: int) -> None:
    if delay >= 0:
        reference, estimate = speech, np.concatenate([np.zeros(delay), speech])
    else:
        reference, estimate = np.concatenate([np.zeros(-delay), speech]), speech
    estimate = add_noise(estimate, 10.0)
    assert metrics.estimate_delay(reference, estimate, max_delay_samples=800) == delay
    aligned = metrics.align(reference, estimate, max_delay=800)
    assert aligned.delay == delay and len(aligned.reference) == len(aligned.estimate)
    assert metrics.si_sdr(aligned.reference, aligned.estimate) == pytest.approx(10.0, abs=0.5)


def test_estimate_delay_respects_the_limit(speech: np.ndarray) -> None:
    shifted = np.concatenate([np.zeros(500), speech])
    assert abs(metrics.estimate_delay(speech, shifted, max_delay_samples=100)) <= 100


# --- evaluate ------------------------------------------------------------------------------------------------------

def test_evaluate_identical_speech(speech: np.ndarray) -> None:
    report = metrics.evaluate(speech, speech, RATE, dnsmos=False)
    assert report.delay == 0 and report.duration == pytest.approx(len(speech) / RATE)
    assert report.si_sdr > 100 and report.stft_distance == 0.0 and report.mel_distance == 0.0
    assert report.pesq_wb > 4.5 and report.stoi > 0.99 and report.dnsmos is None
    as_dict = report.to_dict()
    assert as_dict["pesq_wb"] == report.pesq_wb and as_dict["dnsmos_ovrl"] is None
    expected_keys = {"si_sdr", "stft_distance", "mel_distance", "stoi", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808"}
    assert set(as_dict) >= expected_keys


def test_evaluate_aligns_delay_and_length(speech: np.ndarray) -> None:
    delayed = np.concatenate([np.zeros(240), speech, np.zeros(1000)])  # a codec's latency plus padding
    report = metrics.evaluate(speech, delayed, RATE, dnsmos=False)
    assert report.delay == 240 and report.si_sdr > 100 and report.pesq_wb > 4.5
    unaligned = metrics.evaluate(speech, delayed, RATE, align_delay=False, dnsmos=False)
    assert unaligned.delay == 0 and unaligned.si_sdr < 10


def test_evaluate_music_skips_speech_metrics_and_mixes_channels(music: np.ndarray) -> None:
    noisy = add_noise(music, 20.0)
    stereo_reference, stereo_estimate = np.stack([music, music]), np.stack([noisy, noisy])
    report = metrics.evaluate(stereo_reference, torch.from_numpy(stereo_estimate)[None], 24000, speech=False)
    assert report.pesq_wb is None and report.stoi is None and report.dnsmos is None
    assert report.si_sdr == pytest.approx(20.0, abs=0.5)
    mono = metrics.evaluate(music, noisy, 24000, speech=False)
    assert report.to_dict() == pytest.approx(mono.to_dict())

