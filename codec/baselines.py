"""Classic codecs as baselines for the bitrate-vs-quality sweep: Opus (ffmpeg/libopus), MP3 (lame) and Codec2.

Each baseline takes the same reference waveform the neural codec sees (`[C, S]` float at `sample_rate`), runs the
external encoder and decoder through `subprocess` in a temporary folder, and returns the decoded waveform at the same
rate and channel count, so every system is scored on the same signal. Bitrates are measured: file size in bits /
reference duration (container overhead included). Tools that are not installed are skipped: `run_baseline` returns a
`BaselineResult` whose `wav` is None and whose `note` says why, instead of raising.

Settings (`DEFAULT_SETTINGS`): Opus 6/12/24 kbps (`-application voip` for speech, `audio` for music); MP3 with
`lame -b 8/16/32` (lame resamples to the rate it prefers for the bitrate, e.g. 24 kHz input -> 8 kHz at 8 kbps,
22.05 kHz at 32 kbps; the note names it); Codec2 3200 and 1200 bit/s on 8 kHz mono raw s16 (`c2enc`/`c2dec`).
Codec2 is a parametric (vocoder) codec: its output is not waveform-matched, so SI-SDR means nothing for it
(`si_sdr_meaningful` is False).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from .audio import convert_audio

TOOL_TIMEOUT_S = 120


@dataclass(frozen=True)
class BaselineSetting:
    """One baseline operating point.

    Args:
        system: "opus", "mp3" or "codec2".
        target_kbps: the bitrate asked of the encoder (kbps); the measured one is in `BaselineResult.file_kbps`.
    """

    system: str
    target_kbps: float

    @property
    def label(self) -> str:
        return f"{self.system} {self.target_kbps:g}k"


DEFAULT_SETTINGS: tuple[BaselineSetting, ...] = (
    BaselineSetting("opus", 6), BaselineSetting("opus", 12), BaselineSetting("opus", 24),
    BaselineSetting("mp3", 8), BaselineSetting("mp3", 16), BaselineSetting("mp3", 32),
    BaselineSetting("codec2", 1.2), BaselineSetting("codec2", 3.2),
)

# The executables each system needs.
TOOLS: dict[str, tuple[str, ...]] = {"opus": ("ffmpeg",), "mp3": ("lame",), "codec2": ("c2enc", "c2dec")}


@dataclass
class BaselineResult:
    """The outcome of one baseline on one waveform.

    Args:
        setting: which system and target bitrate.
        wav: decoded `[C, S']` float32 at the reference rate and channel count (S' may differ slightly from S;
            metrics align and trim), or None when the baseline was skipped.
        file_bytes: size of the encoded file (bytes), 0 when skipped.
        file_kbps: file_bytes * 8 / 1000 / reference duration (kbps).
        encode_seconds: wall time of the encoder process (includes process start-up).
        decode_seconds: wall time of the decoder process (includes process start-up).
        si_sdr_meaningful: False for parametric codecs (Codec2), whose output is not waveform-matched.
        note: why it was skipped, or what the tool did on its own (e.g. lame's resampling); "" if nothing to say.
    """

    setting: BaselineSetting
    wav: torch.Tensor | None
    file_bytes: int = 0
    file_kbps: float = 0.0
    encode_seconds: float = 0.0
    decode_seconds: float = 0.0
    si_sdr_meaningful: bool = True
    note: str = ""

    @property
    def skipped(self) -> bool:
        return self.wav is None


def missing_tools(system: str) -> list[str]:
    """The executables `system` needs that are not on PATH (empty when it can run)."""
    if system not in TOOLS:
        raise ValueError(f"unknown baseline system {system!r}; known: {', '.join(TOOLS)}")
    return [tool for tool in TOOLS[system] if shutil.which(tool) is None]


def _run(command: list[str]) -> float:
    """Runs `command`, returns its wall time in seconds; raises RuntimeError with the tool's last stderr line."""
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, timeout=TOOL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{command[0]} timed out after {TOOL_TIMEOUT_S} s") from None
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines() or [f"exit status {done.returncode}"]
        raise RuntimeError(f"{command[0]} failed: {lines[-1].strip()}")
    return time.perf_counter() - start


def _write_pcm16_wav(path: Path, wav: torch.Tensor, sample_rate: int) -> None:
    data = np.clip(wav.detach().cpu().numpy().T, -1.0, 1.0)  # [S, C]
    sf.write(str(path), data, sample_rate, subtype="PCM_16", format="WAV")


def _read_wav(path: Path) -> tuple[torch.Tensor, int]:
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)  # [S, C]
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(rate)


