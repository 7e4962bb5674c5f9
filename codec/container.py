"""The `.ecdc` container: Meta's EnCodec file layout, read and written byte for byte, in bounded memory.

Layout (integers big-endian)::

    b"ECDC" | version u8 = 0 | header length u32 | UTF-8 JSON header | segment 0 | segment 1 | ...

The JSON header holds Meta's keys `m` (model name), `al` (audio length in samples at the model rate), `nc`
(codebooks) and `lm` (Meta's LM entropy coder; always false here), plus our own keys, which Meta's reader ignores:
`v` (our extension version), `sr` (sample rate), `sha` (sha256 of the weights) and `crc` (CRC32, 8 hex digits, of the
payload followed by the canonical JSON of every other header key).

A segment is `[scale: f32, normalising models only]` then its codes `[K, T_seg]` bit-packed frame-major
(for t: for k), `bits` bits a code, least significant bit first, padded with zero bits to a byte boundary.
Single-segment models (24 kHz) have one segment of `al` samples; segmented models (48 kHz) have one segment per
`segment_stride` samples, each `min(segment_length, al - offset)` samples long. A segment of `n` samples holds
`ceil(n * frame_rate / sample_rate)` frames (exact integer arithmetic: Meta's reader computes it in floating point
and fails on its own files for a few lengths such as 6720 samples; the bytes written are the same either way).

Hostile input never gets further than a one-line `ContainerError`: sizes are checked against the file before
anything proportional to a header field is allocated.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import struct
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import IO, TYPE_CHECKING, Any, NamedTuple

import numpy as np

from .arrays import concat, like, to_numpy
from .errors import ContainerError
from .interface import EncodedAudio

if TYPE_CHECKING:
    import torch

MAGIC = b"ECDC"
CONTAINER_VERSION = 0  # the version byte after the magic; Meta's reader accepts only 0
FORMAT_VERSION = 1  # our `v` key: the meaning of our extra header keys
MAX_HEADER_BYTES = 1 << 20
MAX_AUDIO_LENGTH = 1 << 48  # samples: centuries of audio at 48 kHz; larger is a forged header
MAX_CODEBOOKS = 1024
_PREFIX = struct.Struct("!4sBI")
_SCALE = struct.Struct("!f")
_CRC_PLACEHOLDER = "0" * 8
_BLOCK = 1 << 20  # bytes read at once
_CODES_PER_STEP = 1 << 18  # codes bit-packed at once (bounds temporary memory to a few MB)
_META_KEYS = ("m", "al", "nc", "lm")
_OUR_KEYS = ("v", "sr", "sha", "crc")


@dataclass(frozen=True)
class CodecLayout:
    """What the container needs to know about the model that made a file.

    Args:
        sample_rate: model sample rate in Hz.
        frame_rate: code frames per second (75 for EnCodec 24 kHz, 150 for 48 kHz).
        segment_length: samples per segment for segmented models, else None (one segment of the whole audio).
        segment_stride: samples between segment starts (segmented models), else None.
        normalize: whether each segment is preceded by a float32 scale.
        bits: bits per code (log2 of the codebook size).
        max_codebooks: most codebooks the model has; files claiming more are rejected. None: no check.
    """

    sample_rate: int
    frame_rate: float
    segment_length: int | None = None
    segment_stride: int | None = None
    normalize: bool = False
    bits: int = 10
    max_codebooks: int | None = None

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.frame_rate <= 0 or not 1 <= self.bits <= 32:
            raise ValueError(f"invalid layout {self}")
        if (self.segment_length is None) != (self.segment_stride is None):
            raise ValueError("segment_length and segment_stride are set together or not at all")
        if self.segment_length is not None and not 0 < self.segment_stride <= self.segment_length:  # type: ignore
            raise ValueError(f"need 0 < segment_stride <= segment_length, got {self}")

    @property
    def segmented(self) -> bool:
        return self.segment_length is not None

    @property
    def segment_frames(self) -> int | None:
        """Frames of a full segment (segmented models), else None."""
        return None if self.segment_length is None else self.frames_for(self.segment_length)

    def frames_for(self, num_samples: int) -> int:
        """Frames `ceil(num_samples * frame_rate / sample_rate)`, computed exactly."""
        rate = Fraction(self.frame_rate)
        return -(-num_samples * rate.numerator // (self.sample_rate * rate.denominator))

    def segments(self, audio_length: int) -> Iterator[int]:
        """Lazily yields the number of samples of each segment of `audio_length` samples."""
        if self.segment_length is None:
            yield audio_length
            return
        for offset in range(0, audio_length, self.segment_stride):  # type: ignore[arg-type]
            yield min(audio_length - offset, self.segment_length)

    def num_segments(self, audio_length: int) -> int:
        if self.segment_length is None:
            return 1
        return -(-audio_length // self.segment_stride)  # type: ignore[operator]

    def segment_bytes(self, num_samples: int, num_codebooks: int) -> int:
        """Bytes of one segment of `num_samples` samples: scale (if any) and packed codes."""
        packed = -(-self.frames_for(num_samples) * num_codebooks * self.bits // 8)
        return packed + (_SCALE.size if self.normalize else 0)

    def payload_bytes(self, audio_length: int, num_codebooks: int) -> int:
        """Bytes after the header for `audio_length` samples; O(1) in `audio_length` (safe on forged headers)."""
        if self.segment_length is None:
            return self.segment_bytes(audio_length, num_codebooks)
        stride, length = self.segment_stride, self.segment_length
        count = self.num_segments(audio_length)
        full = 0 if audio_length < length else (audio_length - length) // stride + 1  # type: ignore[operator]
        total = full * self.segment_bytes(length, num_codebooks)
        for index in range(full, count):  # the few segments cut by the end of the audio
            total += self.segment_bytes(min(audio_length - index * stride, length), num_codebooks)  # type: ignore
        return total


ENCODEC_24KHZ = CodecLayout(sample_rate=24_000, frame_rate=75, max_codebooks=32)
ENCODEC_48KHZ = CodecLayout(
    sample_rate=48_000, frame_rate=150, segment_length=48_000, segment_stride=47_520, normalize=True, max_codebooks=16
)
META_LAYOUTS: dict[str, CodecLayout] = {"encodec_24khz": ENCODEC_24KHZ, "encodec_48khz": ENCODEC_48KHZ}


@dataclass
class EcdcHeader:
    """The JSON header of an `.ecdc` file.

    Args:
        model: model name (`m`), e.g. `encodec_24khz`.
        audio_length: samples at the model rate (`al`). Always set when read; when writing, None means "given later"
            (taken from `EncodedAudio.length` by `write_ecdc`, or from `EcdcWriter.close(audio_length)`).
        num_codebooks: codebooks K (`nc`). Always set when read; when writing, None takes K from the codes.
        use_lm: Meta's LM entropy coding (`lm`); files with it are rejected, and it cannot be written.
        weights_sha256: sha256 of the weights that made the codes (`sha`), if recorded.
        sample_rate: model sample rate (`sr`), if recorded. Filled in by the writer when it adds a checksum.
        checksum: CRC32 as 8 hex digits (`crc`), if recorded. Filled in by the writer.
        format_version: our extension version (`v`), if recorded. Filled in by the writer.
        extra: any other keys, kept as they are.
    """

    model: str
    audio_length: int | None = None
    num_codebooks: int | None = None
    use_lm: bool = False
    weights_sha256: str | None = None
    sample_rate: int | None = None
    checksum: str | None = None
    format_version: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        """Seconds of audio, when the sample rate is recorded."""
        if self.sample_rate is None or self.audio_length is None:
            return None
        return self.audio_length / self.sample_rate

    def to_json_dict(self) -> dict[str, Any]:
        """Header keys in file order: Meta's (`m`, `al`, `nc`, `lm`), then `extra`, then ours that are set."""
        clash = set(self.extra) & {*_META_KEYS, *_OUR_KEYS}
        if clash:
            raise ValueError(f"extra header keys clash with reserved ones: {sorted(clash)}")
        out: dict[str, Any] = {"m": self.model, "al": self.audio_length, "nc": self.num_codebooks, "lm": self.use_lm}
        out.update(self.extra)
        ours = {"v": self.format_version, "sr": self.sample_rate, "sha": self.weights_sha256, "crc": self.checksum}
        out.update({key: value for key, value in ours.items() if value is not None})
        return out


