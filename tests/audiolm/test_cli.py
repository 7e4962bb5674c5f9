"""`audiolm tokenize` / `detokenize` with a fake codec: exact inverses, ids, and one-line errors."""

import pytest
import torch

import audiolm.cli_tokens as cli_tokens
from audiolm.__main__ import COMMANDS, get_parser, main
from audiolm.patterns import get_pattern
from audiolm.vocab import GEMMA3_VOCAB_SIZE, AudioVocab
from codec.audio import load_for_model, write_audio


@pytest.fixture
def wav_file(tmp_path, fake_codec):
    """A 0.2 s file whose fake codes are random (15 frames)."""
    codes = torch.randint(0, 1024, (1, 32, 15), generator=torch.Generator().manual_seed(0))
    wav = fake_codec.decode_codes(codes, length=4800)
    path = tmp_path / "in.wav"
    write_audio(path, wav[0], fake_codec.sample_rate)
    return path


@pytest.fixture(autouse=True)
def use_fake_codec(monkeypatch, fake_codec):
    monkeypatch.setattr(cli_tokens, "load_codec_by_name", lambda name: fake_codec)


def run(argv, capsys):
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_parser_is_a_dispatcher():
    assert {"tokenize", "detokenize"} <= set(COMMANDS)
    args = get_parser().parse_args(["tokenize", "x.wav", "-b", "6", "--pattern", "delay"])
    assert (args.command, args.bandwidth, args.pattern) == ("tokenize", 6.0, "delay")


@pytest.mark.parametrize("pattern", ["flatten", "delay"])
def test_tokenize_then_detokenize_gives_the_same_codes(tmp_path, capsys, wav_file, fake_codec, pattern):
    rc, text, err = run(["tokenize", wav_file, "-b", 3, "--pattern", pattern], capsys)
    assert rc == 0 and "fake_24khz" in err
    vocab = AudioVocab.for_codec(fake_codec, GEMMA3_VOCAB_SIZE)
    ids = vocab.text_to_ids(text)
    assert ids[0] == vocab.start_id and ids[-1] == vocab.end_id
    wav, _ = load_for_model(wav_file, 24000, 1)
    codes = fake_codec.encode(wav, 3.0).codes  # [1, 4, 15]
    assert torch.equal(get_pattern(pattern, 4).ids_to_codes(torch.tensor(ids[1:-1]), vocab), codes)
    (tmp_path / "tokens.txt").write_text(text)
    rc, _, err = run(["detokenize", tmp_path / "tokens.txt", tmp_path / "out.wav"], capsys)
    assert rc == 0 and f"15 frames x 4 codebooks ({pattern})" in err
    rc, again, _ = run(["tokenize", tmp_path / "out.wav", "-b", 3, "--pattern", pattern], capsys)
    assert again == text


def test_ids_output_round_trips(tmp_path, capsys, wav_file):
    rc, text, _ = run(["tokenize", wav_file, "-b", 1.5, "--ids", "--no-markers"], capsys)
    ids = [int(x) for x in text.split()]
    assert len(ids) == 30 and ids[0] // 1024 == GEMMA3_VOCAB_SIZE // 1024 and ids[1] - ids[0] >= 1024 - 1023
    (tmp_path / "ids.txt").write_text(text)
    rc, _, err = run(["detokenize", tmp_path / "ids.txt", tmp_path / "out.wav", "--quiet"], capsys)
    assert rc == 0 and err == ""
    rc, again, _ = run(["tokenize", tmp_path / "out.wav", "-b", 1.5, "--ids", "--no-markers"], capsys)
    assert again == text


def one_line_error(rc, err):
    """Exit 1 and a single `error: ...` line (after at most the line naming the codec weights)."""
    lines = err.splitlines()
    return rc == 1 and lines[-1].startswith("error: ") and all(x.startswith("codec: ") for x in lines[:-1])


def test_truncated_tokens_are_an_error_unless_repaired(tmp_path, capsys, wav_file):
    _, text, _ = run(["tokenize", wav_file, "-b", 3, "--no-markers"], capsys)
    (tmp_path / "cut.txt").write_text(text.strip()[: -len("<|a0_0000|>")])
    rc, _, err = run(["detokenize", tmp_path / "cut.txt", tmp_path / "out.wav", "-b", 3], capsys)
    assert one_line_error(rc, err) and "truncated mid-frame" in err
    rc, _, err = run(
        ["detokenize", tmp_path / "cut.txt", tmp_path / "out.wav", "-b", 3, "--repair", "truncate"], capsys
    )
    assert rc == 0 and "14 frames x 4 codebooks" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["tokenize", "{wav}", "-b", 2], "does not offer 2 kbps"),
        (["tokenize", "{tmp}/missing.wav", "-b", 3], "missing.wav"),
        (["detokenize", "{tmp}/missing.txt", "{tmp}/o.wav"], "cannot read"),
        (["detokenize", "{tmp}/text.txt", "{tmp}/o.wav"], "unexpected text"),
        (["detokenize", "{tmp}/start.txt", "{tmp}/o.wav"], "without <|audio_end|>"),
        (["detokenize", "{tmp}/textids.txt", "{tmp}/o.wav"], "not an audio token"),
        (["detokenize", "{tmp}/text.txt", "{wav}"], ""),
    ],
)
def test_errors_are_one_line(tmp_path, capsys, wav_file, argv, message):
    (tmp_path / "text.txt").write_text("hello <|a0_0001|>")
    (tmp_path / "start.txt").write_text("<|audio_start|><|a0_0001|>")
    (tmp_path / "textids.txt").write_text("5, 262144")
    argv = [a.format(wav=wav_file, tmp=tmp_path) if isinstance(a, str) else a for a in argv]
    rc, _, err = run(argv, capsys)
    assert one_line_error(rc, err) and message in err, err


def test_existing_output_needs_force(tmp_path, capsys, wav_file):
    (tmp_path / "t.txt").write_text("<|a0_0001|><|a1_0002|>")
    (tmp_path / "o.wav").write_bytes(b"")
    rc, _, err = run(["detokenize", tmp_path / "t.txt", tmp_path / "o.wav"], capsys)
    assert one_line_error(rc, err) and "--force" in err
    rc, _, _ = run(["detokenize", tmp_path / "t.txt", tmp_path / "o.wav", "--force"], capsys)
    assert rc == 0 and (tmp_path / "o.wav").stat().st_size > 44
