"""Audio file I/O and format conversion: read any audio file, bring it to a model's rate and channels, write atomically.

Waveforms are float32 torch tensors `[C, S]` (channels, samples) for one file, `[B, C, S]` for a batch; with
`tensors=False` the readers give numpy arrays instead and never import torch (the torch-free runtime,
`codec.runtime`), and `convert_audio` / the writers take either.
Reading uses `soundfile` (libsndfile: WAV, FLAC, OGG Vorbis/Opus, MP3, AIFF, ...) and falls back to `ffmpeg` for
containers libsndfile cannot read (M4A/AAC, WebM, video files, ...). Every user-caused problem is an `AudioError`
(or `CodecError` for output paths) with a one-line message naming the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile as sf

from .arrays import is_tensor, like, to_numpy
from .errors import AudioError, CodecError

if TYPE_CHECKING:
    import torch

PathLike = str | os.PathLike

# Output formats `write_audio` chooses by suffix: (libsndfile format, default subtype).
WRITE_FORMATS: dict[str, tuple[str, str]] = {
    ".wav": ("WAV", "PCM_16"),
    ".flac": ("FLAC", "PCM_16"),
    ".ogg": ("OGG", "VORBIS"),
    ".mp3": ("MP3", "MPEG_LAYER_III"),
}


@dataclass
class Audio:
    """A decoded audio file.

    Args:
        wav: `[C, S]` float32 samples (torch tensor, or numpy array from `read_audio(..., tensors=False)`); integer
            PCM is scaled to [-1, 1), float files are passed through unchanged.
        sample_rate: samples per second (Hz).
    """

    wav: torch.Tensor | np.ndarray
    sample_rate: int

    @property
    def channels(self) -> int:
        return self.wav.shape[0]

    @property
    def num_samples(self) -> int:
        return self.wav.shape[1]

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.num_samples / self.sample_rate


def _one_line(error: BaseException | str) -> str:
    """Squash an exception's text (libsndfile and ffmpeg messages can span lines) into one line."""
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split())


def _check_input_path(path: Path) -> None:
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")


def _read_with_soundfile(path: Path) -> Audio:
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)  # [S, C]
    return Audio(wav=np.ascontiguousarray(data.T), sample_rate=int(rate))


def _probe_with_ffmpeg(path: Path, soundfile_error: str) -> tuple[int, int, float]:
    """(sample rate, channels, duration in seconds) of the first audio stream, by ffprobe."""
    ffprobe = shutil.which("ffprobe")
    if shutil.which("ffmpeg") is None or ffprobe is None:
        raise AudioError(
            f"{path}: cannot read it ({soundfile_error}); install ffmpeg to read formats libsndfile does not support"
        )
    probe = subprocess.run(
        [ffprobe, "-v", "error", "-select_streams", "a:0",
         "-show_entries", "stream=sample_rate,channels,duration:format=duration", "-of", "json", str(path)],
        capture_output=True, text=True, check=False,
    )
    found = json.loads(probe.stdout or "{}") if probe.returncode == 0 else {}
    streams = found.get("streams", [])
    if not streams or "sample_rate" not in streams[0]:
        raise AudioError(f"{path}: not a readable audio file (neither libsndfile nor ffmpeg can decode it)")
    duration = streams[0].get("duration", found.get("format", {}).get("duration", 0))
    try:
        seconds = float(duration)
    except ValueError:
        seconds = 0.0
    return int(streams[0]["sample_rate"]), int(streams[0]["channels"]), seconds


def _ffmpeg_decode_command(path: Path, rate: int, channels: int) -> list[str]:
    """ffmpeg decoding the first audio stream to interleaved float32 on stdout, at its own rate and channels."""
    return [shutil.which("ffmpeg") or "ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0",
            "-f", "f32le", "-acodec", "pcm_f32le", "-ac", str(channels), "-ar", str(rate), "-"]


