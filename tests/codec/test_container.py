"""Tests for the `.ecdc` container: exact bytes, interoperability with Meta's `encodec` both ways, streaming, errors."""

from __future__ import annotations

import importlib
import io
import json
import math
import struct
import zlib

import numpy as np
import pytest
import torch
from encodec import EncodecModel, binary
from hypothesis import given, settings
from hypothesis import strategies as st

from codec.container import (
    ENCODEC_24KHZ,
    ENCODEC_48KHZ,
    META_LAYOUTS,
    BitPacker,
    CodecLayout,
    EcdcHeader,
    EcdcReader,
    EcdcWriter,
    check_weights,
    iter_codes,
    pack_codes,
    read_ecdc,
    read_header,
    unpack_codes,
    write_ecdc,
)
from codec.errors import ContainerError
from codec.interface import EncodedAudio

meta = importlib.import_module("encodec.compress")  # `encodec.compress` the attribute is a function
SHA = "5e" * 32


class Pipe:
    """An unseekable reader that returns short reads, like a pipe."""

    def __init__(self, data: bytes, step: int = 7):
        self._data, self._pos, self._step = data, 0, step

    def seekable(self) -> bool:
        return False

    def read(self, size: int = -1) -> bytes:
        size = len(self._data) if size < 0 else min(size, self._step)
        out = self._data[self._pos : self._pos + size]
        self._pos += len(out)
        return out


class Sink:
    """An unseekable writer."""

    def __init__(self):
        self.data = bytearray()

    def seekable(self) -> bool:
        return False

    def write(self, data: bytes) -> int:
        self.data += data
        return len(data)

    def flush(self) -> None:
        pass


def meta_pack(values: list[int], bits: int) -> bytes:
    out = io.BytesIO()
    packer = binary.BitPacker(bits, out)
    for value in values:
        packer.push(value)
    packer.flush()
    return out.getvalue()


def random_model(factory, name: str, bandwidth: float) -> EncodecModel:
    """Meta's architecture with random weights, codebooks filled with vectors at the encoder's scale (no download)."""
    torch.manual_seed(0)
    model = factory(pretrained=False)
    model.name = name
    model.set_target_bandwidth(bandwidth)
    with torch.no_grad():
        spread = model.encoder(torch.randn(1, model.channels, 4000)).std() * 0.5
        for layer in model.quantizer.vq.layers:
            layer._codebook.embed.normal_().mul_(spread)
            layer._codebook.inited.fill_(1)
    return model


@pytest.fixture(scope="module")
def model24() -> EncodecModel:
    return random_model(EncodecModel.encodec_model_24khz, "encodec_24khz", 6.0)


@pytest.fixture(scope="module")
def model48() -> EncodecModel:
    return random_model(EncodecModel.encodec_model_48khz, "encodec_48khz", 6.0)


def random_encoded(layout: CodecLayout, length: int, num_codebooks: int, seed: int = 0) -> EncodedAudio:
    gen = torch.Generator().manual_seed(seed)
    frames = sum(layout.frames_for(n) for n in layout.segments(length))
    codes = torch.randint(0, 1 << layout.bits, (1, num_codebooks, frames), generator=gen)
    scales = None
    if layout.normalize:
        scales = torch.rand(1, layout.num_segments(length), generator=gen) + 0.01
    return EncodedAudio(codes, scales, layout.segment_frames, length)


def to_bytes(encoded: EncodedAudio, layout: CodecLayout, model: str = "encodec_24khz", **kwargs) -> bytes:
    out = io.BytesIO()
    write_ecdc(out, EcdcHeader(model, **kwargs.pop("header", {})), encoded, layout, **kwargs)
    return out.getvalue()


