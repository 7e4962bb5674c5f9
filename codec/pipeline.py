"""File-level operations behind the CLI: compress, decompress, roundtrip. Outputs are always written atomically.

Memory stays bounded by the codecs themselves: Meta's causal 24 kHz model is streamed (`codec.streaming`), the 48 kHz
model works segment by segment, and the default codec runs in overlapping chunks.
"""

from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .audio import atomic_output, audio_info, convert_audio, load_for_model, write_audio
from .container import EcdcHeader, check_weights, read_ecdc, write_ecdc
from .errors import ContainerError
from .interface import Codec, EncodedAudio
from .registry import container_name, layout_of

STREAM_CHUNK_SECONDS = 10.0


def _is_streamable(codec: Codec) -> bool:
    return (getattr(codec, "causal", False) and getattr(codec, "segment_length", 1) is None
            and not getattr(codec, "normalize", True))


@torch.inference_mode()
def encode(codec: Codec, wav: torch.Tensor, bandwidth: float) -> EncodedAudio:
    """wav [1, C, S] at the codec's rate -> codes, in bounded memory for long inputs."""
    if _is_streamable(codec) and wav.shape[-1] > STREAM_CHUNK_SECONDS * codec.sample_rate:
        from .streaming import encode_stream

        step = int(STREAM_CHUNK_SECONDS * codec.sample_rate)
        chunks = (wav[..., i: i + step] for i in range(0, wav.shape[-1], step))
        codes = [piece.codes for piece in encode_stream(codec, chunks, bandwidth)]  # type: ignore[arg-type]
        return EncodedAudio(codes=torch.cat(codes, dim=-1), length=wav.shape[-1])
    encoded = codec.encode(wav, bandwidth)
    encoded.length = wav.shape[-1]
    return encoded


@torch.inference_mode()
def decode(codec: Codec, encoded: EncodedAudio) -> torch.Tensor:
    """codes -> wav [1, C, S], in bounded memory for long inputs."""
    frames = encoded.codes.shape[-1]
    if _is_streamable(codec) and frames > STREAM_CHUNK_SECONDS * codec.frame_rate:
        from .streaming import decode_stream

        step = int(STREAM_CHUNK_SECONDS * codec.frame_rate)
        pieces = (encoded.codes[..., i: i + step] for i in range(0, frames, step))
        return torch.cat(list(decode_stream(codec, pieces, encoded.length)), dim=-1)  # type: ignore[arg-type]
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
    header, encoded = read_ecdc(fo, layout)
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


def compress(codec: Codec, source: str | Path, output: str | Path, bandwidth: float, force: bool = False
             ) -> CompressReport:
    num_codebooks = codec.codebooks_for(bandwidth)  # check the bandwidth before reading anything
    with atomic_output(output, force=force, inputs=[source]) as tmp:
        wav, _ = load_for_model(source, codec.sample_rate, codec.channels)
        start = time.perf_counter()
        encoded = encode(codec, wav, bandwidth)
        seconds = time.perf_counter() - start
        with open(tmp, "wb") as fo:
            write_container(codec, encoded, fo)
        size = Path(tmp).stat().st_size
    duration = wav.shape[-1] / codec.sample_rate
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


def decompress(codec: Codec, source: str | Path, output: str | Path, rate: int | None = None, force: bool = False
               ) -> DecompressReport:
    with atomic_output(output, force=force, inputs=[source]) as tmp:
        try:
            fo = open(source, "rb")
        except OSError as exc:
            raise ContainerError(f"{source}: cannot open ({exc.strerror})") from None
        with fo:
            encoded = read_container(codec, fo)
        start = time.perf_counter()
        wav = decode(codec, encoded)[0]
        seconds = time.perf_counter() - start
        out_rate = rate or codec.sample_rate
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
    wav, _ = load_for_model(source, codec.sample_rate, codec.channels)
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
    report = evaluate(wav[0].numpy(), decoded[0].numpy(), codec.sample_rate, speech=speech, dnsmos=dnsmos)
    size = len(buffer.getvalue())
    del audio_rate
    return RoundtripReport(str(source), codec.weights.name, codec.weights.sha256, bandwidth, num_codebooks, duration,
                           codec.bandwidth_for(num_codebooks), size * 8 / 1000 / max(duration, 1e-9),
                           duration / max(encode_seconds, 1e-9), duration / max(decode_seconds, 1e-9),
                           report.to_dict())