class EcdcContents(NamedTuple):
    """What `read_ecdc` returns; unpacks as `header, encoded = read_ecdc(...)`."""

    header: EcdcHeader
    encoded: EncodedAudio


@dataclass
class CodesChunk:
    """A run of consecutive frames from `EcdcReader.chunks`.

    Args:
        codes: `[1, K, t]` int64 codes.
        segment: index of the segment the frames belong to (always 0 for single-segment models).
        first_frame: index of the first frame within the whole file's `[1, K, T]` codes.
        scale: the segment's scale (normalising models), else None.
        segment_start: whether the chunk begins its segment.
    """

    codes: torch.Tensor
    segment: int
    first_frame: int
    scale: float | None = None
    segment_start: bool = True


def _show(value: Any, limit: int = 60) -> str:
    """A one-line, bounded rendering of an untrusted value for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _canonical(header: Mapping[str, Any]) -> bytes:
    """The bytes the checksum covers after the payload: every header key but `crc`, sorted, compact."""
    rest = {key: value for key, value in header.items() if key != "crc"}
    return json.dumps(rest, sort_keys=True, separators=(",", ":")).encode("utf-8")


# ---------------------------------------------------------------------------------------------------- bit packing


class BitPacker:
    """Packs codes `bits` bits each, least significant bit first, like Meta's `BitPacker`, vectorised.

    `push` may be called with any number of codes; bits left over (fewer than 8) carry to the next call, so the
    output equals one `push` of everything. `flush` pads the last partial byte with zero bits.
    """

    def __init__(self, bits: int):
        self.bits = bits
        self._shifts = np.arange(bits, dtype=np.int64)
        self._pending = np.zeros(0, dtype=np.uint8)

    def push(self, values: np.ndarray) -> bytes:
        """Pack `values` `[N]` (ints in `0..2**bits-1`); returns the whole bytes completed so far."""
        values = np.asarray(values, dtype=np.int64).reshape(-1)
        out = []
        for start in range(0, len(values), _CODES_PER_STEP):
            step = values[start : start + _CODES_PER_STEP]
            bit_array = ((step[:, None] >> self._shifts) & 1).astype(np.uint8).reshape(-1)
            if len(self._pending):
                bit_array = np.concatenate([self._pending, bit_array])
            whole = len(bit_array) // 8 * 8
            out.append(np.packbits(bit_array[:whole], bitorder="little").tobytes())
            self._pending = bit_array[whole:]
        return b"".join(out)

    def flush(self) -> bytes:
        """The last partial byte (zero-padded), if any; the packer is then byte-aligned again."""
        data = np.packbits(self._pending, bitorder="little").tobytes()
        self._pending = np.zeros(0, dtype=np.uint8)
        return data


class BitUnpacker:
    """Inverse of `BitPacker`: feed bytes, pull codes; leftover bits carry between calls."""

    def __init__(self, bits: int):
        self.bits = bits
        self._weights = np.left_shift(np.int64(1), np.arange(bits, dtype=np.int64))
        self._pending = np.zeros(0, dtype=np.uint8)

    def bytes_needed(self, count: int) -> int:
        """Bytes to feed so that `pull(count)` can be answered."""
        return max(0, -(-(count * self.bits - len(self._pending)) // 8))

    def pull(self, data: bytes, count: int) -> np.ndarray:
        """Unpack `count` codes `[count]` int64 from the carried bits then `data` (`bytes_needed(count)` bytes)."""
        bit_array = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
        if len(self._pending):
            bit_array = np.concatenate([self._pending, bit_array])
        need = count * self.bits
        if len(bit_array) < need:
            raise ValueError(f"need {need} bits, got {len(bit_array)}")
        out = np.empty(count, dtype=np.int64)
        for start in range(0, count, _CODES_PER_STEP):
            stop = min(count, start + _CODES_PER_STEP)
            step = bit_array[start * self.bits : stop * self.bits].reshape(stop - start, self.bits)
            out[start:stop] = step.astype(np.int64) @ self._weights
        self._pending = bit_array[need:]
        return out

    def align(self) -> None:
        """Drop the padding bits at the end of a segment."""
        self._pending = np.zeros(0, dtype=np.uint8)


def pack_codes(codes: np.ndarray | torch.Tensor, bits: int = 10) -> bytes:
    """Bit-pack one segment's codes `[K, T]` frame-major (for t: for k), zero-padded to a byte."""
    packer = BitPacker(bits)
    array = to_numpy(codes)
    return packer.push(array.T.reshape(-1)) + packer.flush()