def split_segments(encoded: EncodedAudio, layout: CodecLayout) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Meta's frame list `[(codes [1, K, t], scale [1, 1] | None), ...]`."""
    out, start = [], 0
    for index, samples in enumerate(layout.segments(encoded.length)):
        count = layout.frames_for(samples)
        scale = None if encoded.scales is None else encoded.scales[:, index : index + 1]
        out.append((encoded.codes[:, :, start : start + count], scale))
        start += count
    return out


# ------------------------------------------------------------------------------------------------ exact values


TINY_CODES = torch.tensor([[[1, 2, 3], [1023, 0, 512]]])  # [1, K=2, T=3]
TINY_PAYLOAD = bytes([0x01, 0xFC, 0x2F, 0x00, 0x00, 0x03, 0x00, 0x08])  # 60 bits, LSB first, 4 zero pad bits
TINY_JSON = b'{"m": "encodec_24khz", "al": 960, "nc": 2, "lm": false}'


def test_tiny_file_exact_bytes():
    data = to_bytes(EncodedAudio(TINY_CODES, length=960), ENCODEC_24KHZ, checksum=False)
    assert data == b"ECDC\x00" + struct.pack(">I", len(TINY_JSON)) + TINY_JSON + TINY_PAYLOAD
    assert meta_pack([1, 1023, 2, 0, 3, 512], 10) == TINY_PAYLOAD
    header, encoded = read_ecdc(io.BytesIO(data))
    assert header == EcdcHeader("encodec_24khz", 960, 2)
    assert encoded.codes.tolist() == TINY_CODES.tolist() and encoded.codes.dtype == torch.int64
    assert encoded.length == 960 and encoded.scales is None and encoded.segment_frames is None


def test_tiny_file_with_checksum_exact_bytes():
    data = to_bytes(EncodedAudio(TINY_CODES, length=960), ENCODEC_24KHZ, header={"weights_sha256": "ab" * 32})
    header_json = (
        b'{"m": "encodec_24khz", "al": 960, "nc": 2, "lm": false, "v": 1, "sr": 24000, "sha": "' + b"ab" * 32 + b'", '
        b'"crc": "17db3886"}'
    )
    assert data == b"ECDC\x00" + struct.pack(">I", len(header_json)) + header_json + TINY_PAYLOAD
    canonical = b'{"al":960,"lm":false,"m":"encodec_24khz","nc":2,"sha":"' + b"ab" * 32 + b'","sr":24000,"v":1}'
    assert f"{zlib.crc32(canonical, zlib.crc32(TINY_PAYLOAD)):08x}" == "17db3886"
    header, encoded = read_ecdc(io.BytesIO(data))
    assert (header.checksum, header.weights_sha256, header.sample_rate, header.format_version) == (
        "17db3886",
        "ab" * 32,
        24000,
        1,
    )
    assert header.duration == 0.04 and encoded.codes.tolist() == TINY_CODES.tolist()


def test_frame_counts_and_payload_sizes():
    assert [ENCODEC_24KHZ.frames_for(n) for n in (1, 320, 321, 6720, 24000)] == [1, 1, 2, 21, 75]
    assert list(ENCODEC_48KHZ.segments(95_500)) == [48_000, 47_980, 460]
    assert [ENCODEC_48KHZ.frames_for(n) for n in ENCODEC_48KHZ.segments(95_500)] == [150, 150, 2]
    assert ENCODEC_48KHZ.payload_bytes(95_500, 4) == 3 * 4 + 750 + 750 + 10
    assert ENCODEC_24KHZ.payload_bytes(24_000, 8) == 750
    # O(1) on forged lengths, same answer as summing the segments
    for length in (1, 47_520, 48_000, 48_001, 95_040, 95_041, 10**6 + 17):
        expected = sum(ENCODEC_48KHZ.segment_bytes(n, 3) for n in ENCODEC_48KHZ.segments(length))
        assert ENCODEC_48KHZ.payload_bytes(length, 3) == expected
    shift = 2**62 // 47_520 - 5  # shifting the audio by whole strides adds whole segments of 4 + 3000 bytes
    small = 2**62 - shift * 47_520
    expected = shift * 3004 + sum(ENCODEC_48KHZ.segment_bytes(n, 16) for n in ENCODEC_48KHZ.segments(small))
    assert ENCODEC_48KHZ.payload_bytes(2**62, 16) == expected


