"""Hostile token sequences and `.ecdc` files: only the project's one-line errors may come out, never another exception.

Property tests (hypothesis) of the token decoders (vocabulary ids/strings -> codes, flatten/delay patterns strict and
with `repair="truncate"`, the `audiolm detokenize` parser) and of both CLIs on damaged files: exit 1, one line on
stderr, no output file and no temporary file left behind. The `.ecdc` reader's byte-level fuzzing lives in
tests/codec/test_container_fuzz.py; the coverage-guided atheris harnesses in fuzz/ (run by test_fuzz_harnesses.py).
"""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from audiolm.cli_tokens import parse_tokens
from audiolm.errors import BridgeError
from audiolm.patterns import get_pattern
from audiolm.vocab import AudioVocab
from codec.container import META_LAYOUTS, read_ecdc
from codec.errors import ContainerError

ROOT = Path(__file__).resolve().parents[2]
INT64 = 1 << 63
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

vocabs = st.builds(
    AudioVocab, audio_base=st.integers(1, 1000), num_codebooks=st.integers(1, 5), cardinality=st.integers(1, 30)
)


def last_position(pattern, frame: int) -> int:
    """Position of the last token of `frame` (codebook K-1 in both patterns)."""
    return int(pattern.position_of(torch.tensor(pattern.num_codebooks - 1), torch.tensor(frame)))


@st.composite
def hostile_ids(draw, vocab: AudioVocab, max_length: int = 48) -> list[int]:
    plausible = st.one_of(
        st.integers(vocab.audio_base, vocab.audio_base + vocab.num_code_tokens - 1),
        st.just(vocab.pad_id),
        st.sampled_from([vocab.start_id, vocab.end_id, vocab.size, vocab.audio_base - 1, -1, 0]),
        st.integers(-INT64, INT64 - 1),
    )
    return draw(st.lists(plausible, max_size=max_length))


@SETTINGS
@given(data=st.data(), vocab=vocabs, name=st.sampled_from(["flatten", "delay"]), batch=st.integers(1, 3))
def test_hostile_ids_decode_exactly_or_fail_with_a_bridge_error(data, vocab, name, batch):
    K = data.draw(st.integers(1, vocab.num_codebooks))
    pattern = get_pattern(name, K)
    length = data.draw(st.integers(0, 48))
    rows = [data.draw(hostile_ids(vocab, length).filter(lambda r, n=length: len(r) == n)) for _ in range(batch)]
    ids = torch.tensor(rows, dtype=torch.long).reshape(batch, length)
    try:
        codes = pattern.ids_to_codes(ids, vocab)
    except BridgeError as error:
        assert str(error) and "\n" not in str(error)
    else:
        assert torch.equal(pattern.codes_to_ids(codes, vocab), ids)  # strict decoding is the exact inverse
    repaired = pattern.ids_to_codes(ids, vocab, repair="truncate")  # never raises
    B, K_out, T = repaired.shape
    assert (B, K_out) == (batch, K)
    if T:
        assert last_position(pattern, T - 1) < length
        assert 0 <= int(repaired.min()) and int(repaired.max()) < vocab.cardinality
        k, t = torch.meshgrid(torch.arange(K), torch.arange(T), indexing="ij")
        pos = pattern.position_of(k, t).reshape(-1)
        assert torch.equal(pattern.codes_to_ids(repaired, vocab)[:, pos], ids[:, pos])  # nothing shifted


@SETTINGS
@given(data=st.data(), vocab=vocabs, name=st.sampled_from(["flatten", "delay"]), frames=st.integers(1, 8))
def test_one_corrupted_token_keeps_exactly_the_frames_before_it(data, vocab, name, frames):
    K = data.draw(st.integers(1, vocab.num_codebooks))
    pattern = get_pattern(name, K)
    codes = torch.randint(0, vocab.cardinality, (1, K, frames), generator=torch.Generator().manual_seed(frames))
    ids = pattern.codes_to_ids(codes, vocab)
    where = data.draw(st.integers(0, ids.shape[1] - 1))
    bad = [vocab.audio_base - 1, vocab.start_id, vocab.end_id, vocab.size, -5]  # never valid anywhere
    ids[0, where] = data.draw(st.sampled_from(bad))
    with pytest.raises(BridgeError, match=f"position {where} "):
        pattern.ids_to_codes(ids, vocab)
    kept = pattern.ids_to_codes(ids, vocab, repair="truncate")
    expected = sum(last_position(pattern, t) < where for t in range(frames))
    assert kept.shape[-1] == expected
    assert torch.equal(kept, codes[..., :expected])