def unpack_codes(data: bytes, num_codebooks: int, num_frames: int, bits: int = 10) -> np.ndarray:
    """Inverse of `pack_codes`: `[K, T]` int64 codes from exactly `ceil(K * T * bits / 8)` bytes."""
    expected = -(-num_codebooks * num_frames * bits // 8)
    if len(data) != expected:
        raise ValueError(f"expected {expected} bytes, got {len(data)}")
    flat = BitUnpacker(bits).pull(data, num_codebooks * num_frames)
    return flat.reshape(num_frames, num_codebooks).T.copy()


# ---------------------------------------------------------------------------------------------------- writing


def _codes_array(codes: torch.Tensor | np.ndarray, num_codebooks: int, bits: int) -> np.ndarray:
    """Validated `[1, K, t]` codes as an int64 numpy array (programming errors raise ValueError)."""
    array = to_numpy(codes)
    if array.ndim != 3 or array.shape[0] != 1 or array.shape[1] != num_codebooks:
        raise ValueError(f"codes must be [1, {num_codebooks}, T], got {list(array.shape)}")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"codes must be integers, got {array.dtype}")
    if array.size and (array.min() < 0 or array.max() >= 1 << bits):
        raise ValueError(f"codes must lie in 0..{(1 << bits) - 1}, got {array.min()}..{array.max()}")
    return array.astype(np.int64, copy=False)