def test_layouts_match_meta_models(model24, model48):
    for model in (model24, model48):
        layout = META_LAYOUTS[model.name]
        assert (layout.sample_rate, layout.frame_rate, layout.normalize) == (
            model.sample_rate,
            model.frame_rate,
            model.normalize,
        )
        assert (layout.segment_length, layout.segment_stride, layout.bits) == (
            model.segment_length,
            model.segment_stride,
            model.bits_per_codebook,
        )
        assert layout.max_codebooks == model.quantizer.n_q


@settings(max_examples=40, deadline=None)
@given(bits=st.integers(1, 16), count=st.integers(0, 70), seed=st.integers(0, 2**32 - 1), split=st.integers(0, 70))
def test_bit_packing_equals_meta(bits, count, seed, split):
    values = np.random.default_rng(seed).integers(0, 1 << bits, count)
    expected = meta_pack(values.tolist(), bits)
    packer = BitPacker(bits)
    assert packer.push(values[:split]) + packer.push(values[split:]) + packer.flush() == expected
    codes = values.reshape(count, 1).T  # [K=1, T]
    assert pack_codes(codes, bits) == expected
    assert unpack_codes(expected, 1, count, bits).tolist() == codes.tolist()


# ------------------------------------------------------------------------------------------------ Meta interop


@pytest.mark.parametrize("length", [1000, 6720])
def test_meta_24khz_file_reads_to_same_codes(model24, length):
    torch.manual_seed(length)
    wav = torch.randn(1, length) * 0.3
    data = meta.compress(model24, wav, use_lm=False)
    ((expected, _),) = model24.encode(wav[None])
    header, encoded = read_ecdc(io.BytesIO(data))
    assert header == EcdcHeader("encodec_24khz", length, 8)
    assert torch.equal(encoded.codes, expected) and encoded.codes.unique().numel() > 20
    assert to_bytes(encoded, ENCODEC_24KHZ, checksum=False) == data  # and back to Meta's exact bytes
    sink = Sink()  # the Meta-compatible mode streams to a pipe
    write_ecdc(sink, EcdcHeader("encodec_24khz"), encoded, ENCODEC_24KHZ, checksum=False)
    assert bytes(sink.data) == data


def test_meta_48khz_stereo_file_reads_to_same_codes_and_scales(model48):
    torch.manual_seed(1)
    wav = torch.randn(2, 49_000) * 0.3
    data = meta.compress(model48, wav, use_lm=False)
    frames = model48.encode(wav[None])
    header, encoded = read_ecdc(io.BytesIO(data))
    assert header == EcdcHeader("encodec_48khz", 49_000, 4)
    assert torch.equal(encoded.codes, torch.cat([codes for codes, _ in frames], dim=-1))
    assert encoded.codes.shape == (1, 4, 150 + 5) and encoded.segment_frames == 150
    expected_scales = torch.cat([scale for _, scale in frames], dim=-1)
    assert torch.equal(encoded.scales, expected_scales)  # float32 round trip is exact
    assert to_bytes(encoded, ENCODEC_48KHZ, "encodec_48khz", checksum=False) == data


@pytest.mark.parametrize(("name", "length", "num_codebooks"), [("encodec_48khz", 95_500, 16), ("encodec_48khz", 7, 2)])
def test_meta_48khz_many_segments_reads(monkeypatch, model48, name, length, num_codebooks):
    encoded = random_encoded(ENCODEC_48KHZ, length, num_codebooks, seed=length)
    monkeypatch.setattr(model48, "encode", lambda wav: split_segments(encoded, ENCODEC_48KHZ))
    data = meta.compress(model48, torch.zeros(2, length), use_lm=False)
    header, back = read_ecdc(io.BytesIO(data))
    assert torch.equal(back.codes, encoded.codes) and torch.equal(back.scales, encoded.scales)
    assert to_bytes(encoded, ENCODEC_48KHZ, name, checksum=False) == data


