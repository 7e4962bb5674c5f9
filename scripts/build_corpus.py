"""Build a 24 kHz mono FLAC training/validation corpus from freely licensed audio in Debian packages.

Sources (see /work/shared/DATA.md and samples/SOURCES.md for licences):
  tuxpaint   read stamp descriptions, several languages (tuxpaint-stamps-default, GPL-2)
  wesnoth    orchestral soundtrack (wesnoth-1.16-music, GPL-2+)
  openttd    MIDI songs rendered with fluidsynth + FluidR3_GM (openttd-openmsx GPL-2.0, fluid-soundfont-gm MIT)
  asterisk   professional phone prompts, already G.722-coded: training split only (CC-BY-SA-3.0)

Short speech clips are concatenated (by language, deterministic order, 0.3 s pauses) into files of ~20 s (at most
~30 s); music is cut into ~30 s pieces. The split is decided per SOURCE FILE from a hash of its path (~95% train,
5% valid), so no source file feeds both splits; the source files of samples/ go to valid (never train).

    python scripts/build_corpus.py --out data/corpus [--compact data/corpus_compact] [--max-minutes-per-source N]

Writes DIR/manifest.csv (one row per output file) and DIR/manifest.json (minutes per split and kind). Idempotent:
finished outputs are kept and skipped, so a larger --max-minutes-per-source only adds files.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing import Pool
from pathlib import Path

SAMPLE_RATE = 24000
VALID_FRACTION = 0.05
SPEECH_TARGET_S = 20.0  # close a concatenated speech file once it reaches this length
SPEECH_MIN_S = 8.0  # a shorter trailing group is merged into the previous one
PAUSE_S = 0.3  # silence after each concatenated clip
PIECE_S = 30.0  # music piece length
MIN_LAST_PIECE_S = 10.0  # a shorter remainder is appended to the previous piece
MAX_CLIPPED_FRACTION = 0.01  # speech clips with more samples at full scale are skipped (e.g. all Spanish tuxpaint)
SILENCE_DBFS = -50.0  # outputs quieter than this (RMS) are dropped

TUXPAINT_DIR = Path("/usr/share/tuxpaint/stamps")
WESNOTH_DIR = Path("/usr/share/games/wesnoth/1.16/data/core/music")
OPENMSX_DIR = Path("/usr/share/games/openttd/baseset/openmsx")
ASTERISK_DIR = Path("/usr/share/asterisk/sounds")
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
SAMPLES_SOURCES = Path(__file__).resolve().parent.parent / "samples" / "SOURCES.md"

ALL_SOURCES = ("tuxpaint", "wesnoth", "openttd", "asterisk")
G722_NOTE = "already G.722-coded, training only"


@dataclass(frozen=True)
class Origin:
    """Package and licence of one source, as stated in /usr/share/doc/<package>/copyright."""

    package: str
    licence: str
    note: str = ""


ORIGINS = {
    "tuxpaint": Origin("tuxpaint-stamps-default", "GPL-2"),
    "wesnoth": Origin("wesnoth-1.16-music", "GPL-2+"),
    "openttd": Origin("openttd-openmsx+fluid-soundfont-gm", "GPL-2.0 (songs); MIT (FluidR3_GM soundfont)"),
    "asterisk": Origin("asterisk-core-sounds-g722", "CC-BY-SA-3.0", G722_NOTE),
}


@dataclass(frozen=True)
class Segment:
    """A stretch of one source file: the whole file when `duration_s` is None."""

    path: str
    start_s: float = 0.0
    duration_s: float | None = None
    origin: str = ""  # the packaged file `path` was rendered from (a MIDI song), when it is not `path` itself

    def label(self) -> str:
        source = self.origin or self.path
        if self.duration_s is None:
            return source
        return f"{source}#t={self.start_s:.2f},{self.start_s + self.duration_s:.2f}"


@dataclass(frozen=True)
class Job:
    """One output file: its relative path, where it belongs, and the segments it is made of."""

    path: str
    split: str
    kind: str  # speech | music
    language: str  # ISO 639-1, or "" for music
    source: str  # key of ORIGINS
    segments: tuple[Segment, ...]
    pause_s: float = 0.0  # silence appended after each segment


@dataclass
class Row:
    """One line of manifest.csv."""

    path: str
    split: str
    kind: str
    language: str
    source_package: str
    source_paths: str
    licence: str
    duration_s: float
    note: str = field(default="")


MANIFEST_FIELDS = [f for f in Row.__dataclass_fields__]


# ---------------------------------------------------------------- pure helpers (unit-tested)


def stable_hash(text: str) -> int:
    """A process- and platform-independent 64-bit hash of a string."""
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "big")


def split_for(source_path: str, valid_fraction: float = VALID_FRACTION, forced_valid: Iterable[str] = ()) -> str:
    """Return "train" or "valid" for one source file, from a hash of its path (deterministic)."""
    if source_path in set(forced_valid):
        return "valid"
    return "valid" if stable_hash(source_path) / 2**64 < valid_fraction else "train"


def hash_order(paths: Iterable[str]) -> list[str]:
    """Paths in a deterministic order that mixes folders (and so speakers and topics)."""
    return sorted(paths, key=lambda p: (stable_hash("order:" + p), p))


def group_clips(
    clips: Sequence[tuple[str, float]],
    target_s: float = SPEECH_TARGET_S,
    min_s: float = SPEECH_MIN_S,
    pause_s: float = PAUSE_S,
    keep_partial: bool = True,
) -> list[list[str]]:
    """Greedily pack (path, duration_s) clips, in the given order, into groups of about `target_s` seconds.

    Groups are prefix-stable: extending `clips` never changes an earlier complete group. With `keep_partial`
    False the trailing group that has not reached `target_s` is dropped (used when the clip list is truncated).
    """
    groups: list[list[str]] = []
    current: list[str] = []
    length = 0.0
    for path, duration in clips:
        current.append(path)
        length += duration + pause_s
        if length >= target_s:
            groups.append(current)
            current, length = [], 0.0
    if current and keep_partial:
        if length < min_s and groups:
            groups[-1].extend(current)
        else:
            groups.append(current)
    return groups


def music_pieces(
    duration_s: float, piece_s: float = PIECE_S, min_last_s: float = MIN_LAST_PIECE_S
) -> list[tuple[float, float]]:
    """Cut a track into (start_s, duration_s) pieces of `piece_s`; a short remainder joins the last piece."""
    count = int(duration_s // piece_s)
    remainder = duration_s - count * piece_s
    if count == 0:
        return [(0.0, duration_s)] if duration_s >= min_last_s / 2 else []
    pieces = [(i * piece_s, piece_s) for i in range(count)]
    if remainder >= min_last_s:
        pieces.append((count * piece_s, remainder))
    else:
        start, _ = pieces[-1]
        pieces[-1] = (start, duration_s - start)
    return pieces


def sample_source_paths(sources_md: Path = SAMPLES_SOURCES) -> set[str]:
    """Absolute source paths quoted in samples/SOURCES.md (kept out of the training split)."""
    if not sources_md.exists():
        return set()
    return set(re.findall(r"(/usr/share/[^\s`'\"()|,;]+)", sources_md.read_text()))


def capped(items: Sequence[tuple[str, float]], max_minutes: float | None) -> tuple[list[tuple[str, float]], bool]:
    """Leading items whose total duration fits `max_minutes`; also whether anything was cut off."""
    if max_minutes is None:
        return list(items), False
    out, total = [], 0.0
    for path, duration in items:
        if total + duration > max_minutes * 60:
            return out, True
        out.append((path, duration))
        total += duration
    return out, False


def minutes_summary(rows: Iterable[Row]) -> dict:
    """Minutes per split and kind, and per source package/language, rounded to 0.1 min."""
    by_kind: dict = defaultdict(lambda: defaultdict(float))
    by_source: dict = defaultdict(lambda: defaultdict(float))
    files: dict = defaultdict(int)
    for row in rows:
        by_kind[row.split][row.kind] += row.duration_s / 60
        key = row.source_package + (f"/{row.language}" if row.language else "")
        by_source[key][row.split] += row.duration_s / 60
        files[row.split] += 1
    rounded = lambda d: {k: {kk: round(vv, 1) for kk, vv in sorted(v.items())} for k, v in sorted(d.items())}  # noqa: E731
    return {"minutes": rounded(by_kind), "minutes_by_source": rounded(by_source), "files": dict(sorted(files.items()))}


# ---------------------------------------------------------------- audio I/O


_RESAMPLERS: dict = {}


def to_mono_24k(wav, sample_rate: int):
    """[S, C] or [S] float array at `sample_rate` -> [S'] float32 numpy array at 24 kHz."""
    import numpy as np
    import torch
    import torchaudio.functional as AF

    wav = np.array(wav, dtype=np.float32)  # a writable copy (torch refuses read-only buffers)
    if wav.ndim == 2:
        wav = wav.mean(axis=1)
    if sample_rate == SAMPLE_RATE:
        return wav
    return AF.resample(torch.from_numpy(wav), sample_rate, SAMPLE_RATE).numpy()


def read_segment(segment: Segment):
    """Decode one segment to a [S] float32 array at 24 kHz (ffmpeg for raw G.722, soundfile otherwise)."""
    import numpy as np
    import soundfile as sf

    if segment.path.endswith(".g722"):
        pcm = subprocess.run(
            ["ffmpeg", "-v", "error", "-f", "g722", "-i", segment.path, "-f", "f32le", "-ac", "1", "-"],
            check=True,
            capture_output=True,
        ).stdout
        return to_mono_24k(np.frombuffer(pcm, dtype=np.float32), 16000)
    with sf.SoundFile(segment.path) as f:
        start = int(round(segment.start_s * f.samplerate))
        frames = -1 if segment.duration_s is None else int(round(segment.duration_s * f.samplerate))
        f.seek(start)
        wav = f.read(frames, dtype="float32", always_2d=True)
        return to_mono_24k(wav, f.samplerate)


def clip_stats(path: str) -> tuple[float, int, float]:
    """(duration_s, sample_rate, fraction of samples at |x| > 0.98) of one audio file."""
    import numpy as np
    import soundfile as sf

    try:
        wav, sr = sf.read(path, dtype="float32", always_2d=True)
    except Exception:  # unreadable clip: report it as empty so it is skipped
        return 0.0, 0, 1.0
    return len(wav) / sr, sr, float(np.mean(np.abs(wav) > 0.98)) if len(wav) else 1.0


def render_midi(args: tuple[str, str]) -> tuple[str, float]:
    """Render one MIDI file to a 24 kHz WAV with fluidsynth (skipped when present); return (wav path, seconds)."""
    import soundfile as sf

    midi, wav = args
    if not Path(wav).exists():
        tmp = wav + ".tmp.wav"
        subprocess.run(
            ["fluidsynth", "-ni", "-q", "-r", str(SAMPLE_RATE), "-F", tmp, str(SOUNDFONT), midi],
            check=True,
            capture_output=True,
        )
        os.replace(tmp, wav)
    return wav, sf.info(wav).duration


def make_row(job: Job, duration_s: float) -> Row:
    origin = ORIGINS[job.source]
    sources = ";".join(dict.fromkeys(s.label() for s in job.segments))
    return Row(
        job.path,
        job.split,
        job.kind,
        job.language,
        origin.package,
        sources,
        origin.licence,
        round(duration_s, 3),
        origin.note,
    )


def run_job(args: tuple[Job, str]) -> Row | None:
    """Render one output file (skipped when it exists); return its manifest row, or None if it came out silent."""
    import numpy as np
    import soundfile as sf
    import torch

    torch.set_num_threads(1)
    job, out_dir = args
    out = Path(out_dir) / job.path
    if out.exists():
        return make_row(job, sf.info(str(out)).duration)
    pause = np.zeros(int(round(job.pause_s * SAMPLE_RATE)), dtype=np.float32)
    parts = []
    for segment in job.segments:
        parts.append(read_segment(segment))
        if len(pause):
            parts.append(pause)
    wav = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    if len(wav) < SAMPLE_RATE or 20 * np.log10(np.sqrt(np.mean(wav**2)) + 1e-12) < SILENCE_DBFS:
        return None
    peak = float(np.abs(wav).max())
    if peak > 0.999:  # resampling overshoot: scale the whole file rather than clip it
        wav = wav * (0.999 / peak)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    sf.write(str(tmp), wav, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    os.replace(tmp, out)
    return make_row(job, len(wav) / SAMPLE_RATE)


# ---------------------------------------------------------------- planning


def parallel_map(func, items: list, workers: int, desc: str, quiet: bool) -> list:
    from tqdm import tqdm

    if workers <= 1:
        return [func(x) for x in tqdm(items, desc=desc, disable=quiet)]
    with Pool(workers) as pool:
        return list(tqdm(pool.imap(func, items, chunksize=8), total=len(items), desc=desc, disable=quiet))


def speech_jobs(
    source: str,
    clips_by_lang: dict[str, list[tuple[str, float]]],
    forced_valid: set[str],
    max_minutes: float | None,
    train_only: bool = False,
) -> list[Job]:
    """Concatenation jobs for short speech clips: per language and split, in hash order."""
    jobs = []
    for lang, clips in sorted(clips_by_lang.items()):
        by_split: dict[str, list[tuple[str, float]]] = defaultdict(list)
        for path, duration in clips:
            if train_only:
                if path not in forced_valid:  # sample sources are kept out of train; G.722 never goes to valid
                    by_split["train"].append((path, duration))
            else:
                by_split[split_for(path, forced_valid=forced_valid)].append((path, duration))
        for split, items in sorted(by_split.items()):
            order = {p: i for i, p in enumerate(hash_order(p for p, _ in items))}
            items = sorted(items, key=lambda item: order[item[0]])
            cap = None if max_minutes is None else max_minutes * (VALID_FRACTION if split == "valid" else 1.0)
            items, cut = capped(items, cap)
            for i, group in enumerate(group_clips(items, keep_partial=not cut)):
                digest = hashlib.sha1("\n".join(group).encode()).hexdigest()[:8]
                path = f"speech/{source}/{split}/{lang}_{i:04d}_{digest}.flac"
                jobs.append(Job(path, split, "speech", lang, source, tuple(Segment(p) for p in group), PAUSE_S))
    return jobs


def music_jobs(
    source: str,
    tracks: list[tuple[str, float]],
    forced_valid: set[str],
    max_minutes: float | None,
    track_names: dict[str, str] | None = None,
) -> list[Job]:
    """~30 s piece jobs for long music tracks; `track_names` maps a rendered file back to its true source."""
    jobs = []
    names = track_names or {}
    origin_of = lambda p: names.get(p, p)  # noqa: E731
    order = {p: i for i, p in enumerate(hash_order(origin_of(p) for p, _ in tracks))}
    tracks = sorted(tracks, key=lambda t: order[origin_of(t[0])])
    tracks, _ = capped(tracks, max_minutes)
    for path, duration in tracks:
        origin = origin_of(path)
        split = split_for(origin, forced_valid=forced_valid)
        stem = Path(origin).stem
        for i, (start, length) in enumerate(music_pieces(duration)):
            segment = Segment(path, start, length, "" if origin == path else origin)
            jobs.append(Job(f"music/{source}/{split}/{stem}_{i:02d}.flac", split, "music", "", source, (segment,)))
    return jobs


def plan(sources: Sequence[str], cache: Path, max_minutes: float | None, workers: int, quiet: bool) -> list[Job]:
    """All jobs for the chosen sources (scans and renders what planning needs into `cache`)."""
    forced_valid = sample_source_paths()
    cache.mkdir(parents=True, exist_ok=True)
    jobs: list[Job] = []
    if "tuxpaint" in sources:
        pattern = re.compile(r"_desc(?:_([a-z]{2}))?\.ogg$")
        paths = sorted(str(p) for p in TUXPAINT_DIR.rglob("*_desc*.ogg") if pattern.search(p.name))
        stats_file = cache / "tuxpaint_clips.json"
        stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
        missing = [p for p in paths if p not in stats]
        if missing:
            stats.update(zip(missing, parallel_map(clip_stats, missing, workers, "scan tuxpaint", quiet), strict=True))
            stats_file.write_text(json.dumps(stats))
        by_lang: dict[str, list[tuple[str, float]]] = defaultdict(list)
        for p in paths:
            duration, sr, clipped = stats[p]
            if sr >= 16000 and clipped <= MAX_CLIPPED_FRACTION and duration >= 0.3:
                by_lang[pattern.search(Path(p).name).group(1) or "en"].append((p, duration))
        by_lang = {k: v for k, v in by_lang.items() if sum(d for _, d in v) >= 60}  # drop languages under a minute
        jobs += speech_jobs("tuxpaint", by_lang, forced_valid, max_minutes)
    if "wesnoth" in sources:
        import soundfile as sf

        tracks = [(str(p), sf.info(str(p)).duration) for p in sorted(WESNOTH_DIR.glob("*.ogg")) if p.stem != "silence"]
        jobs += music_jobs("wesnoth", tracks, forced_valid, max_minutes)
    if "openttd" in sources:
        midis = sorted(OPENMSX_DIR.glob("*.mid"))
        (cache / "midi").mkdir(exist_ok=True)
        todo = [(str(m), str(cache / "midi" / (m.stem + ".wav"))) for m in midis]
        rendered = parallel_map(render_midi, todo, workers, "render midi", quiet)
        names = {wav: midi for (midi, _), (wav, _) in zip(todo, rendered, strict=True)}
        jobs += music_jobs("openttd", rendered, forced_valid, max_minutes, names)
    if "asterisk" in sources:
        by_lang = defaultdict(list)
        for voice in sorted(ASTERISK_DIR.glob("*_f_Allison")):  # the real folders; en, es... are symlinks to them
            lang = voice.name.split("_")[0]
            for p in sorted(voice.rglob("*.g722")):
                by_lang[lang].append((str(p), p.stat().st_size / 8000))  # G.722: 64 kbit/s
        jobs += speech_jobs("asterisk", by_lang, forced_valid, max_minutes, train_only=True)
    return jobs


# ---------------------------------------------------------------- manifests and the compact subset


def write_manifest(out_dir: Path, rows: list[Row], extra: dict) -> None:
    rows = sorted(rows, key=lambda r: r.path)
    with open(out_dir / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    summary = {"sample_rate": SAMPLE_RATE, "format": "FLAC 16-bit mono", **minutes_summary(rows), **extra}
    (out_dir / "manifest.json").write_text(json.dumps(summary, indent=2) + "\n")


def read_manifest(out_dir: Path) -> list[Row]:
    with open(out_dir / "manifest.csv", newline="") as f:
        return [Row(**{**r, "duration_s": float(r["duration_s"])}) for r in csv.DictReader(f)]


def select_compact(
    rows: Sequence[Row],
    speech_min: float = 20.0,
    music_min: float = 10.0,
    budget_bytes: int = 60 * 2**20,
    sizes: dict[str, int] | None = None,
) -> list[Row]:
    """A deterministic subset: ~`speech_min` + ~`music_min` minutes (5% of each from valid), round-robin over
    sources/languages, never G.722-coded material, at most `budget_bytes` when `sizes` are given."""
    chosen: list[Row] = []
    used = 0
    for kind, minutes in (("speech", speech_min), ("music", music_min)):
        for split, share in (("valid", VALID_FRACTION * 2), ("train", 1 - VALID_FRACTION * 2)):
            pools: dict[str, list[Row]] = defaultdict(list)
            for r in sorted(rows, key=lambda r: r.path):
                if r.kind == kind and r.split == split and not r.note:
                    pools[f"{r.source_package}/{r.language}"].append(r)
            queues = [hash_order_rows(v) for _, v in sorted(pools.items())]
            total, goal = 0.0, minutes * share * 60
            while total < goal and any(queues):
                for q in queues:
                    if not q or total >= goal:
                        continue
                    r = q.pop(0)
                    size = (sizes or {}).get(r.path, 0)
                    if used + size > budget_bytes:
                        continue
                    chosen.append(r)
                    total += r.duration_s
                    used += size
    return chosen


def hash_order_rows(rows: list[Row]) -> list[Row]:
    order = {p: i for i, p in enumerate(hash_order(r.path for r in rows))}
    return sorted(rows, key=lambda r: order[r.path])


def build_compact(corpus: Path, compact: Path, quiet: bool) -> list[Row]:
    rows = read_manifest(corpus)
    sizes = {r.path: (corpus / r.path).stat().st_size for r in rows}
    chosen = select_compact(rows, sizes=sizes)
    keep = {r.path for r in chosen}
    for r in chosen:
        dst = compact / r.path
        if dst.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(corpus / r.path, dst)  # same file system: no extra space
        except OSError:
            shutil.copy2(corpus / r.path, dst)
    for old in compact.rglob("*.flac"):  # files from an earlier, different selection
        if str(old.relative_to(compact)) not in keep:
            old.unlink()
    total = sum(sizes[p] for p in keep)
    write_manifest(compact, chosen, {"subset_of": str(corpus), "size_mib": round(total / 2**20, 1)})
    return chosen


# ---------------------------------------------------------------- command line


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="corpus folder (e.g. data/corpus)")
    parser.add_argument("--compact", type=Path, help="also write a <64 MiB subset here (e.g. data/corpus_compact)")
    parser.add_argument("--max-minutes-per-source", type=float, help="cap per source and language (train minutes)")
    parser.add_argument("--sources", default=",".join(ALL_SOURCES), help=f"comma-separated subset of {ALL_SOURCES}")
    parser.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    unknown = sorted(set(sources) - set(ALL_SOURCES))
    if unknown:
        print(f"error: unknown source(s) {unknown}; choose from {ALL_SOURCES}", file=sys.stderr)
        return 2
    for tool in ("ffmpeg", "fluidsynth"):
        if shutil.which(tool) is None:
            print(f"error: {tool} not found (apt-get install {tool})", file=sys.stderr)
            return 2
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    jobs = plan(sources, out / ".cache", args.max_minutes_per_source, args.workers, args.quiet)
    results = parallel_map(run_job, [(j, str(out)) for j in jobs], args.workers, "build corpus", args.quiet)
    rows = [r for r in results if r is not None]
    # rows of sources not rebuilt this time stay listed as long as their files exist
    previous = read_manifest(out) if (out / "manifest.csv").exists() else []
    planned = {r.path for r in rows}
    built_sources = {ORIGINS[s].package for s in sources}
    rows += [
        r
        for r in previous
        if r.path not in planned and r.source_package not in built_sources and (out / r.path).exists()
    ]
    write_manifest(out, rows, {"command": " ".join(["scripts/build_corpus.py", *(argv or sys.argv[1:])])})
    summary = json.loads((out / "manifest.json").read_text())
    print(json.dumps({"out": str(out), "minutes": summary["minutes"], "files": summary["files"]}))
    if args.compact:
        args.compact.mkdir(parents=True, exist_ok=True)
        build_compact(out, args.compact, args.quiet)
        summary = json.loads((args.compact / "manifest.json").read_text())
        print(json.dumps({"out": str(args.compact), "minutes": summary["minutes"], "size_mib": summary["size_mib"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