class EcdcWriter:
    """Writes an `.ecdc` file piece by piece in bounded memory.

    Single-segment layouts: call `write_codes` with consecutive chunks `[1, K, t]`; the bit packing continues across
    chunks, so the bytes equal a one-shot write. Segmented or normalising layouts: call `write_segment` once per
    segment. Then `close()`, which checks the frame counts against the audio length and writes the final header.

    With `checksum=True` (default) the header gets `v`, `sr` and `crc` (and `sha` when set), and is rewritten in
    place at `close`, so `fo` must be seekable (write to a temporary file, then move it). With `checksum=False`, a
    known `audio_length` and no `weights_sha256`, the bytes are exactly Meta's and `fo` may be a pipe.
    If `audio_length` is None, room for it is reserved (the JSON is padded with spaces) and `close` fills it in.

    Args:
        fo: binary file object, positioned where the file starts.
        header: model name, codebooks (required), audio length and weights sha256 (optional); `use_lm` must be False.
        layout: the model's `CodecLayout`.
        checksum: add our keys `v`, `sr` and `crc` (without it, `sha` is the only key beyond Meta's).
    """

    def __init__(self, fo: IO[bytes], header: EcdcHeader, layout: CodecLayout, *, checksum: bool = True):
        if header.use_lm:
            raise ValueError("writing with Meta's LM entropy coder is not supported; use use_lm=False")
        if not isinstance(header.num_codebooks, int) or not 1 <= header.num_codebooks <= MAX_CODEBOOKS:
            raise ValueError(f"num_codebooks must be an int in 1..{MAX_CODEBOOKS}, got {header.num_codebooks!r}")
        if header.audio_length is not None and not 1 <= header.audio_length <= MAX_AUDIO_LENGTH:
            raise ValueError(f"audio_length must be in 1..{MAX_AUDIO_LENGTH}, got {header.audio_length}")
        self.fo = fo
        self.layout = layout
        self.checksum = checksum
        self.header = EcdcHeader(
            model=header.model,
            audio_length=header.audio_length,
            num_codebooks=header.num_codebooks,
            weights_sha256=header.weights_sha256,
            sample_rate=layout.sample_rate if checksum else None,
            checksum=_CRC_PLACEHOLDER if checksum else None,
            format_version=FORMAT_VERSION if checksum else None,  # our readers expect `crc` wherever `v` is
            extra=dict(header.extra),
        )
        self._rewrite = checksum or header.audio_length is None
        if self._rewrite and not fo.seekable():
            raise ValueError("a checksum or a late audio length needs a seekable file; write to a temporary file")
        self._start = fo.tell() if self._rewrite else 0
        draft = self.header.to_json_dict()
        if draft["al"] is None:
            draft["al"] = 0
        self._header_size = len(json.dumps(draft).encode("utf-8"))
        if self.header.audio_length is None:
            self._header_size += len(str(MAX_AUDIO_LENGTH))
        self._write_header(draft)
        self._crc = 0
        self._packer = BitPacker(layout.bits)
        self._frames = 0  # frames written by write_codes
        self._segment_frames: list[int] = []  # frames of each segment written by write_segment
        self._expected = None if header.audio_length is None else layout.segments(header.audio_length)
        self._closed = False

    def _write_header(self, header: dict[str, Any]) -> None:
        text = json.dumps(header).encode("utf-8")
        if len(text) > self._header_size:
            raise ValueError("header grew past its reserved size")
        text = text + b" " * (self._header_size - len(text))  # JSON allows trailing whitespace
        self.fo.write(_PREFIX.pack(MAGIC, CONTAINER_VERSION, len(text)) + text)

    def _emit(self, data: bytes) -> None:
        if data:
            self._crc = zlib.crc32(data, self._crc)
            self.fo.write(data)

    def write_codes(self, codes: torch.Tensor | np.ndarray) -> None:
        """Append frames `[1, K, t]` (single-segment layouts without scales)."""
        if self.layout.segmented or self.layout.normalize:
            raise ValueError("this layout has segments or scales: use write_segment")
        self._check_open()
        array = _codes_array(codes, self.header.num_codebooks, self.layout.bits)  # type: ignore[arg-type]
        self._emit(self._packer.push(array[0].T.reshape(-1)))
        self._frames += array.shape[-1]

    def write_segment(self, codes: torch.Tensor | np.ndarray, scale: float | None = None) -> None:
        """Append one whole segment: codes `[1, K, t]` and, for normalising layouts, its scale."""
        self._check_open()
        if self.layout.normalize != (scale is not None):
            raise ValueError("a scale is required for normalising layouts and forbidden otherwise")
        if not self.layout.segmented and self._segment_frames:
            raise ValueError("a single-segment layout takes one segment")
        array = _codes_array(codes, self.header.num_codebooks, self.layout.bits)  # type: ignore[arg-type]
        frames = array.shape[-1]
        if self._expected is not None:
            samples = next(self._expected, None)
            if samples is None:
                raise ValueError(f"too many segments for {self.header.audio_length} samples")
            if frames != self.layout.frames_for(samples):
                raise ValueError(
                    f"segment {len(self._segment_frames)} has {frames} frames, expected "
                    f"{self.layout.frames_for(samples)}"
                )
        if scale is not None:
            self._emit(_SCALE.pack(float(scale)))
        self._emit(self._packer.push(array[0].T.reshape(-1)) + self._packer.flush())
        self._segment_frames.append(frames)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("the writer is closed")

    def close(self, audio_length: int | None = None) -> EcdcHeader:
        """Finish the file (checks frame counts, writes the final header); returns the header written."""
        self._check_open()
        length = self.header.audio_length if audio_length is None else audio_length
        if length is None:
            raise ValueError("the audio length was not given, neither in the header nor to close()")
        if self.header.audio_length is not None and length != self.header.audio_length:
            raise ValueError(f"close() got audio_length={length}, the header says {self.header.audio_length}")
        if not 1 <= length <= MAX_AUDIO_LENGTH:
            raise ValueError(f"audio_length must be in 1..{MAX_AUDIO_LENGTH}, got {length}")
        self._emit(self._packer.flush())
        if self._segment_frames:
            expected = [self.layout.frames_for(samples) for samples in self.layout.segments(length)]
            if self._segment_frames != expected:
                raise ValueError(
                    f"segments hold {self._segment_frames[:8]}... frames, {length} samples need "
                    f"{expected[:8]}... ({len(expected)} segments)"
                )
        elif self._frames != self.layout.frames_for(length):
            raise ValueError(f"wrote {self._frames} frames, {length} samples need {self.layout.frames_for(length)}")
        self.header.audio_length = length
        if self.checksum:
            final = self.header.to_json_dict()
            self.header.checksum = f"{zlib.crc32(_canonical(final), self._crc):08x}"
        if self._rewrite:
            end = self.fo.tell()
            self.fo.seek(self._start)
            self._write_header(self.header.to_json_dict())
            self.fo.seek(end)
        self.fo.flush()
        self._closed = True
        return self.header

    def __enter__(self) -> EcdcWriter:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None and not self._closed:
            self.close()


