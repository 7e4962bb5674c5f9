"""File-level operations behind the CLI: compress, decompress, roundtrip. Outputs are always written atomically.

Memory stays bounded by the codecs themselves: Meta's causal 24 kHz model is streamed (`codec.streaming`), the 48 kHz
model works segment by segment, and the default codec runs in overlapping chunks. `compress` and `decompress` also
read and write the audio file in blocks when the codec can take it that way (the default codec and Meta's causal
24 kHz model) and the file is at the codec's sample rate, so memory does not grow with the input's length; other
cases (resampling, the 48 kHz model) hold the waveform once.

Torch codecs get torch tensors; the torch-free runtime (`codec.runtime`, `codec.runtime == "onnxruntime"`) gets numpy
arrays, and nothing here imports torch for it.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .arrays import concat, to_numpy
from .audio import (
    atomic_output,
    audio_info,
    convert_audio,
    load_for_model,
    stream_audio,
    write_audio,
    write_audio_blocks,
)
from .container import EcdcHeader, check_weights, read_ecdc, write_ecdc
from .errors import ContainerError
from .interface import Codec, CodesBuffer, EncodedAudio
from .registry import container_name, layout_of

if TYPE_CHECKING:
    import torch

STREAM_CHUNK_SECONDS = 10.0


def _tensors(codec: Codec) -> bool:
    """Whether `codec` takes torch tensors (every codec but the torch-free runtime's)."""
    return getattr(codec, "runtime", "torch") == "torch"


def _inference(codec: Codec):
    """`torch.inference_mode()` for torch codecs; nothing for the torch-free runtime."""
    if not _tensors(codec):
        return contextlib.nullcontext()
    import torch

    return torch.inference_mode()


@contextlib.contextmanager
def _encoder_threads(codec: Codec, deterministic: bool):
    """Meta's SEANet encoder on oneDNN sums its convolutions in an order that depends on the thread count, which flips
    a few codes at near-ties (~0.3 %). With `deterministic`, its encoder runs on one thread, so the `.ecdc` bytes do
    not depend on how many threads the process has. The frame codec is thread-independent as it is."""
    if not deterministic or hasattr(codec, "encode_blocks"):
        yield
        return
    import torch

    if torch.get_num_threads() == 1:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _is_streamable(codec: Codec) -> bool:
    return (getattr(codec, "causal", False) and getattr(codec, "segment_length", 1) is None
            and not getattr(codec, "normalize", True))


def _stream_encode(codec: Codec, chunks: Iterator[torch.Tensor], bandwidth: float) -> EncodedAudio:
    """Meta's causal model over waveform chunks `[1, C, s_i]` (`codec.streaming`), codes gathered into one piece."""
    from .streaming import encode_stream

    length = 0

    def counted() -> Iterator[torch.Tensor]:
        nonlocal length
        for chunk in chunks:
            length += chunk.shape[-1]
            yield chunk

    codes = CodesBuffer()
    for piece in encode_stream(codec, counted(), bandwidth):  # type: ignore[arg-type]
        codes.append(piece.codes)
    return EncodedAudio(codes=codes.result(), length=length)


def _stream_decode(codec: Codec, encoded: EncodedAudio) -> Iterator[torch.Tensor]:
    """Meta's causal model decoding `STREAM_CHUNK_SECONDS` of codes at a time; yields waveform pieces `[1, C, s_i]`."""
    from .streaming import decode_stream

    step = int(STREAM_CHUNK_SECONDS * codec.frame_rate)
    frames = encoded.codes.shape[-1]
    chunks = (encoded.codes[..., i: i + step] for i in range(0, frames, step))
    return decode_stream(codec, chunks, encoded.length)  # type: ignore[arg-type]


def encode(codec: Codec, wav: torch.Tensor, bandwidth: float) -> EncodedAudio:
    """wav [1, C, S] at the codec's rate -> codes, in bounded memory for long inputs."""
    with _inference(codec):
        if _is_streamable(codec) and wav.shape[-1] > STREAM_CHUNK_SECONDS * codec.sample_rate:
            step = int(STREAM_CHUNK_SECONDS * codec.sample_rate)
            return _stream_encode(codec, (wav[..., i: i + step] for i in range(0, wav.shape[-1], step)), bandwidth)
        encoded = codec.encode(wav, bandwidth)
        encoded.length = wav.shape[-1]
        return encoded


def decode(codec: Codec, encoded: EncodedAudio) -> torch.Tensor:
    """codes -> wav [1, C, S], in bounded memory for long inputs."""
    with _inference(codec):
        if _is_streamable(codec) and encoded.codes.shape[-1] > STREAM_CHUNK_SECONDS * codec.frame_rate:
            return concat(list(_stream_decode(codec, encoded)))
        return codec.decode(encoded)


def _header(codec: Codec, encoded: EncodedAudio) -> EcdcHeader:
    return EcdcHeader(model=container_name(codec), audio_length=encoded.length,
                      num_codebooks=encoded.codes.shape[1], weights_sha256=codec.weights.sha256 or None,
                      sample_rate=codec.sample_rate)


def write_container(codec: Codec, encoded: EncodedAudio, fo) -> None:
    write_ecdc(fo, _header(codec, encoded), encoded, layout_of(codec))


def read_container(codec: Codec, fo) -> EncodedAudio:
    """Reads an .ecdc made with `codec` (same architecture and weights), verifying the checksum."""
    layout = layout_of(codec)
    header, encoded = read_ecdc(fo, layout, tensors=_tensors(codec))
    if header.model != container_name(codec):
        raise ContainerError(f"file was made with model {header.model!r}, but {container_name(codec)!r} is loaded; "
                             f"pass --model {header.model}")
    if codec.weights.sha256:
        check_weights(header, codec.weights.sha256, model_name=codec.weights.name)
    encoded.length = header.audio_length
    return encoded


@dataclass
class CompressReport:
    """What `compress` did. Bitrates in kbps; real-time factor = audio seconds per second of compute (higher is
    faster)."""

    input: str
    output: str
    model: str
    weights_sha256: str
    bandwidth: float
    num_codebooks: int
    duration_s: float
    file_bytes: int
    nominal_kbps: float
    file_kbps: float
    encode_rtf: float

    def to_dict(self) -> dict:
        return asdict(self)


def _streams_files(codec: Codec, seconds: float) -> bool:
    """Whether a file of `seconds` goes through the block path. It gives exactly what `encode` / `decode` give: the
    frame codec's block methods equal its whole-signal ones, and Meta's causal model is streamed in the same 10 s
    chunks either way once the input is longer than that (shorter inputs take the whole-signal call)."""
    return hasattr(codec, "encode_blocks") or (_is_streamable(codec) and seconds > STREAM_CHUNK_SECONDS)


def _encode_file(codec: Codec, source: str | Path, bandwidth: float, deterministic: bool = True
                 ) -> tuple[EncodedAudio, float]:
    """Encode a file (read in blocks where the codec allows; see the module docstring); returns (codes, seconds of
    compute, file reading excluded where it can be)."""
    info = audio_info(source)
    if info.sample_rate == codec.sample_rate and _streams_files(codec, info.num_samples / info.sample_rate):
        rate = codec.sample_rate
        spent = 0.0  # minus the time spent reading the file

        def blocks() -> Iterator[torch.Tensor]:
            nonlocal spent
            reader = stream_audio(source, int(STREAM_CHUNK_SECONDS * rate), tensors=_tensors(codec))
            while True:
                began = time.perf_counter()
                block = next(reader, None)
                if block is None:
                    return
                wav = convert_audio(block, rate, rate, codec.channels)[None]  # channel mix only: per sample
                spent -= time.perf_counter() - began
                yield wav

        start = time.perf_counter()
        with _inference(codec), _encoder_threads(codec, deterministic):
            if hasattr(codec, "encode_blocks"):
                encoded = codec.encode_blocks(blocks(), bandwidth)
            else:
                encoded = _stream_encode(codec, blocks(), bandwidth)
        return encoded, spent + time.perf_counter() - start
    wav, _ = load_for_model(source, codec.sample_rate, codec.channels, tensors=_tensors(codec))
    start = time.perf_counter()
    with _encoder_threads(codec, deterministic):
        encoded = encode(codec, wav, bandwidth)
    return encoded, time.perf_counter() - start


def compress(codec: Codec, source: str | Path, output: str | Path, bandwidth: float, force: bool = False,
             deterministic: bool = True) -> CompressReport:
    """Encode `source` into an `.ecdc` file. `deterministic` (the default) makes the bytes independent of the thread
    count for Meta's models too (their encoder then runs on one thread; see `_encoder_threads`)."""
    num_codebooks = codec.codebooks_for(bandwidth)  # check the bandwidth before reading anything
    with atomic_output(output, force=force, inputs=[source]) as tmp:
        encoded, seconds = _encode_file(codec, source, bandwidth, deterministic)
        with open(tmp, "wb") as fo:
            write_container(codec, encoded, fo)
        size = Path(tmp).stat().st_size
    duration = encoded.length / codec.sample_rate
    return CompressReport(str(source), str(output), codec.weights.name, codec.weights.sha256, bandwidth, num_codebooks,
                          duration, size, codec.bandwidth_for(num_codebooks), size * 8 / 1000 / max(duration, 1e-9),
                          duration / max(seconds, 1e-9))


@dataclass
class DecompressReport:
    input: str
    output: str
    model: str
    weights_sha256: str
    num_codebooks: int
    duration_s: float
    sample_rate: int
    decode_rtf: float

    def to_dict(self) -> dict:
        return asdict(self)


def _decoded_blocks(codec: Codec, encoded: EncodedAudio) -> Iterator[torch.Tensor]:
    """The decoded waveform as pieces `[C, s_i]`, from codecs that decode piecewise."""
    with _inference(codec):
        pieces = codec.iter_decode(encoded) if hasattr(codec, "iter_decode") else _stream_decode(codec, encoded)
        for piece in pieces:
            yield piece[0]


def decompress(codec: Codec, source: str | Path, output: str | Path, rate: int | None = None, force: bool = False
               ) -> DecompressReport:
    with atomic_output(output, force=force, inputs=[source]) as tmp:
        try:
            fo = open(source, "rb")
        except OSError as exc:
            raise ContainerError(f"{source}: cannot open ({exc.strerror})") from None
        with fo:
            encoded = read_container(codec, fo)
        out_rate = rate or codec.sample_rate
        start = time.perf_counter()
        frames = encoded.codes.shape[-1]
        if out_rate == codec.sample_rate and frames and _streams_files(codec, frames / codec.frame_rate):
            spent = 0.0

            def timed() -> Iterator[torch.Tensor]:
                nonlocal spent
                for piece in _decoded_blocks(codec, encoded):
                    began = time.perf_counter()
                    yield piece
                    spent -= time.perf_counter() - began  # time spent writing the block

            write_audio_blocks(tmp, timed(), out_rate)
            seconds = spent + time.perf_counter() - start
        else:
            wav = decode(codec, encoded)[0]
            seconds = time.perf_counter() - start
            if out_rate != codec.sample_rate:
                wav = convert_audio(wav, codec.sample_rate, out_rate, wav.shape[0])
            write_audio(tmp, wav, out_rate)
    duration = encoded.length / codec.sample_rate if encoded.length else 0.0
    return DecompressReport(str(source), str(output), codec.weights.name, codec.weights.sha256,
                            encoded.codes.shape[1], duration, out_rate, duration / max(seconds, 1e-9))


@dataclass
class RoundtripReport:
    """`roundtrip`: compress to memory, decompress, compare. Quality fields come from `codec.metrics.evaluate`."""

    input: str
    model: str
    weights_sha256: str
    bandwidth: float
    num_codebooks: int
    duration_s: float
    nominal_kbps: float
    file_kbps: float
    encode_rtf: float
    decode_rtf: float
    quality: dict

    def to_dict(self) -> dict:
        return asdict(self)


def roundtrip(codec: Codec, source: str | Path, bandwidth: float, speech: bool = True, dnsmos: bool = True,
              output: str | Path | None = None, force: bool = False) -> RoundtripReport:
    from .metrics import evaluate

    num_codebooks = codec.codebooks_for(bandwidth)
    audio_rate = audio_info(source).sample_rate
    wav, _ = load_for_model(source, codec.sample_rate, codec.channels, tensors=_tensors(codec))
    start = time.perf_counter()
    encoded = encode(codec, wav, bandwidth)
    encode_seconds = time.perf_counter() - start
    buffer = io.BytesIO()
    write_container(codec, encoded, buffer)
    buffer.seek(0)
    decoded_codes = read_container(codec, buffer)
    start = time.perf_counter()
    decoded = decode(codec, decoded_codes)
    decode_seconds = time.perf_counter() - start
    if output is not None:
        write_audio(output, decoded[0], codec.sample_rate, force=force, inputs=[source])
    duration = wav.shape[-1] / codec.sample_rate
    report = evaluate(to_numpy(wav[0]), to_numpy(decoded[0]), codec.sample_rate, speech=speech, dnsmos=dnsmos)
    size = len(buffer.getvalue())
    del audio_rate
    return RoundtripReport(str(source), codec.weights.name, codec.weights.sha256, bandwidth, num_codebooks, duration,
                           codec.bandwidth_for(num_codebooks), size * 8 / 1000 / max(duration, 1e-9),
                           duration / max(encode_seconds, 1e-9), duration / max(decode_seconds, 1e-9),
                           report.to_dict())