def decompress_codes(monkeypatch, model, data: bytes) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Run Meta's `decompress` on `data`, capturing the frames it hands to the decoder."""
    captured = []

    def decode(frames):
        captured.extend(frames)
        return torch.zeros(1, model.channels, 10**6)

    monkeypatch.setitem(meta.MODELS, model.name, lambda: model)
    monkeypatch.setattr(model, "decode", decode)
    meta.decompress(data)
    return captured


@pytest.mark.parametrize(("length", "num_codebooks"), [(1, 2), (960, 8), (24_011, 32)])
@pytest.mark.parametrize("checksum", [True, False])
def test_our_24khz_files_decompress_with_meta(monkeypatch, model24, length, num_codebooks, checksum):
    assert math.ceil(length / 24_000 * 75) == ENCODEC_24KHZ.frames_for(length)  # avoid Meta's float rounding bug
    encoded = random_encoded(ENCODEC_24KHZ, length, num_codebooks, seed=length)
    data = to_bytes(encoded, ENCODEC_24KHZ, checksum=checksum, header={"weights_sha256": SHA})
    ((codes, scale),) = decompress_codes(monkeypatch, model24, data)
    assert torch.equal(codes, encoded.codes) and scale is None


@pytest.mark.parametrize(("length", "num_codebooks"), [(49_000, 4), (95_500, 16), (200, 1)])
def test_our_48khz_files_decompress_with_meta(monkeypatch, model48, length, num_codebooks):
    encoded = random_encoded(ENCODEC_48KHZ, length, num_codebooks, seed=length)
    data = to_bytes(encoded, ENCODEC_48KHZ, "encodec_48khz", header={"weights_sha256": SHA})
    frames = decompress_codes(monkeypatch, model48, data)
    expected = split_segments(encoded, ENCODEC_48KHZ)
    assert len(frames) == len(expected)
    for (codes, scale), (want_codes, want_scale) in zip(frames, expected, strict=True):
        assert torch.equal(codes, want_codes) and torch.equal(scale, want_scale.reshape(1))


def test_meta_float_frame_count_bug_is_not_ours(monkeypatch, model24):
    """Meta's reader computes 22 frames for 6720 samples (float rounding) and fails on its own file; we read it."""
    data = meta.compress(model24, torch.randn(1, 6720) * 0.3, use_lm=False)
    monkeypatch.setitem(meta.MODELS, "encodec_24khz", lambda: model24)
    with pytest.raises(EOFError):
        meta.decompress(data)
    assert read_ecdc(io.BytesIO(data)).encoded.codes.shape == (1, 8, 21)


# ------------------------------------------------------------------------------------------------ round trips


layouts = st.sampled_from(
    [
        ENCODEC_24KHZ,
        ENCODEC_48KHZ,
        CodecLayout(sample_rate=1000, frame_rate=30, segment_length=100, segment_stride=90, normalize=True, bits=7),
        CodecLayout(sample_rate=1000, frame_rate=12.5, segment_length=64, segment_stride=64, bits=3),
        CodecLayout(sample_rate=16_000, frame_rate=50, bits=13),
    ]
)


