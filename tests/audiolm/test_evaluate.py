"""`audiolm eval`: exact n-gram baselines, a consistent report, `bits_per_second`, and the CLI."""

import json
import math

import pytest
import torch

from audiolm.__main__ import main
from audiolm.data import TokenDataset, TokenExample
from audiolm.evaluate import bits_per_second, evaluate, ngram_baselines
from audiolm.train import TrainConfig, train
from tests.audiolm.lm_helpers import make_shards, periodic_codes, tiny_base


def dataset(*codes, card=4):
    examples = [TokenExample(torch.tensor(c), "x", "train") for c in codes]
    return TokenDataset(examples, "c", "s", 1.0, len(codes[0]), 10.0, 8, cardinality=card)


def test_baselines_exact_values():
    train_set = dataset([[0, 0, 1], [2, 3, 3]])  # K = 2, cardinality 4
    test_set = dataset([[0, 1], [2, 2]])
    b = ngram_baselines(train_set, test_set)
    # unigram k0: counts+1 = [3, 2, 1, 1] / 7; k1: [1, 1, 2, 3] / 7
    assert b.unigram == pytest.approx([-(math.log2(3 / 7) + math.log2(2 / 7)) / 2,
                                       -(math.log2(2 / 7) + math.log2(2 / 7)) / 2])
    # same codebook: k0 after 0: {0: 1, 1: 1} + 1 -> p(1|0) = 2/6; k1 after 2: {3: 1} + 1 -> p(2|2) = 1/5
    assert b.bigram_same_codebook == pytest.approx([-(math.log2(3 / 7) + math.log2(2 / 6)) / 2,
                                                    -(math.log2(2 / 7) + math.log2(1 / 5)) / 2])
    # previous position: train stream 0,2,0,3,1,3 gives k1 pairs 0>2, 0>3, 1>3 and k0 pairs 2>0, 3>1; the test
    # stream 0,2,1,2: the first code by unigram, p_k1(2|0) = 2/6, p_k0(1|2) = 1/5, p_k1(2|1) = 1/5
    assert b.bigram_previous_position == pytest.approx([-(math.log2(3 / 7) + math.log2(1 / 5)) / 2,
                                                        -(math.log2(2 / 6) + math.log2(1 / 5)) / 2])


def test_bigram_beats_unigram_on_a_periodic_signal():
    train_set = dataset(periodic_codes(3000, 2).tolist(), card=1024)
    test_set = dataset(periodic_codes(50, 2, offset=1).tolist(), card=1024)
    b = ngram_baselines(train_set, test_set)
    assert all(s < u - 0.9 for s, u in zip(b.bigram_same_codebook, b.unigram, strict=True))


def test_eval_report_and_bits_per_second(tmp_path, fake_codec, gemma_factory, tokenizer_factory, capsys):
    clips = {f"train/{i}.wav": periodic_codes(40, offset=i) for i in range(2)}
    clips["valid/v.wav"] = periodic_codes(25, offset=2)
    shards = make_shards(tmp_path, fake_codec, clips)
    base = tiny_base(tmp_path / "base", gemma_factory, tokenizer_factory)
    run = tmp_path / "run"
    train(shards, run, TrainConfig(base=str(base), steps=2, seq_len=48, batch_size=2, warmup=1), progress=False)
    report = evaluate(run, shards)
    assert report.seconds == pytest.approx(25 / 75) and report.codec_bits_per_second == 4 * 10 * 75
    assert report.lm_bits_per_second == pytest.approx(75 * sum(report.lm_bits))
    assert set(report.baseline_bits_per_second) == {"unigram", "bigram_same_codebook", "bigram_previous_position"}
    assert report.beats_baselines == (report.lm_bits_per_second < min(report.baseline_bits_per_second.values()))
    assert "audio LM" in report.table() and "bigram (same codebook)" in report.table()
    # the same number through the lazy API, from the codes alone
    bps = bits_per_second(run, periodic_codes(25, offset=2)[None], fake_codec)
    assert bps == pytest.approx(report.lm_bits_per_second, rel=1e-4)
    assert main(["eval", str(run), str(shards), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["lm_bits_per_second"] == pytest.approx(report.lm_bits_per_second, rel=1e-6)
    assert main(["eval", str(run), str(shards), "--split", "test"]) == 1
    assert "no 'test' split" in capsys.readouterr().err
    with pytest.raises(Exception, match="would be noise"):
        bits_per_second(run, periodic_codes(5)[None], type(fake_codec)(sha256="0" * 64))
