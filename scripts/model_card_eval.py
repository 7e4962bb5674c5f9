"""Reproduces the quality table of codec/weights/MODEL_CARD.md: held-out speech and music, every bandwidth, beside
Opus and MP3 (and Codec2 on speech).

    python scripts/model_card_eval.py [--model default] [--corpus data/corpus] [--speech 8] [--music 4]

Clips are the middle `--seconds` of the first files (sorted by path) of the corpus's `valid` split, which no training
run sees (the split is by source file; see scripts/build_corpus.py, which this script runs if the corpus is missing).
Prints a Markdown table of means per kind x system x bitrate and writes it, with the full sweep, under `--out`.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]


def pick_clips(corpus: Path, kind: str, count: int) -> list[Path]:
    with open(corpus / "manifest.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "valid" and r["kind"] == kind]
    rows.sort(key=lambda r: r["path"])
    # spread over sources/languages: round-robin by language (speech) or source package (music)
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r.get("language") or r.get("source_package") or ""].append(r)
    picked, index = [], 0
    while len(picked) < count and any(index < len(g) for g in groups.values()):
        for key in sorted(groups):
            if index < len(groups[key]) and len(picked) < count:
                picked.append(corpus / groups[key][index]["path"])
        index += 1
    return picked


def excerpt(source: Path, target: Path, seconds: float) -> None:
    data, rate = sf.read(source, dtype="float32", always_2d=True)
    n = int(seconds * rate)
    start = max(0, (len(data) - n) // 2)
    sf.write(target, data[start: start + n], rate, subtype="PCM_16")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--corpus", default=str(ROOT / "data" / "corpus"))
    parser.add_argument("--speech", type=int, default=8)
    parser.add_argument("--music", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--out", default=str(ROOT / "reports" / "model_card"))
    parser.add_argument("--dnsmos", action="store_true", help="also DNSMOS (slow)")
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()

    from codec import load_codec
    from codec.baselines import DEFAULT_SETTINGS
    from codec.sweep import run_sweep, summary_table

    corpus = Path(args.corpus)
    if not (corpus / "manifest.csv").is_file():
        print(f"building the corpus at {corpus} (scripts/build_corpus.py)", flush=True)
        subprocess.run([sys.executable, str(ROOT / "scripts" / "build_corpus.py"), "--out", str(corpus)], check=True)
    out = Path(args.out)
    inputs_dir = out / "inputs"
    inputs_dir.mkdir(parents=True, exist_ok=True)
    inputs, provenance = [], []
    for kind, count in (("speech", args.speech), ("music", args.music)):
        for i, source in enumerate(pick_clips(corpus, kind, count)):
            target = inputs_dir / f"{kind}_{i:02d}.flac"
            excerpt(source, target, args.seconds)
            inputs.append(target)
            provenance.append(f"{target.relative_to(out)}\t{source}")
    (out / "inputs.txt").write_text("\n".join(provenance) + "\n")
    codec = load_codec(args.model)
    print(f"model {codec.weights.name} sha256 {codec.weights.sha256}", flush=True)
    result = run_sweep(inputs, codec, out / "sweep", dnsmos=args.dnsmos, jobs=args.jobs,
                       baselines=[s for s in DEFAULT_SETTINGS if s.system in ("opus", "mp3", "codec2")])
    with open(out / "sweep" / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    table = summary_table(rows)
    (out / "table.md").write_text(table + "\n")
    print(table)
    del result
    return 0


if __name__ == "__main__":
    sys.exit(main())