def _read_with_ffmpeg(path: Path, soundfile_error: str) -> Audio:
    rate, channels, _ = _probe_with_ffmpeg(path, soundfile_error)
    decoded = subprocess.run(_ffmpeg_decode_command(path, rate, channels), capture_output=True, check=False)
    if decoded.returncode != 0:
        raise AudioError(f"{path}: ffmpeg cannot decode it ({_one_line(decoded.stderr.decode(errors='replace'))})")
    samples = np.frombuffer(decoded.stdout, dtype="<f4")
    samples = samples[: len(samples) // channels * channels].reshape(-1, channels)  # [S, C]
    return Audio(wav=np.ascontiguousarray(samples.T), sample_rate=rate)


def read_audio(path: PathLike, tensors: bool = True) -> Audio:
    """Read an audio file of any rate and channel count into `Audio` (`wav` is `[C, S]` float32; a numpy array
    when `tensors` is false).

    Raises `AudioError` (one line naming the file) when the file is missing, a directory, not decodable audio,
    empty, or holds NaN/Inf samples.
    """
    path = Path(path)
    _check_input_path(path)
    try:
        audio = _read_with_soundfile(path)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        audio = _read_with_ffmpeg(path, _one_line(error))
    except OSError as error:
        raise AudioError(f"{path}: cannot open it ({_one_line(error)})") from error
    if audio.num_samples == 0:
        raise AudioError(f"{path}: contains no samples")
    bad = int((~np.isfinite(audio.wav)).sum())
    if bad:
        raise AudioError(f"{path}: contains {bad} NaN or Inf samples")
    audio.wav = like(audio.wav, tensors)
    return audio


@dataclass
class AudioInfo:
    """What an audio file holds, read from its header (no decoding).

    Args:
        sample_rate: samples per second (Hz).
        channels: channel count.
        num_samples: samples per channel; for compressed formats an estimate from the header.
    """

    sample_rate: int
    channels: int
    num_samples: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.num_samples / self.sample_rate


def audio_info(path: PathLike) -> AudioInfo:
    """Rate, channels and length of an audio file without decoding it (ffprobe for formats libsndfile lacks)."""
    path = Path(path)
    _check_input_path(path)
    try:
        info = sf.info(str(path))
        return AudioInfo(sample_rate=int(info.samplerate), channels=int(info.channels), num_samples=int(info.frames))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        rate, channels, seconds = _probe_with_ffmpeg(path, _one_line(error))
        return AudioInfo(sample_rate=rate, channels=channels, num_samples=int(round(seconds * rate)))


def stream_audio(path: PathLike, block_samples: int, tensors: bool = True) -> Iterator[torch.Tensor | np.ndarray]:
    """Read an audio file in consecutive blocks `[C, block_samples]` (the last may be shorter), in bounded memory.

    Same formats, fallback and checks as `read_audio`: a missing or unreadable file raises `AudioError` at once,
    NaN/Inf samples at the block that holds them, an empty file when iteration ends without a block. Use
    `audio_info` for the rate and channel count. Numpy blocks when `tensors` is false.
    """
    if block_samples <= 0:
        raise AudioError(f"block size must be positive, got {block_samples}")
    path = Path(path)
    _check_input_path(path)
    try:
        blocks = _stream_with_soundfile(sf.SoundFile(str(path)), block_samples)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        rate, channels, _ = _probe_with_ffmpeg(path, _one_line(error))
        blocks = _stream_with_ffmpeg(path, rate, channels, block_samples)
    return _checked_blocks(path, blocks, tensors)


def _checked_blocks(path: Path, blocks: Iterator[np.ndarray], tensors: bool) -> Iterator[Any]:
    offset = 0
    for block in blocks:
        bad = int((~np.isfinite(block)).sum())
        if bad:
            raise AudioError(f"{path}: contains {bad} NaN or Inf samples in the block at sample {offset}")
        offset += block.shape[1]
        yield like(block, tensors)
    if offset == 0:
        raise AudioError(f"{path}: contains no samples")


def _stream_with_soundfile(handle: sf.SoundFile, block_samples: int) -> Iterator[np.ndarray]:
    with handle:
        for block in handle.blocks(blocksize=block_samples, dtype="float32", always_2d=True):  # [s, C]
            yield np.ascontiguousarray(block.T)


def _stream_with_ffmpeg(path: Path, rate: int, channels: int, block_samples: int) -> Iterator[np.ndarray]:
    command = _ffmpeg_decode_command(path, rate, channels)
    # stderr goes to a file: a pipe nobody reads could fill up on a badly corrupted stream and stall ffmpeg
    with (
        tempfile.TemporaryFile() as errors,
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors) as process,
    ):
        block_bytes = block_samples * channels * 4
        try:
            while chunk := process.stdout.read(block_bytes):
                samples = np.frombuffer(chunk, dtype="<f4")
                samples = samples[: len(samples) // channels * channels].reshape(-1, channels)  # [s, C]
                yield np.ascontiguousarray(samples.T)
            if process.wait() != 0:
                errors.seek(0)
                message = _one_line(errors.read().decode(errors="replace"))
                raise AudioError(f"{path}: ffmpeg cannot decode it ({message})")
        finally:
            if process.poll() is None:  # the caller stopped early
                process.kill()


def convert_audio(wav: torch.Tensor | np.ndarray, from_rate: int, to_rate: int, to_channels: int
                  ) -> torch.Tensor | np.ndarray:
    """Convert `wav` `[..., C, S]` at `from_rate` Hz to `[..., to_channels, S']` at `to_rate` Hz.

    Channels: equal counts pass through; any count -> 1 is the mean over channels (a plain downmix, no -3 dB pan
    law); 1 -> N repeats the mono channel. Other N -> M (say 6 -> 2) needs a channel layout this function does not
    know, so it raises `AudioError` instead of guessing.

    Resampling: `torchaudio.functional.resample` with its defaults, a windowed-sinc low-pass
    (`sinc_interp_hann`, `lowpass_filter_width=6`, `rolloff=0.99`, i.e. cut-off at 0.99 x the lower Nyquist).
    The output length is `S' = ceil(S * to_rate / from_rate)`. Integer input is cast to float32 first; the input is
    never modified. Numpy input gives numpy output, resampled by `codec.resample` (the same filter, written for
    numpy so that the torch-free runtime resamples as the torch path does).
    """
    tensor = is_tensor(wav)
    wav = wav if tensor else np.asarray(wav)
    if len(wav.shape) < 2:
        raise AudioError(f"expected a waveform [..., C, S], got shape {list(wav.shape)}")
    if from_rate <= 0 or to_rate <= 0:
        raise AudioError(f"sample rates must be positive, got {from_rate} -> {to_rate} Hz")
    if to_channels <= 0:
        raise AudioError(f"channel count must be positive, got {to_channels}")
    channels = wav.shape[-2]
    if channels != to_channels and to_channels != 1 and channels != 1:
        raise AudioError(
            f"cannot convert {channels} channels to {to_channels} without a channel layout; mix down to mono first"
        )
    return (_convert_tensor if tensor else _convert_array)(wav, int(from_rate), int(to_rate), to_channels)


def _convert_tensor(wav: torch.Tensor, from_rate: int, to_rate: int, to_channels: int) -> torch.Tensor:
    """`convert_audio`'s mixing and resampling for torch tensors (arguments checked)."""
    if not wav.is_floating_point():
        import torch

        wav = wav.to(torch.float32)
    channels = wav.shape[-2]
    if channels != to_channels:
        if to_channels == 1:
            wav = wav.mean(dim=-2, keepdim=True)
        else:  # 1 -> N
            wav = wav.expand(*wav.shape[:-2], to_channels, wav.shape[-1])
    if from_rate != to_rate:
        import torchaudio.functional as AF

        wav = AF.resample(wav.contiguous(), from_rate, to_rate)
    return wav.contiguous()


def _convert_array(wav: np.ndarray, from_rate: int, to_rate: int, to_channels: int) -> np.ndarray:
    """`convert_audio`'s mixing and resampling for numpy arrays (arguments checked): the same mix, the same filter."""
    from .resample import resample

    if not np.issubdtype(wav.dtype, np.floating):
        wav = wav.astype(np.float32)
    channels = wav.shape[-2]
    if channels != to_channels:
        if to_channels == 1:
            wav = wav.mean(axis=-2, keepdims=True, dtype=wav.dtype)
        else:  # 1 -> N
            wav = np.broadcast_to(wav, (*wav.shape[:-2], to_channels, wav.shape[-1]))
    if from_rate != to_rate:
        wav = resample(wav, from_rate, to_rate)
    return np.ascontiguousarray(wav)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path: PathLike, force: bool = False, inputs: Sequence[PathLike] | None = None) -> Iterator[Path]:
    """Write `path` atomically: yields a temporary path (same directory, same suffix) to write to.

    On success the temporary file becomes `path` in one rename; on any exception it is removed and `path` is left
    as it was. Refuses with `CodecError` when `path` exists and `force` is false, when `path` is a directory or its
    directory is missing, and always (even with `force`) when `path` is the same file as one of `inputs`.
    """
    path = Path(path)
    target = path.resolve()
    for source in inputs or ():
        source = Path(source)
        same = source.resolve() == target or (source.exists() and path.exists() and os.path.samefile(source, path))
        if same:
            raise CodecError(f"{path}: refusing to overwrite an input file; choose another output path")
    if path.is_dir():
        raise CodecError(f"{path}: is a directory; give an output file name")
    if path.exists() and not force:
        raise CodecError(f"{path}: already exists; use --force to overwrite it")
    if not target.parent.is_dir():
        raise CodecError(f"{path}: directory {path.parent} does not exist")
    try:
        fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{path.stem}.", suffix=f".part{path.suffix}")
    except OSError as error:
        raise CodecError(f"{path}: cannot create a file in {path.parent} ({_one_line(error)})") from error
    os.close(fd)
    temp = Path(temp_name)
    try:
        yield temp
        os.chmod(temp, 0o666 & ~_umask())  # mkstemp makes 0600; give the result the usual permissions
        if force:
            os.replace(temp, target)
        else:
            try:  # link refuses to replace a file that appeared meanwhile; rename would silently clobber it
                os.link(temp, target)
            except FileExistsError as error:
                raise CodecError(f"{path}: already exists; use --force to overwrite it") from error
            except OSError:  # filesystems without hard links
                os.replace(temp, target)
            else:
                temp.unlink()
    finally:
        temp.unlink(missing_ok=True)


