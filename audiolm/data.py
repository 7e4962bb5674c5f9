"""Token datasets: audio files -> codec codes `[K, T]` in Parquet shards, and back into memory for training.

`prepare` lists the inputs deterministically (a corpus `manifest.csv` with `path` and `split` columns, or every audio
file under a directory, split `train` unless a folder on its path is named `valid`/`validation`/`test`), groups them
into shards of `files_per_shard` files (shard j = files j*F .. j*F+F-1 of the sorted list) and encodes the shards that
belong to this worker (`--shard i/n`: shards j with j % n == i, 0 <= i < n), so any number of machines can split the
work with no coordination. Each shard is written atomically (temp file + rename) with page checksums and a metadata
record naming its inputs, codec (name + sha256) and bandwidth; an existing shard with the same record is verified and
skipped, so an interrupted run resumes where it stopped. Unreadable files are reported and skipped, never fatal.

A shard is a plain Parquet file (`datasets.load_dataset("parquet", data_files=...)` reads it); one row per chunk:

    codes          list<list<int16>>   [K][T] codes of the chunk (codebook-major, like [K, T])
    num_codebooks  int32               K
    num_frames     int32               T
    source         string              input path (relative to the input directory)
    start_seconds  float64             where the chunk starts in the source
    duration       float64             seconds of audio in the chunk
    split          string              train / valid / test ...
    text           string              caption or transcript from the manifest ('' when there is none)
    codec          string              codec weights name
    codec_sha256   string              sha256 of the codec weights
    bandwidth      float64             kbps
    frame_rate     float64             codec frames per second
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from codec.errors import CodecError

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".aiff", ".aif", ".au", ".wma", ".webm")
SPLIT_FOLDERS = {"train": "train", "valid": "valid", "validation": "valid", "dev": "valid", "test": "test"}
TEXT_COLUMNS = ("text", "caption", "transcript")
META_KEY = b"audiolm"
SHARD_FORMAT = 1
SHARD_GLOB = "part-*.parquet"


class ShardError(CodecError):
    """A token shard is missing, unreadable or inconsistent with its siblings."""


# ---- inputs ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AudioItem:
    """One input file: its path as listed (relative to the input directory), split and optional text."""

    path: str
    split: str = "train"
    text: str = ""


def _split_from_path(relative: Path) -> str:
    for part in reversed(relative.parts[:-1]):
        if part.lower() in SPLIT_FOLDERS:
            return SPLIT_FOLDERS[part.lower()]
    return "train"


def list_inputs(directory: str | Path, text_column: str | None = None) -> list[AudioItem]:
    """The inputs of `directory`, sorted by path: its `manifest.csv` rows if it has one, else its audio files.

    Args:
        directory: a folder of audio files (searched recursively), or a corpus folder with `manifest.csv`.
        text_column: manifest column to use as text (default: the first of `text`, `caption`, `transcript`).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise CodecError(f"{directory}: not a directory")
    manifest = directory / "manifest.csv"
    if manifest.is_file():
        with manifest.open(newline="") as f:
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            if "path" not in columns:
                raise CodecError(f"{manifest}: no 'path' column")
            if text_column and text_column not in columns:
                raise CodecError(f"{manifest}: no {text_column!r} column (columns: {', '.join(columns)})")
            text_column = text_column or next((c for c in TEXT_COLUMNS if c in columns), None)
            items = [
                AudioItem(row["path"], (row.get("split") or "train").strip(), (row.get(text_column) or "").strip()
                          if text_column else "")
                for row in reader
            ]
    else:
        if text_column:
            raise CodecError(f"--text-column needs a manifest.csv in {directory}")
        items = [
            AudioItem(str(p.relative_to(directory)), _split_from_path(p.relative_to(directory)))
            for p in directory.rglob("*")
            if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()
        ]
    items = sorted(set(items), key=lambda item: item.path)
    if not items:
        raise CodecError(f"{directory}: no audio files found")
    return items