@SETTINGS
@given(data=st.data(), vocab=vocabs, name=st.sampled_from(["flatten", "delay"]), frames=st.integers(1, 8))
def test_cut_sequences_are_rejected_or_repaired_to_the_complete_frames(data, vocab, name, frames):
    K = data.draw(st.integers(1, vocab.num_codebooks))
    pattern = get_pattern(name, K)
    codes = torch.randint(0, vocab.cardinality, (1, K, frames), generator=torch.Generator().manual_seed(K))
    ids = pattern.codes_to_ids(codes, vocab)
    cut = data.draw(st.integers(0, ids.shape[1] - 1))
    if pattern.num_frames(cut) is None:
        with pytest.raises(BridgeError):
            pattern.ids_to_codes(ids[:, :cut], vocab)
    kept = pattern.ids_to_codes(ids[:, :cut], vocab, repair="truncate")
    expected = sum(last_position(pattern, t) < cut for t in range(frames))
    assert torch.equal(kept, codes[..., :expected])


@SETTINGS
@given(vocab=vocabs, token=st.text(max_size=30))
def test_any_string_is_a_token_or_a_bridge_error(vocab, token):
    try:
        token_id = vocab.token_id(token)
    except BridgeError as error:
        assert "\n" not in str(error)
    else:
        assert vocab.audio_base <= token_id < vocab.size and vocab.token_string(token_id) == token


def token_texts(vocab: AudioVocab):
    pieces = st.one_of(
        st.builds(vocab.token_string, st.integers(vocab.audio_base, vocab.size - 1)),
        st.integers(-(10**25), 10**25).map(str),
        st.sampled_from([" ", ",", "\n", "<|", "|>", "<|a0_|>", "<|a1_00001|>", "\u0663", "_", "<||>", "x"]),
        st.text(max_size=4),
    )
    return st.lists(pieces, max_size=20).map("".join)


@SETTINGS
@given(data=st.data(), vocab=vocabs)
def test_detokenize_parser_returns_int64_ids_or_a_bridge_error(data, vocab):
    text = data.draw(token_texts(vocab))
    try:
        ids = parse_tokens(text, vocab)
    except BridgeError as error:
        assert str(error) and "\n" not in str(error)
        return
    torch.tensor(ids, dtype=torch.long)  # what detokenize does next: must not overflow
    assert vocab.start_id not in ids and vocab.end_id not in ids
    if "<|" in text:
        assert all(vocab.audio_base <= i < vocab.size for i in ids)
        assert parse_tokens(vocab.ids_to_text(ids), vocab) == ids


@pytest.mark.parametrize("text", [str(INT64), str(-INT64 - 1), "1" + "0" * 40, "5 " + "9" * 30])
def test_ids_beyond_int64_are_a_bridge_error(text):  # regression: was a ValueError traceback from torch.tensor
    with pytest.raises(BridgeError, match="out of range"):
        parse_tokens(text, AudioVocab(262_144, 4))


def test_detokenize_parser_memory_does_not_follow_forged_numbers():
    vocab = AudioVocab(262_144, 32)
    text = "<|a" + "9" * 4000 + "_0001|> " + "<|a1_" + "9" * 4000 + "|>"
    tracemalloc.start()
    try:
        with pytest.raises(BridgeError):
            parse_tokens(text, vocab)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024


# ---------------------------------------------------------------------------------------------- .ecdc, beyond bytes


def ecdc(header: bytes, payload: bytes = b"", version: int = 0, size: int | None = None) -> bytes:
    return b"ECDC" + bytes([version]) + struct.pack(">I", len(header) if size is None else size) + header + payload


@pytest.mark.parametrize("version", [1, 2, 127, 255])
def test_unknown_container_versions_are_refused(version):
    with pytest.raises(ContainerError, match=f"unsupported .ecdc version {version}"):
        read_ecdc(io.BytesIO(ecdc(b'{"m": "encodec_24khz", "al": 10, "nc": 2, "lm": false}', bytes(5), version)))