def write_ecdc(
    fo: IO[bytes], header: EcdcHeader, encoded: EncodedAudio, layout: CodecLayout, *, checksum: bool = True
) -> EcdcHeader:
    """Write `encoded` (codes `[1, K, T]`, scales `[1, N]` for normalising layouts) as one `.ecdc` file.

    `header.audio_length` / `num_codebooks` default to `encoded.length` / K. For segmented layouts the T frames are
    the segments' frames concatenated. Returns the header written (with its checksum).
    """
    codes = encoded.codes
    if len(codes.shape) != 3 or codes.shape[0] != 1:
        raise ValueError(f"codes must be [1, K, T], got {list(codes.shape)}")
    length = header.audio_length if header.audio_length is not None else encoded.length
    if length is None:
        raise ValueError("the audio length is unknown: set header.audio_length or encoded.length")
    if encoded.length is not None and encoded.length != length:
        raise ValueError(f"header says {length} samples, encoded audio {encoded.length}")
    num_codebooks = header.num_codebooks if header.num_codebooks is not None else codes.shape[1]
    full = dataclasses.replace(header, audio_length=length, num_codebooks=num_codebooks)
    writer = EcdcWriter(fo, full, layout, checksum=checksum)
    if not layout.segmented and not layout.normalize:
        writer.write_codes(codes)
        return writer.close()
    frames = [layout.frames_for(samples) for samples in layout.segments(length)]
    if sum(frames) != codes.shape[-1]:
        raise ValueError(f"{length} samples need {sum(frames)} frames, codes have {codes.shape[-1]}")
    scales = encoded.scales
    if layout.normalize and (scales is None or tuple(scales.shape) != (1, len(frames))):
        raise ValueError(f"need scales [1, {len(frames)}], got {None if scales is None else list(scales.shape)}")
    start = 0
    for index, count in enumerate(frames):
        scale = None if scales is None else float(scales[0, index])
        writer.write_segment(codes[:, :, start : start + count], scale)
        start += count
    return writer.close()