def parse_shard(text: str) -> tuple[int, int]:
    """`'i/n'` -> (i, n) with 0 <= i < n."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise CodecError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if not 0 <= i < n:
        raise CodecError(f"--shard {text}: need 0 <= i < n")
    return i, n


# ---- preparing shards -----------------------------------------------------------------------------------------------
@dataclass
class PrepareConfig:
    """How audio becomes token shards.

    Args:
        bandwidth: codec bandwidth in kbps (sets K).
        chunk_seconds: cut files into chunks of at most this many seconds (None: whole files).
        files_per_shard: input files per shard (the unit of work and of resumption).
        shard: (i, n): this worker writes the shards j with j % n == i.
        text_column: manifest column used as text (None: auto).
    """

    bandwidth: float
    chunk_seconds: float | None = None
    files_per_shard: int = 32
    shard: tuple[int, int] = (0, 1)
    text_column: str | None = None


@dataclass
class PrepareReport:
    """What `prepare` did: shards written and skipped (already complete), files encoded and those that failed."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    files: int = 0
    chunks: int = 0
    seconds: float = 0.0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def _shard_record(items: list[AudioItem], codec, config: PrepareConfig) -> dict:
    digest = hashlib.sha256("\n".join(f"{i.path}\t{i.split}\t{i.text}" for i in items).encode()).hexdigest()
    return {
        "format": SHARD_FORMAT,
        "inputs_sha256": digest,
        "codec": codec.weights.name,
        "codec_sha256": codec.weights.sha256,
        "bandwidth": float(config.bandwidth),
        "chunk_seconds": config.chunk_seconds,
        "max_codebooks": int(codec.max_codebooks),
        "cardinality": int(codec.cardinality),
        "sample_rate": int(codec.sample_rate),
        "frame_rate": float(codec.frame_rate),
    }


def _encode_file(codec, path: Path, bandwidth: float, chunk_seconds: float | None) -> list[tuple[torch.Tensor, float,
                                                                                                    float]]:
    """(codes [K, T], start seconds, duration seconds) for each chunk of `path`."""
    from codec.audio import load_for_model

    wav, _ = load_for_model(path, codec.sample_rate, codec.channels)  # [1, C, S]
    S = wav.shape[-1]
    if S == 0:
        raise CodecError("no samples")
    step = S if not chunk_seconds else max(1, int(round(chunk_seconds * codec.sample_rate)))
    out = []
    with torch.inference_mode():
        for start in range(0, S, step):
            piece = wav[..., start : start + step]
            codes = codec.encode(piece, bandwidth).codes[0]  # [K, T]
            out.append((codes.to(torch.int16), start / codec.sample_rate, piece.shape[-1] / codec.sample_rate))
    return out