def write_audio(
    path: PathLike,
    wav: torch.Tensor | np.ndarray,
    sample_rate: int,
    subtype: str | None = None,
    force: bool = True,
    inputs: Sequence[PathLike] | None = None,
) -> Path:
    """Write `wav` `[C, S]` (or `[S]` mono) to `path` atomically, clipping samples to [-1, 1].

    The format follows the suffix: `.wav` (PCM_16 unless `subtype`, e.g. "PCM_24" or "FLOAT"), `.flac` (PCM_16),
    `.ogg` (Vorbis), `.mp3` (MPEG layer III). Unknown suffixes, NaN/Inf samples or an invalid subtype raise
    `AudioError`. Overwrites an existing file unless `force` is false; never overwrites one of `inputs`.
    """
    return write_audio_blocks(path, [wav], sample_rate, subtype=subtype, force=force, inputs=inputs)


def _block_array(path: Path, wav: torch.Tensor | np.ndarray, channels: int | None) -> np.ndarray:
    data = to_numpy(wav)
    if data.ndim == 1:
        data = data[None]
    if data.ndim != 2 or (channels is not None and data.shape[0] != channels):
        raise AudioError(f"{path}: expected a waveform [C, S], got shape {list(data.shape)}")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: refusing to write {int((~np.isfinite(data)).sum())} NaN or Inf samples")
    return np.clip(data.astype(np.float32, copy=False), -1.0, 1.0).T  # [S, C]


