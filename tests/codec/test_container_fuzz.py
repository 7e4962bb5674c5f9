"""Hostile-input tests for the `.ecdc` reader: anything but a valid file must end in one `ContainerError`.

Random bytes, every truncation and every single-bit flip of small valid files, random splices. With our checksum
every corruption is detected; without it (Meta's files) a flip inside the codes may decode to other valid codes.
"""

from __future__ import annotations

import io
import struct
import tracemalloc

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codec.container import ENCODEC_24KHZ, ENCODEC_48KHZ, META_LAYOUTS, CodecLayout, EcdcHeader, read_ecdc, write_ecdc
from codec.errors import ContainerError
from codec.interface import EncodedAudio


class Pipe:
    """An unseekable reader with short reads."""

    def __init__(self, data: bytes):
        self._data, self._pos = data, 0

    def seekable(self) -> bool:
        return False

    def read(self, size: int = -1) -> bytes:
        size = len(self._data) if size < 0 else min(size, 5)
        out = self._data[self._pos : self._pos + size]
        self._pos += len(out)
        return out


def make_file(layout: CodecLayout, model: str, length: int, num_codebooks: int, checksum: bool) -> bytes:
    gen = torch.Generator().manual_seed(length)
    frames = sum(layout.frames_for(n) for n in layout.segments(length))
    codes = torch.randint(0, 1024, (1, num_codebooks, frames), generator=gen)
    scales = torch.rand(1, layout.num_segments(length), generator=gen) + 0.1 if layout.normalize else None
    out = io.BytesIO()
    header = EcdcHeader(model, weights_sha256="c0" * 32 if checksum else None)
    write_ecdc(out, header, EncodedAudio(codes, scales, layout.segment_frames, length), layout, checksum=checksum)
    return out.getvalue()


SMALL_24 = make_file(ENCODEC_24KHZ, "encodec_24khz", 1500, 3, checksum=True)  # 5 frames x 3 codebooks
META_24 = make_file(ENCODEC_24KHZ, "encodec_24khz", 1500, 3, checksum=False)  # Meta's exact bytes
SMALL_48 = make_file(ENCODEC_48KHZ, "encodec_48khz", 48_400, 2, checksum=True)  # 2 segments, with scales
META_48 = make_file(ENCODEC_48KHZ, "encodec_48khz", 48_400, 2, checksum=False)


def header_end(data: bytes) -> int:
    return 9 + struct.unpack(">I", data[5:9])[0]


def outcome(data: bytes, pipe: bool = False) -> EncodedAudio | None:
    """The decoded audio, or None after a one-line ContainerError; any other exception fails the test."""
    try:
        return read_ecdc(Pipe(data) if pipe else io.BytesIO(data), META_LAYOUTS).encoded
    except ContainerError as error:
        assert "\n" not in str(error) and 0 < len(str(error)) < 300
        return None


def assert_well_formed(encoded: EncodedAudio) -> None:
    layout = ENCODEC_24KHZ if encoded.scales is None else ENCODEC_48KHZ
    assert encoded.codes.shape[-1] == sum(layout.frames_for(n) for n in layout.segments(encoded.length))
    assert int(encoded.codes.min()) >= 0 and int(encoded.codes.max()) < 1024


@pytest.mark.parametrize("data", [SMALL_24, META_24, SMALL_48], ids=["ours24", "meta24", "ours48"])
def test_every_truncation_is_a_container_error(data):
    assert outcome(data) is not None and outcome(data, pipe=True) is not None
    for cut in range(len(data)):
        assert outcome(data[:cut]) is None
    for cut in range(0, len(data), 7):
        assert outcome(data[:cut], pipe=True) is None


@pytest.mark.parametrize("data", [SMALL_24, SMALL_48], ids=["ours24", "ours48"])
def test_every_bit_flip_is_detected_with_our_checksum(data):
    original = outcome(data)
    end = header_end(data)
    positions = range(len(data) * 8) if len(data) < 400 else [*range(end * 8), *range(end * 8, len(data) * 8, 5)]
    for bit in positions:
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert outcome(bytes(flipped)) is None, f"bit {bit} went unnoticed"
    assert original is not None


def test_every_bit_flip_of_a_meta_file_is_an_error_or_a_well_formed_decode():
    original = outcome(META_24)
    end = header_end(META_24)
    decoded_flips = 0
    for bit in range(len(META_24) * 8):
        flipped = bytearray(META_24)
        flipped[bit // 8] ^= 1 << (bit % 8)
        result = outcome(bytes(flipped))
        if result is not None:
            assert_well_formed(result)
            decoded_flips += 1
            if bit >= end * 8:  # a flip in the codes changes at most one code, or only padding bits
                changed = int((result.codes != original.codes).sum())
                assert changed <= 1 and result.length == original.length
    assert decoded_flips >= (len(META_24) - end) * 8  # every payload flip decodes (Meta's format has no checksum)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from([SMALL_24, META_24, SMALL_48, META_48]),
    start=st.integers(0, 400),
    length=st.integers(0, 40),
    junk=st.binary(max_size=40),
    pipe=st.booleans(),
)
def test_random_splices(base, start, length, junk, pipe):
    data = base[:start] + junk + base[start + length :]
    result = outcome(data, pipe)
    if result is not None:
        assert_well_formed(result)
        if base in (SMALL_24, SMALL_48):  # our checksum lets through only what decodes to the same codes
            original = outcome(base)
            assert torch.equal(result.codes, original.codes) and result.length == original.length


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.sampled_from([b"", b"ECDC", b"ECDC\x00", b"ECDC\x00\x00\x00\x00\x10", SMALL_24[: header_end(SMALL_24)]]),
    tail=st.binary(max_size=200),
    pipe=st.booleans(),
)
def test_random_bytes(prefix, tail, pipe):
    result = outcome(prefix + tail, pipe)
    if result is not None:
        assert_well_formed(result)


@settings(max_examples=150, deadline=None)
@given(
    al=st.one_of(st.integers(-(2**70), 2**70), st.sampled_from([2**48, 2**48 + 1, 2**47, 10**15])),
    nc=st.integers(-5, 2000),
    model=st.sampled_from(["encodec_24khz", "encodec_48khz"]),
    payload=st.binary(max_size=64),
    pipe=st.booleans(),
)
def test_forged_sizes_fail_fast_without_allocating(al, nc, model, payload, pipe):
    text = f'{{"m": "{model}", "al": {al}, "nc": {nc}, "lm": false}}'.encode()
    result = outcome(b"ECDC\x00" + struct.pack(">I", len(text)) + text + payload, pipe)
    if result is not None:
        assert_well_formed(result)
        assert result.length == al and result.num_codebooks == nc


@pytest.mark.parametrize("model", ["encodec_24khz", "encodec_48khz"])
@pytest.mark.parametrize("pipe", [False, True])
def test_forged_length_allocates_only_what_the_file_holds(model, pipe):
    text = f'{{"m": "{model}", "al": {2**48}, "nc": 16, "lm": false}}'.encode()
    data = b"ECDC\x00" + struct.pack(">I", len(text)) + text + bytes(3000)
    tracemalloc.start()
    try:
        assert outcome(data, pipe) is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
