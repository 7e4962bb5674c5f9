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
    parser.add_argument("--spectrogram", help="also draw original / codec at 6 kbps / Opus 6k of the first speech "
                        "clip to this PNG (the model card's picture: codec/weights/default_6kbps_spectrogram.png)")
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
    if args.spectrogram:
        speech = next(p for p in inputs if p.name.startswith("speech_"))
        print(f"wrote {spectrogram_panels(codec, speech, Path(args.spectrogram))}")
    return 0


def spectrogram_panels(codec, path: Path, target: Path) -> Path:
    """Original, the codec at 6 kbps and Opus 6k of one clip, as three log-magnitude spectrograms."""
    import matplotlib
    import torch

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from codec.audio import convert_audio, read_audio
    from codec.baselines import BaselineSetting, run_baseline

    audio = read_audio(path)
    wav = convert_audio(audio.wav, audio.sample_rate, codec.sample_rate, 1)
    sr = codec.sample_rate
    with torch.inference_mode():
        ours = codec.decode(codec.encode(wav[None], 6.0))[0, :, : wav.shape[-1]]
    panels = [("original", wav), (f"{codec.weights.name} at 6 kbps", ours)]
    opus = run_baseline(BaselineSetting("opus", 6), wav, sr, speech=True)
    if not opus.skipped:
        panels.append(("Opus 6 kbps", opus.wav))
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.6 * len(panels)), sharex=True)
    n_fft, hop = 1024, 256
    for ax, (title, signal) in zip(axes, panels, strict=True):
        spec = torch.stft(signal[0].float(), n_fft, hop, window=torch.hann_window(n_fft), return_complex=True).abs()
        db = 20 * torch.log10(spec.clamp_min(1e-5))
        extent = (0, signal.shape[-1] / sr, 0, sr / 2000)
        ax.imshow(db.numpy(), origin="lower", aspect="auto", extent=extent, vmin=float(db.max()) - 80, cmap="magma")
        ax.set(ylabel="kHz", title=f"{title}: {path.name} (held out)")
    axes[-1].set(xlabel="seconds")
    fig.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.part.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(target)
    return target


if __name__ == "__main__":
    sys.exit(main())
