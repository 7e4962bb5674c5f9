"""Training: targets of each pattern, loss == the bridge's restricted loss, learning, exact resume, LoRA, CLI."""

import csv

import pytest
import torch
from safetensors.torch import load_file

import audiolm.train as train_module
from audiolm.__main__ import main
from audiolm.data import load_tokens
from audiolm.model import codebook_rows, extend_model, load_bridge, restricted_forward
from audiolm.patterns import get_pattern
from audiolm.train import (
    AudioLM,
    TrainConfig,
    WindowSource,
    audio_stream,
    collate,
    lr_at,
    make_window,
    text_prefix,
    train,
)
from audiolm.vocab import AudioVocab
from tests.audiolm.lm_helpers import make_shards, periodic_codes, tiny_base


@pytest.fixture
def vocab():
    return AudioVocab(audio_base=512, num_codebooks=8)


@pytest.mark.parametrize("pattern", ["flatten", "delay"])
def test_stream_targets_are_the_codes_and_the_stop(vocab, pattern):
    K, T = 3, 5
    codes = torch.randint(0, 1024, (K, T), generator=torch.Generator().manual_seed(0))
    p = get_pattern(pattern, K)
    s = audio_stream(codes, p, vocab)
    assert s.ids[-1] == vocab.end_id and torch.equal(s.ids[:-1], p.codes_to_ids(codes[None], vocab)[0])
    coded = s.books >= 0
    code_pos = coded & (s.cols < 1024)
    assert int(code_pos.sum()) == K * T  # every code is predicted, over its own codebook's rows
    assert torch.equal(s.ids[code_pos], vocab.audio_base + s.books[code_pos] * 1024 + s.cols[code_pos])
    stops = (coded & (s.cols >= 1024)).nonzero().flatten().tolist()
    if pattern == "flatten":
        assert stops == [K * T] and s.cols[K * T] == 1024 + 1  # <|audio_end|> right after the last frame
    else:  # the pad opening the tail, in codebook 0's slot of step T; the rest of the tail is forced
        assert stops == [T * K] and s.ids[T * K] == vocab.pad_id and s.books[T * K] == 0
        assert int((s.books == -1).sum()) == len(s.ids) - K * T - 1