@pytest.mark.parametrize("size", [2**32 - 1, 2**20 + 1, 2**20])
def test_forged_header_sizes_fail_before_reading(size):
    tracemalloc.start()
    try:
        with pytest.raises(ContainerError, match="header"):
            read_ecdc(io.BytesIO(ecdc(b'{"m": "encodec_24khz"}', size=size)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


def test_newer_format_version_is_refused():
    header = b'{"m": "encodec_24khz", "al": 10, "nc": 2, "lm": false, "v": 99, "crc": "00000000"}'
    with pytest.raises(ContainerError, match="newer format version"):
        read_ecdc(io.BytesIO(ecdc(header, bytes(3))), META_LAYOUTS)


# ---------------------------------------------------------------------------------------------- both CLIs, end to end


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    """A tiny codec's weights and a valid 0.3 s `.ecdc` it made: (weights, ecdc bytes)."""
    from codec.audio import write_audio
    from codec.models.weights import export_frame_codec
    from codec.pipeline import compress
    from codec.registry import load_codec
    from tests.conftest import tiny_frame_codec

    folder = tmp_path_factory.mktemp("tiny")
    weights = folder / "tiny.safetensors"
    export_frame_codec(tiny_frame_codec(), weights)
    write_audio(folder / "in.wav", torch.randn(1, 7200) * 0.1, 24_000)
    compress(load_codec(str(weights)), folder / "in.wav", folder / "in.ecdc", 3.0)
    return weights, (folder / "in.ecdc").read_bytes()


def damaged(data: bytes) -> dict[str, bytes]:
    end = 9 + struct.unpack(">I", data[5:9])[0]
    flipped = bytearray(data)
    flipped[end + 3] ^= 0x10
    return {
        "empty": b"",
        "random": bytes(range(256)) * 3,
        "magic_only": b"ECDC",
        "cut_header": data[: end - 5],
        "cut_codes": data[: end + 4],
        "extra_bytes": data + b"\0",
        "bit_flip": bytes(flipped),
        "version_1": data[:4] + b"\x01" + data[5:],
        "huge_header": data[:5] + b"\xff\xff\xff\xff" + data[9:],
        "longer_sha": data.replace(b'"sha": "', b'"sha": "0', 1),
        "wav_bytes": b"RIFF" + bytes(60),
    }


@pytest.mark.parametrize("case", list(damaged(b"ECDC\0\0\0\0\x02{}" + bytes(16))))
def test_decompress_of_a_damaged_file_is_one_line_and_exit_1(tiny_file, tmp_path, capsys, case):
    from codec.__main__ import main

    weights, data = tiny_file
    source, out = tmp_path / "bad.ecdc", tmp_path / "out.wav"
    source.write_bytes(damaged(data)[case])
    assert main(["decompress", str(source), str(out), "--model", str(weights)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.ecdc"]  # no output, no leftover temporary file


def test_clis_exit_1_without_traceback_in_a_real_process(tiny_file, tmp_path):
    weights, data = tiny_file
    (tmp_path / "bad.ecdc").write_bytes(data[:-3])
    (tmp_path / "bad.txt").write_text("<|audio_start|> <|a0_0001|> <|a1_0002|> " + "9" * 30)
    commands = [
        [sys.executable, "-m", "codec", "decompress", "bad.ecdc", "out.wav", "--model", str(weights)],
        [sys.executable, "-m", "audiolm", "detokenize", "bad.txt", "out.wav", "--model", str(weights), "--quiet"],
    ]
    for command in commands:
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                              env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
        assert done.returncode == 1, done.stderr
        assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
        assert not (tmp_path / "out.wav").exists()


@SETTINGS
@given(text=st.lists(st.sampled_from([
    "<|a0_0001|>", "<|a1_1023|>", "<|a2_0000|>", "<|a3_0512|>", "<|a4_0001|>", "<|audio_pad|>", "<|audio_start|>",
    "<|audio_end|>", "262144", "263168", "262145", "-1", "99999999999999999999", " ", ",", "\n", "<|", "x", "0",
]), max_size=40).map("".join))
def test_detokenize_cli_on_hostile_text(text):
    from audiolm.__main__ import main

    assume(text.strip())
    stub = StubCodec()
    out = Path(f"/tmp/robustness-detok-{id(stub)}.wav")
    sys_stdin, sys.stdin = sys.stdin, io.StringIO(text)
    try:
        import audiolm.cli_tokens as cli_tokens

        real, cli_tokens.load_codec_by_name = cli_tokens.load_codec_by_name, lambda name: stub
        try:
            code = main(["detokenize", "-", str(out), "--force", "--quiet"])
        finally:
            cli_tokens.load_codec_by_name = real
    finally:
        sys.stdin = sys_stdin
    assert code in (0, 1)
    assert out.exists() == (code == 0)
    out.unlink(missing_ok=True)


class StubCodec:
    """The least `detokenize` needs from a codec: 4 codebooks of 1024 codes, 8 samples a frame of silence."""

    max_codebooks, cardinality, sample_rate, frame_rate = 4, 1024, 8000, 1000

    class weights:  # noqa: N801 - mirrors `Codec.weights`
        name, sha256 = "stub", "0" * 64

    def codebooks_for(self, bandwidth: float) -> int:
        return 4

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        assert codes.dim() == 3 and codes.shape[1] <= 4 and codes.shape[-1] > 0
        return torch.zeros(1, 1, codes.shape[-1] * 8)
