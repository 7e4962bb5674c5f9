"""`audiolm prepare`: shards hold exactly the codec's codes, resume, split across workers, skip unreadable files."""

import csv

import pyarrow.parquet as pq
import pytest
import torch

import audiolm.cli_tokens as cli_tokens
from audiolm.__main__ import main
from audiolm.data import (
    PrepareConfig,
    ShardError,
    list_inputs,
    load_tokens,
    parse_shard,
    prepare,
    read_shard_record,
)
from codec.audio import load_for_model
from tests.audiolm.lm_helpers import BANDWIDTH, make_shards, periodic_codes, write_clip


def clips(n: int = 5) -> dict[str, torch.Tensor]:
    out = {f"train/a{i}.wav": torch.randint(0, 1024, (4, 10 + 3 * i), generator=torch.Generator().manual_seed(i))
           for i in range(n)}
    out["valid/v0.wav"] = periodic_codes(12)
    return out


def test_shards_hold_the_codes_of_each_file(tmp_path, fake_codec):
    data = clips()
    shards = make_shards(tmp_path, fake_codec, data, files_per_shard=2)
    assert sorted(p.name for p in shards.iterdir()) == ["part-00000.parquet", "part-00001.parquet",
                                                        "part-00002.parquet"]
    ds = load_tokens(shards)
    assert (ds.num_codebooks, ds.max_codebooks, ds.frame_rate, ds.bandwidth) == (4, 32, 75, BANDWIDTH)
    assert ds.codec_name == "fake_24khz" and ds.codec_sha256 == "f" * 64
    got = {e.source: e for e in ds.examples}
    assert set(got) == set(data)
    for name, codes in data.items():
        assert torch.equal(got[name].codes, codes), name
        assert got[name].split == name.split("/")[0]
    assert ds.split("valid").num_frames == 12 and ds.splits == ["train", "valid"]
    row = pq.read_table(shards / "part-00000.parquet").to_pylist()[0]
    assert row["num_frames"] == len(row["codes"][0]) and abs(row["duration"] - row["num_frames"] / 75) < 1e-9


def test_shards_are_readable_by_the_datasets_library(tmp_path, fake_codec):
    from datasets import load_dataset

    shards = make_shards(tmp_path, fake_codec, clips(2))
    ds = load_dataset("parquet", data_files=str(shards / "*.parquet"), split="train",
                      cache_dir=str(tmp_path / "hf"))
    assert ds.num_rows == 3 and {"codes", "source", "split", "codec_sha256", "bandwidth"} <= set(ds.column_names)


def test_unreadable_files_are_reported_and_skipped(tmp_path, fake_codec, capsys):
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "broken.wav").write_bytes(b"RIFF nonsense")
    report_shards = make_shards(tmp_path, fake_codec, clips(2))
    ds = load_tokens(report_shards)
    assert "broken.wav" not in {e.source for e in ds.examples} and len(ds.examples) == 3
    assert "skipping broken.wav" in capsys.readouterr().err


def test_resume_skips_complete_shards_and_redoes_damaged_ones(tmp_path, fake_codec):
    data = clips()
    shards = make_shards(tmp_path, fake_codec, data, files_per_shard=2)
    config = PrepareConfig(bandwidth=BANDWIDTH, files_per_shard=2)
    again = prepare(tmp_path / "audio", shards, fake_codec, config, progress=False)
    assert again.written == [] and len(again.skipped) == 3
    damaged = shards / "part-00001.parquet"
    damaged.write_bytes(damaged.read_bytes()[:-40])
    with pytest.raises(ShardError, match="not a complete token shard"):
        read_shard_record(damaged)
    fixed = prepare(tmp_path / "audio", shards, fake_codec, config, progress=False)
    assert fixed.written == [damaged] and len(fixed.skipped) == 2
    assert len(load_tokens(shards).examples) == len(data)
    with pytest.raises(ShardError, match="other inputs or settings"):
        prepare(tmp_path / "audio", shards, fake_codec, PrepareConfig(bandwidth=1.5, files_per_shard=2),
                progress=False)