def test_lr_schedule():
    c = TrainConfig(steps=110, warmup=10, min_lr_ratio=0.1)
    assert [lr_at(s, c) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert lr_at(60, c) == pytest.approx(0.55) and lr_at(109, c) == pytest.approx(0.1, abs=1e-3)


def test_windows_have_the_prefix_and_fit(vocab, tokenizer_factory, fake_codec, tmp_path):
    tok = tokenizer_factory()
    shards = make_shards(tmp_path, fake_codec, {"train/a.wav": periodic_codes(40)})
    ds = load_tokens(shards)
    ds.examples[0].text = "w5 w6"
    source = WindowSource(ds, get_pattern("flatten", 4), vocab, tok, seq_len=30, text_conditioning=True)
    assert text_prefix(tok, "w5 w6") == [2, 5, 6]
    g = torch.Generator().manual_seed(0)
    for w in [source.random(g) for _ in range(20)] + source.sequential():
        assert len(w.ids) <= 30 and w.ids[:4].tolist() == [2, 5, 6, vocab.start_id]
        assert (w.ids[4] - vocab.audio_base) // 1024 == 0  # windows start on a frame
    seq = source.sequential()
    assert sum(int((w.books >= 0).sum()) for w in seq) == 40 * 4 + 1  # every code and the end, exactly once


def test_loss_equals_the_bridge_restricted_loss(vocab, gemma_factory):
    model = gemma_factory()
    extend_model(model, vocab)
    K = 4
    codes = torch.randint(0, 1024, (K, 6), generator=torch.Generator().manual_seed(1))
    stream = audio_stream(codes, get_pattern("flatten", K), vocab)
    window = make_window([], stream, 0, 18, vocab)  # <|audio_start|> + 4.5 frames
    batch = collate([window])
    out = AudioLM(model, vocab, K)(batch.input_ids, batch.attention_mask, batch.books, batch.cols)
    labels = batch.input_ids.clone()
    labels[:, 0] = -100
    rows = codebook_rows(vocab, "flatten", K, window.ids.shape[0])
    ref = restricted_forward(model, batch.input_ids, rows, labels=labels)
    torch.testing.assert_close(out.loss, ref.loss, rtol=1e-5, atol=1e-5)
    assert out.count.tolist() == [5, 5, 4, 4, 0]


def _weights(run):
    return load_file(str(run / "model.safetensors"))


@pytest.mark.parametrize("lora", [False, True])
def test_smoke_train_resume_is_exact(tmp_path, fake_codec, gemma_factory, tokenizer_factory, monkeypatch, lora):
    clips = {f"train/{i}.wav": periodic_codes(30, offset=i) for i in range(3)}
    clips["valid/v.wav"] = periodic_codes(20)
    shards = make_shards(tmp_path, fake_codec, clips)
    base = tiny_base(tmp_path / "base", gemma_factory, tokenizer_factory)
    config = TrainConfig(base=str(base), steps=4, seq_len=40, batch_size=2, save_every=2, eval_every=2, log_every=1,
                         warmup=2, lora=lora, lora_rank=4, pattern="delay" if lora else "flatten")
    straight = train(shards, tmp_path / "a", config, progress=False)
    assert straight.step == 4 and straight.resumed_from == 0

    real = train_module.lr_at

    def crash(step, c):
        if step == 2:
            raise KeyboardInterrupt
        return real(step, c)

    monkeypatch.setattr(train_module, "lr_at", crash)
    with pytest.raises(KeyboardInterrupt):
        train(shards, tmp_path / "b", config, progress=False)
    assert not (tmp_path / "b" / "bridge.json").exists() and (tmp_path / "b" / "checkpoint").is_dir()
    monkeypatch.setattr(train_module, "lr_at", real)
    resumed = train(shards, tmp_path / "b", config, progress=False)
    assert resumed.resumed_from == 2 and resumed.step == 4
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with open(tmp_path / "b" / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["step"], r["split"]) for r in rows] == [("1", "train"), ("2", "train"), ("2", "valid"),
                                                       ("3", "train"), ("4", "train"), ("4", "valid")]
    assert {"bits_k0", "bits_k3", "bits_per_second", "bits_stop"} <= set(rows[0])
    bridge = load_bridge(tmp_path / "b")
    assert bridge.config.pattern == config.pattern and bridge.config.num_codebooks == 4
    assert bridge.config.extra["train"]["lora"] is lora and "lora" not in str(list(a)).lower()
    text_rows = bridge.model.get_input_embeddings().weight[:512]
    assert torch.equal(text_rows, gemma_factory(seed=0).get_input_embeddings().weight)  # text rows never move


def test_training_learns_a_predictable_signal(tmp_path, fake_codec, gemma_factory, tokenizer_factory):
    clips = {f"train/{i}.wav": periodic_codes(60, offset=i) for i in range(2)}
    clips["valid/v.wav"] = periodic_codes(30, offset=1)
    shards = make_shards(tmp_path, fake_codec, clips)
    base = tiny_base(tmp_path / "base", gemma_factory, tokenizer_factory)
    config = TrainConfig(base=str(base), steps=40, seq_len=64, batch_size=4, lr=3e-3, audio_lr=3e-2, warmup=5,
                         eval_every=40, log_every=40)
    result = train(shards, tmp_path / "run", config, progress=False)
    # untrained: ~log2(1027) = 10 bits per code; the signal needs log2(3) = 1.6 bits for the phase, then ~0
    assert result.valid["loss"] < 1.0 and result.valid["bits_per_second"] < 0.2 * 3000


def test_cli_train_and_errors(tmp_path, fake_codec, gemma_factory, tokenizer_factory, capsys):
    shards = make_shards(tmp_path, fake_codec, {"train/a.wav": periodic_codes(20)})
    base = tiny_base(tmp_path / "base", gemma_factory, tokenizer_factory)
    argv = ["train", str(shards), "--out", str(tmp_path / "run"), "--base", str(base), "--steps", "2",
            "--seq-len", "32", "--batch-size", "1", "--quiet"]
    assert main(argv) == 0
    assert "step 2, train loss" in capsys.readouterr().out
    assert main([*argv[:-1], "--pattern", "delay"]) == 1  # other settings in the same run folder
    assert "other settings (pattern)" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "none"), "--out", str(tmp_path / "r2"), "--base", str(base)]) == 1
    err = capsys.readouterr().err
    assert "no token shards" in err and len(err.strip().splitlines()) == 1