@settings(max_examples=40, deadline=None)
@given(layout=layouts, length=st.integers(1, 3000), num_codebooks=st.integers(1, 16), seed=st.integers(0, 2**16))
def test_round_trip(layout, length, num_codebooks, seed):
    encoded = random_encoded(layout, length, num_codebooks, seed)
    for checksum in (True, False):
        data = to_bytes(encoded, layout, "x", checksum=checksum)
        header, back = read_ecdc(io.BytesIO(data), {"x": layout})
        assert (header.audio_length, header.num_codebooks) == (length, num_codebooks)
        assert torch.equal(back.codes, encoded.codes) and back.length == length
        assert (back.scales is None) == (encoded.scales is None)
        if back.scales is not None:
            assert torch.equal(back.scales, encoded.scales)
        piped = read_ecdc(Pipe(data), layout).encoded
        assert torch.equal(piped.codes, encoded.codes)


@settings(max_examples=40, deadline=None)
@given(
    length=st.integers(1, 4000),
    num_codebooks=st.integers(1, 9),
    cuts=st.lists(st.integers(0, 60), max_size=6),
    known=st.booleans(),
    checksum=st.booleans(),
)
def test_streaming_writer_equals_one_shot(length, num_codebooks, cuts, known, checksum):
    layout = ENCODEC_24KHZ
    encoded = random_encoded(layout, length, num_codebooks, seed=length)
    one_shot = to_bytes(encoded, layout, checksum=checksum)
    out = io.BytesIO()
    header = EcdcHeader("encodec_24khz", length if known else None, num_codebooks)
    writer = EcdcWriter(out, header, layout, checksum=checksum)
    bounds = sorted({0, encoded.codes.shape[-1], *[c for c in cuts if c < encoded.codes.shape[-1]]})
    for start, stop in zip(bounds, bounds[1:], strict=False):
        writer.write_codes(encoded.codes[:, :, start:stop])
    final = writer.close(audio_length=length)
    data = out.getvalue()
    if known:
        assert data == one_shot
    else:  # the header was padded with spaces; Meta's reader still parses it
        assert len(data) == len(one_shot) + 15 - (len(str(length)) - 1)  # room for 15 digits where "0" was
        assert binary.read_ecdc_header(io.BytesIO(data))["al"] == length
    assert read_header(io.BytesIO(data)) == final
    assert torch.equal(read_ecdc(io.BytesIO(data)).encoded.codes, encoded.codes)


def test_streaming_segment_writer_equals_one_shot():
    encoded = random_encoded(ENCODEC_48KHZ, 95_500, 3)
    one_shot = to_bytes(encoded, ENCODEC_48KHZ, "encodec_48khz")
    for known in (95_500, None):
        out = io.BytesIO()
        with EcdcWriter(out, EcdcHeader("encodec_48khz", known, 3), ENCODEC_48KHZ) as writer:
            for codes, scale in split_segments(encoded, ENCODEC_48KHZ):
                writer.write_segment(codes, float(scale))
            writer.close(95_500)
        assert (out.getvalue() == one_shot) == (known is not None)
        assert torch.equal(read_ecdc(io.BytesIO(out.getvalue())).encoded.codes, encoded.codes)


@settings(max_examples=25, deadline=None)
@given(chunk_frames=st.integers(1, 200), layout=layouts, pipe=st.booleans())
def test_iter_codes_chunks_concatenate_to_all(chunk_frames, layout, pipe):
    encoded = random_encoded(layout, 2500, 3)
    data = to_bytes(encoded, layout, "x")
    chunks = list(iter_codes(Pipe(data) if pipe else io.BytesIO(data), {"x": layout}, chunk_frames))
    assert torch.equal(torch.cat([c.codes for c in chunks], dim=-1), encoded.codes)
    assert all(c.codes.shape[-1] <= chunk_frames for c in chunks)
    frames = [layout.frames_for(n) for n in layout.segments(2500)]
    starts = np.cumsum([0, *frames])[:-1].tolist()
    assert [c.first_frame for c in chunks if c.segment_start] == starts
    if layout.normalize:
        assert [c.scale for c in chunks if c.segment_start] == encoded.scales[0].tolist()