def run_baseline(setting: BaselineSetting, wav: torch.Tensor, sample_rate: int, speech: bool) -> BaselineResult:
    """Encode and decode `wav` `[C, S]` (float, at `sample_rate` Hz) with one classic codec.

    Returns the decoded waveform at `sample_rate` with C channels, the measured bitrate and the process wall times.
    A missing tool or a tool failure gives a skipped result with a one-line `note`; it never raises for those.
    """
    missing = missing_tools(setting.system)
    if missing:
        return BaselineResult(setting, None, note=f"skipped: {', '.join(missing)} not installed")
    channels, num_samples = wav.shape
    duration = num_samples / sample_rate
    with tempfile.TemporaryDirectory(prefix="codec-baseline-") as tmp:
        folder = Path(tmp)
        try:
            if setting.system == "opus":
                result = _run_opus(setting, wav, sample_rate, speech, folder)
            elif setting.system == "mp3":
                result = _run_mp3(setting, wav, sample_rate, folder)
            else:
                result = _run_codec2(setting, wav, sample_rate, folder)
        except (RuntimeError, OSError, sf.LibsndfileError) as error:
            return BaselineResult(setting, None, note=f"skipped: {' '.join(str(error).split())}")
    decoded, decoded_rate, file_bytes, encode_seconds, decode_seconds, si_sdr_meaningful, note = result
    decoded = convert_audio(decoded, decoded_rate, sample_rate, channels)
    return BaselineResult(setting, decoded, file_bytes, file_bytes * 8 / 1000 / max(duration, 1e-9),
                          encode_seconds, decode_seconds, si_sdr_meaningful, note)


def _run_opus(setting: BaselineSetting, wav: torch.Tensor, sample_rate: int, speech: bool, folder: Path):
    source, encoded, decoded = folder / "in.wav", folder / "out.opus", folder / "dec.wav"
    _write_pcm16_wav(source, wav, sample_rate)
    application = "voip" if speech else "audio"
    encode_seconds = _run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(source), "-c:a", "libopus",
                           "-b:a", f"{setting.target_kbps:g}k", "-application", application,
                           "-map_metadata", "-1", "-fflags", "+bitexact", str(encoded)])
    decode_seconds = _run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(encoded), "-c:a", "pcm_f32le",
                           str(decoded)])
    out, rate = _read_wav(decoded)
    note = f"libopus -application {application}"
    return out, rate, encoded.stat().st_size, encode_seconds, decode_seconds, True, note


def _run_mp3(setting: BaselineSetting, wav: torch.Tensor, sample_rate: int, folder: Path):
    source, encoded, decoded = folder / "in.wav", folder / "out.mp3", folder / "dec.wav"
    _write_pcm16_wav(source, wav, sample_rate)
    encode_seconds = _run(["lame", "--quiet", "--noreplaygain", "-b", f"{setting.target_kbps:g}", str(source),
                           str(encoded)])
    decode_seconds = _run(["lame", "--quiet", "--decode", str(encoded), str(decoded)])
    out, rate = _read_wav(decoded)
    note = f"lame resampled {sample_rate / 1000:g} -> {rate / 1000:g} kHz" if rate != sample_rate else ""
    return out, rate, encoded.stat().st_size, encode_seconds, decode_seconds, True, note


CODEC2_RATE = 8000


def _run_codec2(setting: BaselineSetting, wav: torch.Tensor, sample_rate: int, folder: Path):
    source, encoded, decoded = folder / "in.raw", folder / "out.c2", folder / "dec.raw"
    mono = convert_audio(wav, sample_rate, CODEC2_RATE, 1)[0]
    pcm = (np.clip(mono.numpy(), -1.0, 1.0) * 32767).round().astype("<i2")
    pcm.tofile(source)
    mode = str(int(round(setting.target_kbps * 1000)))
    encode_seconds = _run(["c2enc", mode, str(source), str(encoded)])
    decode_seconds = _run(["c2dec", mode, str(encoded), str(decoded)])
    out = torch.from_numpy(np.fromfile(decoded, dtype="<i2").astype(np.float32) / 32768.0)[None]
    note = "8 kHz mono; parametric: SI-SDR not meaningful"
    return out, CODEC2_RATE, encoded.stat().st_size, encode_seconds, decode_seconds, False, note