def test_workers_split_the_shards_deterministically(tmp_path, fake_codec):
    for name, codes in clips(7).items():
        write_clip(tmp_path / "audio" / name, codes, fake_codec)
    names = []
    for i in range(3):
        report = prepare(tmp_path / "audio", tmp_path / "split", fake_codec,
                         PrepareConfig(bandwidth=BANDWIDTH, files_per_shard=2, shard=(i, 3)), progress=False)
        names.append({p.name for p in report.written})
    whole = prepare(tmp_path / "audio", tmp_path / "whole", fake_codec,
                    PrepareConfig(bandwidth=BANDWIDTH, files_per_shard=2), progress=False)
    assert names == [{"part-00000.parquet", "part-00003.parquet"}, {"part-00001.parquet"}, {"part-00002.parquet"}]
    assert set().union(*names) == {p.name for p in whole.written}
    for p in whole.written:
        assert (tmp_path / "split" / p.name).read_bytes() == p.read_bytes()  # the same bytes, whoever wrote it


def test_manifest_split_and_text_are_kept_and_long_files_chunked(tmp_path, fake_codec):
    corpus = tmp_path / "corpus"
    codes = torch.randint(0, 1024, (4, 200), generator=torch.Generator().manual_seed(0))
    write_clip(corpus / "x" / "long.wav", codes, fake_codec)
    write_clip(corpus / "x" / "short.wav", codes[:, :30], fake_codec)
    with open(corpus / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerows([["path", "split", "caption"], ["x/long.wav", "valid", "a long one"], ["x/short.wav", "train", ""]])
    assert list_inputs(corpus)[0].text == "a long one"
    prepare(corpus, tmp_path / "shards", fake_codec, PrepareConfig(bandwidth=BANDWIDTH, chunk_seconds=0.64),
            progress=False)
    ds = load_tokens(tmp_path / "shards")
    chunks = [e for e in ds.examples if e.source == "x/long.wav"]
    assert [c.codes.shape[1] for c in chunks] == [48, 48, 48, 48, 8]  # 0.64 s = 48 frames of 320 samples
    assert [c.start_seconds for c in chunks] == pytest.approx([0, 0.64, 1.28, 1.92, 2.56])
    assert torch.equal(torch.cat([c.codes for c in chunks], 1), codes)
    assert {(c.split, c.text) for c in chunks} == {("valid", "a long one")}
    assert load_tokens(tmp_path / "shards", splits=["train"]).examples[0].source == "x/short.wav"


def test_cli_prepare_and_its_one_line_errors(tmp_path, fake_codec, monkeypatch, capsys):
    monkeypatch.setattr(cli_tokens, "load_codec_by_name", lambda name: fake_codec)
    for name, codes in clips(2).items():
        write_clip(tmp_path / "audio" / name, codes, fake_codec)
    rc = main(["prepare", str(tmp_path / "audio"), "--out", str(tmp_path / "s"), "-b", "3", "--quiet"])
    out = capsys.readouterr()
    assert rc == 0 and "1 shard(s) written" in out.out and "3 file(s)" in out.out
    wav, _ = load_for_model(tmp_path / "audio" / "valid" / "v0.wav", 24000, 1)
    ds = load_tokens(tmp_path / "s", splits=["valid"])
    assert torch.equal(ds.examples[0].codes, fake_codec.encode(wav, 3.0).codes[0])
    for argv, message in [
        (["--shard", "2/2"], "need 0 <= i < n"),
        (["-b", "5"], "does not offer 5 kbps"),
    ]:
        rc = main(["prepare", str(tmp_path / "audio"), "--out", str(tmp_path / "t"), "--quiet", *argv])
        err = capsys.readouterr().err
        assert rc == 1 and message in err and len(err.strip().splitlines()) == 1
    assert main(["prepare", str(tmp_path / "nowhere"), "--out", str(tmp_path / "t")]) == 1
    assert parse_shard("1/4") == (1, 4)
    with pytest.raises(ShardError, match="no token shards"):
        load_tokens(tmp_path / "t")