def test_writer_rejects_wrong_frame_counts_and_values():
    with pytest.raises(ValueError, match="frames"):
        to_bytes(EncodedAudio(TINY_CODES, length=961), ENCODEC_24KHZ)
    with pytest.raises(ValueError, match="0..1023"):
        to_bytes(EncodedAudio(TINY_CODES + 1000, length=960), ENCODEC_24KHZ)
    with pytest.raises(ValueError, match="seekable"):
        EcdcWriter(Sink(), EcdcHeader("encodec_24khz", 960, 2), ENCODEC_24KHZ)
    with pytest.raises(ValueError, match="LM"):
        EcdcWriter(io.BytesIO(), EcdcHeader("encodec_24khz", 960, 2, use_lm=True), ENCODEC_24KHZ)
    writer = EcdcWriter(io.BytesIO(), EcdcHeader("encodec_48khz", 48_000, 2), ENCODEC_48KHZ)
    with pytest.raises(ValueError, match="expected 150"):
        writer.write_segment(torch.zeros(1, 2, 149, dtype=torch.long), 1.0)
    with pytest.raises(ValueError, match="write_segment"):
        writer.write_codes(torch.zeros(1, 2, 150, dtype=torch.long))


# ------------------------------------------------------------------------------------------------ errors


def ecdc(header: dict | bytes, payload: bytes = b"", version: int = 0) -> bytes:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return b"ECDC" + bytes([version]) + struct.pack(">I", len(text)) + text + payload


TINY = {"m": "encodec_24khz", "al": 960, "nc": 2, "lm": False}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not an .ecdc file: it is empty"),
        (b"ECD", "truncated: the file ends after 3 bytes, inside the .ecdc preamble"),
        (b"RIFF\x00\x00\x00\x00\x00", "not an .ecdc file: it starts with b'RIFF', not b'ECDC'"),
        (ecdc(TINY, TINY_PAYLOAD, version=1), "unsupported .ecdc version 1 (only 0 is known)"),
        (ecdc(TINY)[:-3], "truncated: the header needs 55 bytes but only 52 follow"),
        (b"ECDC\x00\xff\xff\xff\xff", "corrupted: the header claims 4294967295 bytes (at most 1048576 are allowed)"),
        (ecdc(b'{"m": "x",'), "corrupted header: invalid JSON (Expecting property name enclosed in double quotes: "),
        (ecdc(b"[" * 100_000), "corrupted header: invalid JSON (maximum recursion depth exceeded"),
        (ecdc(b'{"m": "\xff"}'), "corrupted header: not valid UTF-8"),
        (ecdc(b"[1, 2]"), "corrupted header: expected a JSON object, got list"),
        (ecdc({**TINY, "al": None}), "corrupted header: the audio length ('al') should be int, got None"),
        (ecdc({**TINY, "al": True}), "corrupted header: the audio length ('al') should be int, got True"),
        (ecdc({**TINY, "nc": "2"}), "corrupted header: the number of codebooks ('nc') should be int, got '2'"),
        (ecdc({"m": "encodec_24khz", "al": 960, "nc": 2}), "corrupted header: the LM flag ('lm') is missing"),
        (ecdc({**TINY, "al": -5}), "corrupted header: implausible audio length -5"),
        (ecdc({**TINY, "al": 2**62}), "corrupted header: implausible audio length 4611686018427387904"),
        (ecdc({**TINY, "nc": 0}), "corrupted header: implausible number of codebooks 0"),
        (ecdc({**TINY, "nc": 33}), "corrupted header: 33 codebooks, but 'encodec_24khz' has at most 32"),
        (
            ecdc({**TINY, "al": 2**47}, TINY_PAYLOAD),
            "truncated: the header announces 1099511627778 bytes of codes, but only 8 follow",
        ),
        (ecdc(TINY, TINY_PAYLOAD[:-1]), "truncated: the header announces 8 bytes of codes, but only 7 follow"),
        (ecdc(TINY, TINY_PAYLOAD + b"\0"), "corrupted: 1 unexpected bytes after the codes"),
        (ecdc({**TINY, "m": "nope\n"}, TINY_PAYLOAD), "the file was made with model 'nope\\n', which is not available"),
        (ecdc({**TINY, "sr": 16000}, TINY_PAYLOAD), "the file is at 16000 Hz, but 'encodec_24khz' runs at 24000 Hz"),
        (
            ecdc({**TINY, "v": 2, "crc": "00000000"}, TINY_PAYLOAD),
            "written by a newer format version (2); this reader knows up to 1",
        ),
        (
            ecdc({**TINY, "crc": "xyz"}, TINY_PAYLOAD),
            "corrupted header: the checksum should be 8 hex digits, got 'xyz'",
        ),
        (ecdc({**TINY, "crc": "00000000"}, TINY_PAYLOAD), "corrupted: checksum mismatch"),
        (ecdc({**TINY, "lm": True}, TINY_PAYLOAD), "this file was compressed with Meta's LM entropy coder"),
        (
            ecdc({**TINY, "m": "encodec_48khz", "al": 1}, b"\x7f\xc0\x00\x00\0\0\0"),
            "corrupted: segment 0 has an invalid scale nan",
        ),
    ],
)
def test_bad_files_raise_one_line_container_errors(data, message):
    for source in (io.BytesIO(data), Pipe(data)):
        with pytest.raises(ContainerError) as error:
            read_ecdc(source)
        text = str(error.value)
        assert "\n" not in text and len(text) < 200
        if isinstance(source, io.BytesIO) or not message.startswith(("truncated: the header", "corrupted: 1")):
            assert text.startswith(message), text