# ---------------------------------------------------------------------------------------------------- reading


def _read_up_to(fo: IO[bytes], size: int) -> bytes:
    """Read `size` bytes, or fewer at the end of the file, in bounded blocks (short reads of pipes are retried)."""
    parts, got = [], 0
    while got < size:
        block = fo.read(min(_BLOCK, size - got))
        if not block:
            break
        parts.append(block)
        got += len(block)
    return b"".join(parts)


def _read_exactly(fo: IO[bytes], size: int, what: str) -> bytes:
    """Read `size` bytes (never allocating for bytes the file does not have)."""
    data = _read_up_to(fo, size)
    if len(data) < size:
        raise ContainerError(f"truncated: the file ends {size - len(data)} bytes before the end of the {what}")
    return data


def _remaining(fo: IO[bytes]) -> int | None:
    """Bytes from the current position to the end, or None for unseekable streams."""
    try:
        if not fo.seekable():
            return None
        here = fo.tell()
        end = fo.seek(0, io.SEEK_END)
        fo.seek(here)
        return end - here
    except (OSError, ValueError):
        return None


def _field(header: Mapping[str, Any], key: str, kind: type, name: str, required: bool = True) -> Any:
    if key not in header:
        if required:
            raise ContainerError(f"corrupted header: the {name} ({key!r}) is missing")
        return None
    value = header[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ContainerError(f"corrupted header: the {name} ({key!r}) should be {kind.__name__}, got {_show(value)}")
    return value


def _parse_header(raw: bytes) -> tuple[EcdcHeader, dict[str, Any]]:
    try:
        header = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ContainerError("corrupted header: not valid UTF-8") from None
    except (ValueError, RecursionError) as error:
        reason = " ".join(str(error).split())  # one line, bounded
        reason = reason if len(reason) <= 80 else reason[:77] + "..."
        raise ContainerError(f"corrupted header: invalid JSON ({reason})") from None
    if not isinstance(header, dict):
        raise ContainerError(f"corrupted header: expected a JSON object, got {type(header).__name__}")
    model = _field(header, "m", str, "model name")
    length = _field(header, "al", int, "audio length")
    num_codebooks = _field(header, "nc", int, "number of codebooks")
    use_lm = _field(header, "lm", bool, "LM flag")
    version = _field(header, "v", int, "format version", required=False)
    sample_rate = _field(header, "sr", int, "sample rate", required=False)
    sha = _field(header, "sha", str, "weights sha256", required=False)
    crc = _field(header, "crc", str, "checksum", required=False)
    if use_lm:
        raise ContainerError(
            "this file was compressed with Meta's LM entropy coder, which is not supported; "
            "re-compress it without the LM (use_lm=False)"
        )
    if not 1 <= length <= MAX_AUDIO_LENGTH:
        raise ContainerError(f"corrupted header: implausible audio length {_show(length)}")
    if not 1 <= num_codebooks <= MAX_CODEBOOKS:
        raise ContainerError(f"corrupted header: implausible number of codebooks {_show(num_codebooks)}")
    if version is not None and crc is None:  # `v` marks our files, which always carry a checksum
        raise ContainerError("corrupted header: the checksum ('crc') is missing")
    if version is not None and version > FORMAT_VERSION:
        raise ContainerError(f"written by a newer format version ({version}); this reader knows up to {FORMAT_VERSION}")
    if sample_rate is not None and sample_rate <= 0:
        raise ContainerError(f"corrupted header: implausible sample rate {_show(sample_rate)}")
    if crc is not None and (len(crc) != 8 or any(c not in "0123456789abcdef" for c in crc)):
        raise ContainerError(f"corrupted header: the checksum should be 8 hex digits, got {_show(crc)}")
    extra = {key: value for key, value in header.items() if key not in (*_META_KEYS, *_OUR_KEYS)}
    parsed = EcdcHeader(model, length, num_codebooks, use_lm, sha, sample_rate, crc, version, extra)
    return parsed, header


def _read_header(fo: IO[bytes]) -> tuple[EcdcHeader, dict[str, Any]]:
    prefix = _read_up_to(fo, _PREFIX.size)
    if not prefix:
        raise ContainerError("not an .ecdc file: it is empty")
    if len(prefix) < _PREFIX.size:
        if MAGIC.startswith(prefix[:4]):
            raise ContainerError(f"truncated: the file ends after {len(prefix)} bytes, inside the .ecdc preamble")
        raise ContainerError(f"not an .ecdc file: it starts with {_show(prefix[:4])}, not b'ECDC'")
    magic, version, size = _PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise ContainerError(f"not an .ecdc file: it starts with {_show(magic)}, not b'ECDC'")
    if version != CONTAINER_VERSION:
        raise ContainerError(f"unsupported .ecdc version {version} (only {CONTAINER_VERSION} is known)")
    if size > MAX_HEADER_BYTES:
        raise ContainerError(f"corrupted: the header claims {size} bytes (at most {MAX_HEADER_BYTES} are allowed)")
    remaining = _remaining(fo)
    if remaining is not None and size > remaining:
        raise ContainerError(f"truncated: the header needs {size} bytes but only {remaining} follow")
    return _parse_header(_read_exactly(fo, size, "header"))


def read_header(fo: IO[bytes]) -> EcdcHeader:
    """Read and validate the preamble and JSON header; leaves `fo` at the start of the payload."""
    return _read_header(fo)[0]


def check_weights(header: EcdcHeader, sha256: str, model_name: str | None = None) -> None:
    """Raise `ContainerError` if the file records weights other than `sha256` (files without `sha` pass)."""
    if header.weights_sha256 is not None and header.weights_sha256 != sha256:
        name = model_name or header.model
        raise ContainerError(
            f"made with weights {_show(header.weights_sha256[:16], 24)}, but model {_show(name)} "
            f"has {sha256[:16]}; load the weights the file was made with"
        )


LayoutSource = CodecLayout | Callable[[str], CodecLayout] | Mapping[str, CodecLayout]


def _resolve_layout(layout_for: LayoutSource, model: str) -> CodecLayout:
    if isinstance(layout_for, CodecLayout):
        return layout_for
    try:
        layout = layout_for[model] if isinstance(layout_for, Mapping) else layout_for(model)
    except KeyError:
        layout = None
    if not isinstance(layout, CodecLayout):
        raise ContainerError(f"the file was made with model {_show(model)}, which is not available")
    return layout


class EcdcReader:
    """Reads an `.ecdc` file chunk by chunk in bounded memory.

    The header is validated and, on seekable files, the payload size is compared with the file's size and the
    checksum is verified (one streaming pass) before any code is returned. On pipes the same checks happen while
    reading, and a failure surfaces as a `ContainerError` from the iterator at the end.

    Args:
        fo: binary file object at the start of the file.
        layout_for: the `CodecLayout`, or a callable / mapping from the model name (`m`) to it
            (for example `META_LAYOUTS`). Unknown names raise `ContainerError`.
        verify: check the `crc` key when the file has one.
        tensors: codes (and scales) as torch tensors; False gives numpy arrays (the torch-free runtime).
    """

    def __init__(self, fo: IO[bytes], layout_for: LayoutSource = META_LAYOUTS, *, verify: bool = True,
                 tensors: bool = True):
        self.fo = fo
        self.tensors = tensors
        self.header, self._raw_header = _read_header(fo)
        self.layout = _resolve_layout(layout_for, self.header.model)
        header, layout = self.header, self.layout
        if layout.max_codebooks is not None and header.num_codebooks > layout.max_codebooks:  # type: ignore
            raise ContainerError(
                f"corrupted header: {header.num_codebooks} codebooks, but {_show(header.model)} "
                f"has at most {layout.max_codebooks}"
            )
        if header.sample_rate is not None and header.sample_rate != layout.sample_rate:
            raise ContainerError(
                f"the file is at {header.sample_rate} Hz, but {_show(header.model)} runs at {layout.sample_rate} Hz"
            )
        self.payload_bytes = layout.payload_bytes(header.audio_length, header.num_codebooks)  # type: ignore
        self._verify = verify and header.checksum is not None
        remaining = _remaining(fo)
        if remaining is not None:
            if remaining < self.payload_bytes:
                raise ContainerError(
                    f"truncated: the header announces {self.payload_bytes} bytes of codes, but only {remaining} follow"
                )
            if remaining > self.payload_bytes:
                raise ContainerError(f"corrupted: {remaining - self.payload_bytes} unexpected bytes after the codes")
            if self._verify:
                self._check_crc(self._crc_of_payload())
                self._verify = False
        self._used = False

    def _crc_of_payload(self) -> int:
        start, crc, left = self.fo.tell(), 0, self.payload_bytes
        while left:
            block = _read_exactly(self.fo, min(_BLOCK, left), "codes")
            crc = zlib.crc32(block, crc)
            left -= len(block)
        self.fo.seek(start)
        return crc

    def _check_crc(self, payload_crc: int) -> None:
        if f"{zlib.crc32(_canonical(self._raw_header), payload_crc):08x}" != self.header.checksum:
            raise ContainerError("corrupted: checksum mismatch")

    def chunks(self, chunk_frames: int = 4096) -> Iterator[CodesChunk]:
        """Yield the codes as `CodesChunk`s of at most `chunk_frames` frames, never straddling segments."""
        if chunk_frames < 1:
            raise ValueError("chunk_frames must be positive")
        if self._used:
            raise ValueError("an EcdcReader can be iterated once")
        self._used = True
        num_codebooks, bits = self.header.num_codebooks, self.layout.bits
        unpacker, crc, first_frame = BitUnpacker(bits), 0, 0
        for segment, samples in enumerate(self.layout.segments(self.header.audio_length)):  # type: ignore[arg-type]
            scale = None
            if self.layout.normalize:
                data = _read_exactly(self.fo, _SCALE.size, f"scale of segment {segment}")
                crc = zlib.crc32(data, crc)
                (scale,) = _SCALE.unpack(data)
                if not (math.isfinite(scale) and scale > 0):
                    raise ContainerError(f"corrupted: segment {segment} has an invalid scale {scale!r}")
            frames = self.layout.frames_for(samples)
            for start in range(0, frames, chunk_frames):
                count = min(chunk_frames, frames - start) * num_codebooks  # type: ignore[operator]
                data = _read_exactly(self.fo, unpacker.bytes_needed(count), f"codes of segment {segment}")
                crc = zlib.crc32(data, crc)
                flat = unpacker.pull(data, count)
                codes = like(flat.reshape(-1, num_codebooks).T.copy()[None], self.tensors)
                yield CodesChunk(codes, segment, first_frame, scale, start == 0)
                first_frame += codes.shape[-1]
            unpacker.align()
        if self.fo.read(1):
            raise ContainerError("corrupted: unexpected bytes after the codes")
        if self._verify:
            self._check_crc(crc)

    def read_all(self) -> EncodedAudio:
        """All codes `[1, K, T]` (segments concatenated), scales `[1, N]` if any, and the audio length."""
        codes, scales = [], []
        for chunk in self.chunks(1 << 16):
            codes.append(chunk.codes)
            if chunk.scale is not None and chunk.segment_start:
                scales.append(chunk.scale)
        return EncodedAudio(
            codes=concat(codes),
            scales=like(np.array([scales], dtype=np.float32), self.tensors) if self.layout.normalize else None,
            segment_frames=self.layout.segment_frames,
            length=self.header.audio_length,
        )


def read_ecdc(fo: IO[bytes], layout_for: LayoutSource = META_LAYOUTS, *, verify: bool = True,
              tensors: bool = True) -> EcdcContents:
    """Read a whole `.ecdc` file: `(header, EncodedAudio(codes [1, K, T], scales [1, N] | None, ...))`; numpy
    arrays instead of torch tensors with `tensors=False`."""
    reader = EcdcReader(fo, layout_for, verify=verify, tensors=tensors)
    return EcdcContents(reader.header, reader.read_all())


def iter_codes(
    fo: IO[bytes], layout_for: LayoutSource = META_LAYOUTS, chunk_frames: int = 4096, *, verify: bool = True
) -> Iterator[CodesChunk]:
    """Shorthand for `EcdcReader(fo, layout_for, verify=verify).chunks(chunk_frames)`."""
    return EcdcReader(fo, layout_for, verify=verify).chunks(chunk_frames)