def write_audio_blocks(
    path: PathLike,
    blocks: Iterable[torch.Tensor | np.ndarray],
    sample_rate: int,
    subtype: str | None = None,
    force: bool = True,
    inputs: Sequence[PathLike] | None = None,
) -> Path:
    """`write_audio` for a waveform that arrives in consecutive blocks `[C, s_i]`: memory holds one block at a time.

    Same formats, checks and atomicity: a bad block (NaN/Inf, another channel count) or an exception raised by the
    iterator itself leaves no output and no temporary file. At least one block must come (it fixes the channels).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITE_FORMATS:
        known = ", ".join(WRITE_FORMATS)
        raise AudioError(f"{path}: unknown audio suffix {suffix or '(none)'}; use one of {known}")
    file_format, default_subtype = WRITE_FORMATS[suffix]
    subtype = (subtype or default_subtype).upper()
    if not sf.check_format(file_format, subtype):
        raise AudioError(f"{path}: subtype {subtype} is not valid for {file_format} files")
    iterator = iter(blocks)
    first = next(iterator, None)
    if first is None:
        raise AudioError(f"{path}: nothing to write")
    data = _block_array(path, first, None)
    channels = data.shape[1]
    with atomic_output(path, force=force, inputs=inputs) as temp:
        try:
            with sf.SoundFile(str(temp), "w", int(sample_rate), channels, subtype=subtype, format=file_format) as f:
                f.write(data)
                for block in iterator:
                    f.write(_block_array(path, block, channels))
        except (sf.LibsndfileError, RuntimeError, ValueError) as error:
            raise AudioError(f"{path}: cannot write it ({_one_line(error)})") from error
    return path


def load_for_model(path: PathLike, sample_rate: int, channels: int, tensors: bool = True
                   ) -> tuple[torch.Tensor | np.ndarray, int]:
    """Read `path` and convert it for a model: returns (`[1, channels, S]` float32 at `sample_rate`, original rate);
    a numpy array when `tensors` is false."""
    audio = read_audio(path, tensors=tensors)
    wav = convert_audio(audio.wav, audio.sample_rate, sample_rate, channels)
    return wav[None], audio.sample_rate