def test_pipe_errors_name_the_same_problems():
    with pytest.raises(ContainerError, match="^truncated: the file ends 1 bytes before the end of the codes"):
        read_ecdc(Pipe(ecdc(TINY, TINY_PAYLOAD[:-1])))
    with pytest.raises(ContainerError, match="^corrupted: unexpected bytes after the codes"):
        read_ecdc(Pipe(ecdc(TINY, TINY_PAYLOAD + b"\0")))


def test_checksum_mismatch_on_flipped_payload_and_verify_off():
    data = bytearray(to_bytes(EncodedAudio(TINY_CODES, length=960), ENCODEC_24KHZ))
    data[-8] ^= 0x04  # code 1 -> 5
    for source in (io.BytesIO(bytes(data)), Pipe(bytes(data))):
        with pytest.raises(ContainerError, match="^corrupted: checksum mismatch$"):
            read_ecdc(source)
    assert read_ecdc(io.BytesIO(bytes(data)), verify=False).encoded.codes[0, 0, 0].item() == 5


def test_check_weights():
    header = EcdcHeader("encodec_24khz", 960, 2, weights_sha256="ab" * 32)
    check_weights(header, "ab" * 32)
    check_weights(EcdcHeader("encodec_24khz", 960, 2), "cd" * 32)  # Meta's files record no weights
    with pytest.raises(ContainerError) as error:
        check_weights(header, "cd" * 32)
    assert str(error.value) == (
        "made with weights 'abababababababab', but model 'encodec_24khz' has cdcdcdcdcdcdcdcd; "
        "load the weights the file was made with"
    )


def test_reader_with_layout_callable_and_header_extra():
    data = to_bytes(EncodedAudio(TINY_CODES, length=960), ENCODEC_24KHZ, "mine", header={"extra": {"note": "hi"}})
    reader = EcdcReader(io.BytesIO(data), lambda name: ENCODEC_24KHZ)
    assert reader.header.extra == {"note": "hi"} and reader.payload_bytes == 8
    assert reader.read_all().codes.tolist() == TINY_CODES.tolist()
    with pytest.raises(ContainerError, match="^the file was made with model 'mine', which is not available$"):
        read_ecdc(io.BytesIO(data))
