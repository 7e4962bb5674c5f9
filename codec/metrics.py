"""Audio quality metrics for comparing a codec's output with its input.

Every metric is a pure function of 1-D signals (numpy arrays or torch tensors, any float dtype; `[C, S]` or
`[1, C, S]` are mixed down to mono by the mean over channels). Pairs of different lengths are trimmed to the
shorter one. Each docstring states the unit and whether higher or lower is better. `evaluate` runs them all,
after aligning the codec's delay, and returns a `QualityReport`.

Intrusive metrics (need the reference): SI-SDR, multi-resolution STFT distance, log-mel distance, PESQ-wb, STOI.
Non-intrusive (estimate only): DNSMOS. PESQ, STOI and DNSMOS are defined for speech only.

Everything here is numpy (float64), so `codec roundtrip` on the torch-free runtime never imports torch; resampling is
`codec.resample`, torchaudio's filter.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from dataclasses import asdict, dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .arrays import is_tensor, to_numpy
from .resample import resample

SI_SDR_EPS = 1e-8  # added to both energies (sums of squares): identical signals give 10 log10(sum r^2 / 1e-8)
STFT_EPS = 1e-7  # floor of STFT magnitudes before the log
MEL_FLOOR = 1e-5  # floor of mel magnitudes before log10


def _mono(signal) -> np.ndarray:
    """`[S]`, `[C, S]` or `[1, C, S]` (numpy or torch) -> float64 numpy `[S]`, mixing channels by their mean."""
    if is_tensor(signal):  # any dtype, bfloat16 included (numpy has none), on any device
        signal = signal.detach().cpu().double()
    signal = np.asarray(to_numpy(signal), dtype=np.float64)
    if signal.ndim == 3 and signal.shape[0] == 1:
        signal = signal[0]
    if signal.ndim == 2:
        signal = signal.mean(axis=0)
    if signal.ndim != 1:
        raise ValueError(f"expected a signal [S], [C, S] or [1, C, S], got shape {list(signal.shape)}")
    return signal


def _pair(reference, estimate) -> tuple[np.ndarray, np.ndarray]:
    reference, estimate = _mono(reference), _mono(estimate)
    length = min(len(reference), len(estimate))
    return reference[:length], estimate[:length]


def _resample(signal: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    return resample(signal, int(from_rate), int(to_rate))


def _scaled_fft_size(base: int, sample_rate: int) -> int:
    """`base` FFT size at 24 kHz scaled to `sample_rate`, rounded to the nearest power of two (same duration)."""
    return 2 ** max(4, round(math.log2(base * sample_rate / 24000)))


def si_sdr(reference, estimate) -> float:
    """Scale-invariant signal-to-distortion ratio in dB; higher is better.

    Both signals are made zero-mean; the reference is scaled by the least-squares gain
    `a = <e, r> / <r, r>`, and `SI-SDR = 10 log10((|a r|^2 + eps) / (|e - a r|^2 + eps))` with `eps = 1e-8`.
    Identical signals give `10 log10(|r|^2 / eps)` (large: over +100 dB for a second of speech at 16 kHz);
    additive white noise at x dB SNR gives about x dB; scaling the estimate does not change it.
    """
    reference, estimate = _pair(reference, estimate)
    reference = reference - reference.mean()
    estimate = estimate - estimate.mean()
    gain = np.dot(estimate, reference) / (np.dot(reference, reference) + SI_SDR_EPS)
    target = gain * reference
    noise = estimate - target
    return float(10 * np.log10((np.dot(target, target) + SI_SDR_EPS) / (np.dot(noise, noise) + SI_SDR_EPS)))


def _stft_magnitude(signal: np.ndarray, n_fft: int) -> np.ndarray:
    """|STFT| `[F, N]`: periodic Hann window of `n_fft`, hop `n_fft // 4`, centred frames with zero padding (as
    `torch.stft(..., center=True, pad_mode="constant")`)."""
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    padded = np.pad(signal, n_fft // 2)
    frames = sliding_window_view(padded, n_fft)[:: n_fft // 4] * window  # [N, n_fft]
    return np.abs(np.fft.rfft(frames, axis=-1)).T


def multi_resolution_stft_distance(reference, estimate, sample_rate: int) -> float:
    """Multi-resolution STFT distance (no unit); lower is better, 0 for identical signals.

    For each FFT size n in (512, 1024, 2048) at 24 kHz (scaled to `sample_rate` and rounded to a power of two, so
    the window durations stay ~21/43/85 ms), with a Hann window and hop n/4, magnitudes R (reference) and E
    (estimate): spectral convergence `||R - E||_F / ||R||_F` plus log-magnitude L1 `mean|ln(R) - ln(E)|` (both
    floored at 1e-7). The result is the mean over the three resolutions of that sum.
    """
    reference, estimate = _pair(reference, estimate)
    total = 0.0
    sizes = [_scaled_fft_size(base, sample_rate) for base in (512, 1024, 2048)]
    for n_fft in sizes:
        ref_mag = np.maximum(_stft_magnitude(reference, n_fft), STFT_EPS)
        est_mag = np.maximum(_stft_magnitude(estimate, n_fft), STFT_EPS)
        convergence = np.linalg.norm(ref_mag - est_mag) / np.linalg.norm(ref_mag)
        log_l1 = np.abs(np.log(ref_mag) - np.log(est_mag)).mean()
        total += float(convergence + log_l1)
    return total / len(sizes)


@functools.lru_cache(maxsize=8)
def _mel_filters(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels).astype(np.float64)


def mel_distance(reference, estimate, sample_rate: int, n_mels: int = 80) -> float:
    """Mean absolute difference of log10 mel spectrograms (log10 units, i.e. 1.0 = a factor of 10); lower is better.

    Magnitude STFT with n_fft 1024 at 24 kHz (scaled to `sample_rate`, rounded to a power of two), Hann window,
    hop n_fft/4; `n_mels` Slaney-style mel bands from 0 Hz to Nyquist (`librosa.filters.mel` defaults); mel
    magnitudes floored at 1e-5 before log10. Identical signals give 0.
    """
    reference, estimate = _pair(reference, estimate)
    n_fft = _scaled_fft_size(1024, sample_rate)
    filters = _mel_filters(int(sample_rate), n_fft, n_mels)  # [M, F]
    ref_mel = np.log10(np.maximum(filters @ _stft_magnitude(reference, n_fft), MEL_FLOOR))
    est_mel = np.log10(np.maximum(filters @ _stft_magnitude(estimate, n_fft), MEL_FLOOR))
    return float(np.abs(ref_mel - est_mel).mean())


def pesq_wb(reference, estimate, sample_rate: int) -> float | None:
    """Wide-band PESQ (ITU-T P.862.2, `pesq` package, mode 'wb'), MOS-LQO from about 1.0 to 4.64; higher is better.

    Both signals are resampled to 16 kHz. Returns None when PESQ cannot score the pair (no utterance detected,
    e.g. silence, or shorter than about 0.25 s). Speech only.
    """
    from pesq import PesqError, pesq

    reference, estimate = _pair(reference, estimate)
    reference, estimate = _resample(reference, sample_rate, 16000), _resample(estimate, sample_rate, 16000)
    if len(reference) < 16000 // 4 or not np.any(reference) or not np.any(estimate):
        return None
    try:
        score = pesq(16000, reference, estimate, "wb", on_error=PesqError.RETURN_VALUES)
    except Exception:  # the C library can still raise on degenerate input
        return None
    return float(score) if score >= 0 else None


def stoi(reference, estimate, sample_rate: int, extended: bool = False) -> float | None:
    """Short-time objective intelligibility (`pystoi`), 0..1 (ESTOI when `extended`, can dip below 0); higher is better.

    pystoi resamples to 10 kHz and drops silent frames itself. Returns None when too few speech frames remain
    (silence or very short clips). Speech only.
    """
    from pystoi import stoi as pystoi_stoi

    reference, estimate = _pair(reference, estimate)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        score = pystoi_stoi(reference, estimate, int(sample_rate), extended=extended)
    if any("Not enough STFT frames" in str(w.message) for w in caught) or not np.isfinite(score):
        return None
    return float(score)


@dataclass
class DnsmosScore:
    """DNSMOS P.835 scores (overall, speech signal, background) and the P.808 overall score, each a MOS in 1..5."""

    ovrl: float
    sig: float
    bak: float
    p808: float


@functools.lru_cache(maxsize=1)
def _dnsmos_model():
    """The DNSMOS ONNX sessions shipped inside the `speechmos` wheel, loaded once (no download)."""
    from speechmos import dnsmos as speechmos_dnsmos

    folder = os.path.join(os.path.dirname(os.path.abspath(speechmos_dnsmos.__file__)), "dnsmos_models")
    return speechmos_dnsmos.DNSMOS(os.path.join(folder, "sig_bak_ovr.onnx"), os.path.join(folder, "model_v8.onnx"))


def dnsmos(estimate, sample_rate: int) -> DnsmosScore:
    """DNSMOS (Microsoft's non-intrusive MOS predictor, via `speechmos`), each score 1..5; higher is better.

    Needs no reference. The signal is resampled to 16 kHz and clipped to [-1, 1]; clips shorter than the model's
    9.01 s window are tiled to exactly one window (speechmos itself would double them until longer and then score
    every 1 s hop of the result: up to 7x the work for the same content), longer ones are scored in 9.01 s windows
    with 1 s hop and averaged. Meaningful for speech only: music and noise get arbitrary scores.
    """
    signal = np.clip(_resample(_mono(estimate), sample_rate, 16000), -1.0, 1.0).astype(np.float32)
    if len(signal) == 0 or not np.any(signal):
        raise ValueError("DNSMOS needs a non-empty, non-silent signal")
    window = int(9.01 * 16000)
    if len(signal) < window:
        signal = np.tile(signal, -(-window // len(signal)))[:window]
    scores = _dnsmos_model()(signal, 16000, False)
    return DnsmosScore(
        ovrl=float(scores["ovrl_mos"]), sig=float(scores["sig_mos"]), bak=float(scores["bak_mos"]),
        p808=float(scores["p808_mos"]),
    )


_dnsmos_score = dnsmos  # `evaluate` has a flag named `dnsmos` that shadows the function


def estimate_delay(reference, estimate, max_delay_samples: int) -> int:
    """Delay of `estimate` relative to `reference` in samples (positive: the estimate lags), |delay| <= max.

    The lag maximising the FFT cross-correlation, `estimate[n + d] ~ reference[n]`. Classic codecs (Opus, MP3)
    add tens of milliseconds of latency; EnCodec-style neural codecs add none.
    """
    reference, estimate = _mono(reference), _mono(estimate)
    import scipy.signal  # imported here: it costs seconds at start-up and only delay estimation needs it

    correlation = scipy.signal.correlate(estimate, reference, mode="full", method="fft")
    lags = scipy.signal.correlation_lags(len(estimate), len(reference), mode="full")
    allowed = np.abs(lags) <= max_delay_samples
    if not allowed.any():
        return 0
    return int(lags[allowed][np.argmax(correlation[allowed])])


@dataclass
class Alignment:
    """Equal-length mono signals after removing `delay` samples (positive: the estimate lagged)."""

    reference: np.ndarray
    estimate: np.ndarray
    delay: int


def align(reference, estimate, max_delay: int) -> Alignment:
    """Shift out the delay found by `estimate_delay` and trim both mono signals to their common length."""
    reference, estimate = _mono(reference), _mono(estimate)
    delay = estimate_delay(reference, estimate, max_delay)
    if delay > 0:
        estimate = estimate[delay:]
    elif delay < 0:
        reference = reference[-delay:]
    length = min(len(reference), len(estimate))
    return Alignment(reference=reference[:length], estimate=estimate[:length], delay=delay)


@dataclass
class QualityReport:
    """All metrics for one (reference, estimate) pair; see each metric's function for units and direction.

    Args:
        sample_rate: rate of both signals (Hz).
        duration: seconds compared (after alignment and trimming).
        delay: samples of estimate latency removed before scoring (0 when alignment was off).
        si_sdr: dB, higher is better.
        stft_distance: multi-resolution STFT distance, lower is better.
        mel_distance: log10-mel L1, lower is better.
        pesq_wb: 1..4.64, higher is better; None when not speech or not scorable.
        stoi: 0..1, higher is better; None when not speech or not scorable.
        dnsmos: DNSMOS of the estimate, 1..5, higher is better; None when not speech or disabled.
    """

    sample_rate: int
    duration: float
    delay: int
    si_sdr: float
    stft_distance: float
    mel_distance: float
    pesq_wb: float | None = None
    stoi: float | None = None
    dnsmos: DnsmosScore | None = None

    def to_dict(self) -> dict[str, float | int | None]:
        """Flat dict (DNSMOS fields become `dnsmos_ovrl`, `dnsmos_sig`, `dnsmos_bak`, `dnsmos_p808`), JSON-ready."""
        result = {key: value for key, value in asdict(self).items() if key != "dnsmos"}
        for field in ("ovrl", "sig", "bak", "p808"):
            result[f"dnsmos_{field}"] = getattr(self.dnsmos, field) if self.dnsmos is not None else None
        return result


def evaluate(
    reference,
    estimate,
    sample_rate: int,
    speech: bool = True,
    align_delay: bool = True,
    dnsmos: bool = True,
    max_delay_seconds: float = 0.1,
) -> QualityReport:
    """Score `estimate` against `reference` (both at `sample_rate`) with every metric in this module.

    Multichannel inputs (`[C, S]` or `[1, C, S]`) are mixed down to mono by the channel mean first, so
    channel-specific errors that cancel in the mix go unseen. With `align_delay`, a delay up to
    `max_delay_seconds` is removed (see `estimate_delay`); then both are trimmed to the shorter length. PESQ, STOI
    and DNSMOS are computed only when `speech` (DNSMOS also only when `dnsmos`), else None.
    """
    reference, estimate = _mono(reference), _mono(estimate)
    delay = 0
    if align_delay:
        aligned = align(reference, estimate, int(round(max_delay_seconds * sample_rate)))
        reference, estimate, delay = aligned.reference, aligned.estimate, aligned.delay
    reference, estimate = _pair(reference, estimate)
    if len(reference) == 0:
        raise ValueError("nothing to compare: a signal is empty")
    run_dnsmos = speech and dnsmos and np.any(estimate)
    return QualityReport(
        sample_rate=int(sample_rate),
        duration=len(reference) / sample_rate,
        delay=delay,
        si_sdr=si_sdr(reference, estimate),
        stft_distance=multi_resolution_stft_distance(reference, estimate, sample_rate),
        mel_distance=mel_distance(reference, estimate, sample_rate),
        pesq_wb=pesq_wb(reference, estimate, sample_rate) if speech else None,
        stoi=stoi(reference, estimate, sample_rate) if speech else None,
        dnsmos=_dnsmos_score(estimate, sample_rate) if run_dnsmos else None,
    )