def _write_shard(path: Path, rows: list[dict], record: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from codec.audio import atomic_output

    schema = pa.schema([
        ("codes", pa.list_(pa.list_(pa.int16()))),
        ("num_codebooks", pa.int32()),
        ("num_frames", pa.int32()),
        ("source", pa.string()),
        ("start_seconds", pa.float64()),
        ("duration", pa.float64()),
        ("split", pa.string()),
        ("text", pa.string()),
        ("codec", pa.string()),
        ("codec_sha256", pa.string()),
        ("bandwidth", pa.float64()),
        ("frame_rate", pa.float64()),
    ])
    record = {**record, "rows": len(rows)}
    schema = schema.with_metadata({META_KEY: json.dumps(record).encode()})
    table = pa.Table.from_pylist(rows, schema=schema)
    with atomic_output(path, force=True) as tmp:
        pq.write_table(table, tmp, write_page_checksum=True, compression="zstd")


def read_shard_record(path: Path) -> dict:
    """The metadata record of a shard, after reading every page with checksum verification (`ShardError` if bad)."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path, page_checksum_verification=True)
        record = json.loads((table.schema.metadata or {})[META_KEY])
    except (OSError, ValueError, KeyError) as e:
        raise ShardError(f"{path}: not a complete token shard ({str(e).splitlines()[0][:200]})") from None
    if record.get("format", 0) > SHARD_FORMAT or record.get("rows") != table.num_rows:
        raise ShardError(f"{path}: shard metadata does not match its rows (truncated or newer format)")
    return record


def prepare(
    directory: str | Path,
    out: str | Path,
    codec,
    config: PrepareConfig,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> PrepareReport:
    """Encode this worker's shards of `directory` into `out` (see the module docstring); resumable."""
    from tqdm import tqdm

    log = log or (lambda message: print(message, file=sys.stderr))
    directory, out = Path(directory), Path(out)
    codec.codebooks_for(config.bandwidth)  # a clear error for a bandwidth the codec does not offer
    items = list_inputs(directory, config.text_column)
    out.mkdir(parents=True, exist_ok=True)
    F = max(1, config.files_per_shard)
    i, n = config.shard
    mine = [j for j in range(math.ceil(len(items) / F)) if j % n == i]
    report = PrepareReport()
    todo: list[tuple[Path, list[AudioItem], dict]] = []
    for j in mine:
        group = items[j * F : (j + 1) * F]
        path, record = out / shard_name(j), _shard_record(group, codec, config)
        if path.exists():
            try:
                old = read_shard_record(path)
            except ShardError as e:
                log(f"redoing {path.name}: {e}")
            else:
                if {k: old.get(k) for k in record} != record:
                    raise ShardError(
                        f"{path} was made from other inputs or settings (codec {old.get('codec')}, "
                        f"{old.get('bandwidth')} kbps); write to another --out directory"
                    )
                report.skipped.append(path)
                continue
        todo.append((path, group, record))
    bar = tqdm(total=sum(len(g) for _, g, _ in todo), unit="file", disable=not progress, desc="encoding")
    for path, group, record in todo:
        rows = []
        for item in group:
            source = Path(item.path) if Path(item.path).is_absolute() else directory / item.path
            try:
                chunks = _encode_file(codec, source, config.bandwidth, config.chunk_seconds)
            except (CodecError, OSError, RuntimeError, ValueError) as e:
                reason = str(e).splitlines()[0] if str(e) else type(e).__name__
                report.failed.append((item.path, reason))
                if progress:
                    bar.write(f"skipping {item.path}: {reason}", file=sys.stderr)
                else:
                    log(f"skipping {item.path}: {reason}")
                bar.update(1)
                continue
            for codes, start, duration in chunks:
                rows.append({
                    "codes": codes.tolist(),
                    "num_codebooks": codes.shape[0],
                    "num_frames": codes.shape[1],
                    "source": item.path,
                    "start_seconds": start,
                    "duration": duration,
                    "split": item.split,
                    "text": item.text,
                    "codec": codec.weights.name,
                    "codec_sha256": codec.weights.sha256,
                    "bandwidth": float(config.bandwidth),
                    "frame_rate": float(codec.frame_rate),
                })
                report.seconds += duration
            report.files += 1
            report.chunks += len(chunks)
            bar.update(1)
        _write_shard(path, rows, record)
        report.written.append(path)
    bar.close()
    return report


# ---- reading shards -------------------------------------------------------------------------------------------------
@dataclass
class TokenExample:
    """One chunk of codes: `codes` `[K, T]` (int64), with where it came from and its optional text."""

    codes: torch.Tensor
    source: str
    split: str
    text: str = ""
    start_seconds: float = 0.0


@dataclass
class TokenDataset:
    """Every chunk of a shard directory (one split, or all), with the codec and bandwidth they were made with."""

    examples: list[TokenExample]
    codec_name: str
    codec_sha256: str
    bandwidth: float
    num_codebooks: int
    frame_rate: float
    max_codebooks: int
    cardinality: int = 1024
    sample_rate: int | None = None

    @property
    def num_frames(self) -> int:
        return sum(e.codes.shape[1] for e in self.examples)

    @property
    def seconds(self) -> float:
        return self.num_frames / self.frame_rate

    def split(self, name: str) -> TokenDataset:
        return replace(self, examples=[e for e in self.examples if e.split == name])

    @property
    def splits(self) -> list[str]:
        return sorted({e.split for e in self.examples})


def shard_paths(directory: str | Path) -> list[Path]:
    paths = sorted(Path(directory).glob(SHARD_GLOB))
    if not Path(directory).is_dir() or not paths:
        raise ShardError(f"{directory}: no token shards ({SHARD_GLOB}); make them with `audiolm prepare`")
    return paths


def load_tokens(directory: str | Path, splits: Iterable[str] | None = None) -> TokenDataset:
    """Read and verify every shard of `directory`; keep only `splits` when given. All shards must agree on the
    codec, its weights and the bandwidth (`ShardError` otherwise)."""
    import pyarrow.parquet as pq

    wanted = set(splits) if splits is not None else None
    examples: list[TokenExample] = []
    first: dict | None = None
    K, frame_rate = None, None
    for path in shard_paths(directory):
        record = read_shard_record(path)
        if first is None:
            first = record
        elif (record["codec_sha256"], record["bandwidth"]) != (first["codec_sha256"], first["bandwidth"]):
            raise ShardError(
                f"{path.name} was made with {record['codec']} at {record['bandwidth']} kbps but other shards with "
                f"{first['codec']} at {first['bandwidth']} kbps"
            )
        columns = ["codes", "num_codebooks", "source", "split", "text", "start_seconds", "frame_rate"]
        for row in pq.read_table(path, columns=columns).to_pylist():
            K = K or row["num_codebooks"]
            frame_rate = frame_rate or row["frame_rate"]
            if wanted is not None and row["split"] not in wanted:
                continue
            codes = torch.tensor(row["codes"], dtype=torch.long).reshape(row["num_codebooks"], -1)
            examples.append(TokenExample(codes, row["source"], row["split"], row["text"] or "", row["start_seconds"]))
    assert first is not None
    if K is None:  # every shard is empty
        raise ShardError(f"{directory}: the shards hold no audio (every input failed?)")
    return TokenDataset(examples, first["codec"], first["codec_sha256"], first["bandwidth"], K, frame_rate,
                        max_codebooks=first["max_codebooks"], cardinality=first["cardinality"],
                        sample_rate=first["sample_rate"])


# ---- CLI ------------------------------------------------------------------------------------------------------------
def add_prepare_arguments(parser) -> None:
    parser.add_argument("input", help="folder of audio files, or a corpus folder with manifest.csv (path, split)")
    parser.add_argument("--out", required=True, help="folder for the Parquet shards")
    parser.add_argument("-b", "--bandwidth", type=float, default=1.5, help="codec bandwidth in kbps (1.5)")
    parser.add_argument("--model", default=None, help="codec name or path (default: $CODEC_MODEL or the default)")
    parser.add_argument("--shard", default="0/1", help="i/n: write only shards j with j %% n == i (0/1)")
    parser.add_argument("--chunk-seconds", type=float, default=None, help="cut files into chunks of at most this")
    parser.add_argument("--files-per-shard", type=int, default=32, help="input files per shard (32)")
    parser.add_argument("--text-column", default=None, help="manifest column used as text (auto: text/caption/...)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run_prepare(args) -> int:
    from .cli_tokens import load_codec_by_name

    config = PrepareConfig(
        bandwidth=args.bandwidth,
        chunk_seconds=args.chunk_seconds,
        files_per_shard=args.files_per_shard,
        shard=parse_shard(args.shard),
        text_column=args.text_column,
    )
    if config.chunk_seconds is not None and config.chunk_seconds <= 0:
        raise CodecError("--chunk-seconds must be positive")
    codec = load_codec_by_name(args.model)
    if not args.quiet:
        print(f"codec: {codec.weights.name} (sha256 {codec.weights.sha256[:12]}), {args.bandwidth:g} kbps, "
              f"K={codec.codebooks_for(args.bandwidth)}", file=sys.stderr)
    report = prepare(args.input, args.out, codec, config, progress=not args.quiet)
    print(
        f"{len(report.written)} shard(s) written, {len(report.skipped)} already complete; {report.files} file(s), "
        f"{report.chunks} chunk(s), {report.seconds / 60:.1f} min encoded; {len(report.failed)} unreadable"
    )
    return 0
