"""Bitrate vs quality: run a codec at every bandwidth, and classic codecs at similar bitrates, over a set of files.

`run_sweep(inputs, codec, out_dir)` writes into `out_dir`:
- `results.csv` / `results.json`: one `ResultRow` per file x system x bitrate (quality, measured kbps, speed);
- `tokens.csv` (one `CodebookRow` per group x bandwidth x codebook) and `tokens_summary.csv` (one `TokenSummary` per
  group x bandwidth): codebook usage, perplexity, entropy, the bitrate an ideal entropy coder would reach, and an
  audio LM's bits per second when `lm_run` is given;
- `audio/<file>/*.flac`: the reference and every reconstruction, for listening;
- `plots/*.png` and `report.html` (see `codec.report`).

Every system is scored on the same reference: the input converted to the codec's rate and channels (what the codec
itself sees). Speech or music decides which metrics apply (PESQ-wb, STOI and DNSMOS are speech-only); see `classify`.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import io
import json
import math
import multiprocessing
import os
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from .audio import audio_info, load_for_model, write_audio
from .baselines import DEFAULT_SETTINGS, BaselineSetting, missing_tools, run_baseline
from .errors import CodecError
from .interface import Codec
from .metrics import DnsmosScore, QualityReport, evaluate

SPEECH, MUSIC = "speech", "music"
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".aif", ".aiff",
                            ".wma", ".webm"})
MAX_DELAY_SECONDS = 0.25  # classic codecs add up to ~75 ms (lame at 8 kbps); neural codecs none


# ---------------------------------------------------------------------------------------------------------- inputs
@dataclass
class InputFile:
    """One input of the sweep.

    Args:
        path: the file as found.
        kind: "speech" or "music" (see `classify`).
        rule: which rule decided `kind` (shown in the report).
        slug: unique folder name for its audio under `audio/`.
        file_kbps: the input file's own bitrate, size * 8 / 1000 / duration (kbps).
    """

    path: str
    kind: str
    rule: str
    slug: str
    file_kbps: float


def collect_inputs(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Files given directly, plus audio files (by suffix) found recursively in given folders; sorted, no duplicates.

    Raises `CodecError` for a path that does not exist or when nothing is found.
    """
    found: dict[Path, None] = {}
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and child.suffix.lower() in AUDIO_SUFFIXES and not child.name.startswith("."):
                    found.setdefault(child, None)
        elif path.is_file():
            found.setdefault(path, None)
        else:
            raise CodecError(f"{path}: no such file or folder")
    if not found:
        suffixes = " ".join(sorted(AUDIO_SUFFIXES))
        raise CodecError(f"no audio files found in the inputs (known suffixes: {suffixes})")
    return list(found)


def classify(path: str | os.PathLike, speech_globs: Sequence[str] = (), music_globs: Sequence[str] = ()
             ) -> tuple[str, str]:
    """Decides whether `path` holds speech or music; returns (kind, the rule that decided).

    In order: a `--speech` glob matching the file name or the whole path; a `--music` glob likewise; a file name
    starting with `speech` or `music` (case-insensitive, e.g. `speech_en.flac`); a parent folder named `speech` or
    `music`; otherwise music (general audio: no speech-only metrics).
    """
    path = Path(path)
    candidates = (path.name, path.as_posix())
    for kind, globs in ((SPEECH, speech_globs), (MUSIC, music_globs)):
        for pattern in globs:
            if any(fnmatch.fnmatch(text, pattern) for text in candidates):
                return kind, f"--{kind} {pattern}"
    name = path.name.lower()
    for kind in (SPEECH, MUSIC):
        if name.startswith(kind):
            return kind, f"name starts with '{kind}'"
    for parent in path.parent.parts[::-1]:
        if parent.lower() in (SPEECH, MUSIC):
            return parent.lower(), f"folder '{parent}'"
    return MUSIC, "no rule matched: treated as music"


def _slugs(paths: Sequence[Path]) -> list[str]:
    slugs, seen = [], set()
    for path in paths:
        base = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem) or "file"
        slug, n = base, 1
        while slug in seen:
            n += 1
            slug = f"{base}-{n}"
        seen.add(slug)
        slugs.append(slug)
    return slugs


# ---------------------------------------------------------------------------------------------------------- tokens
def code_histogram(codes: torch.Tensor, cardinality: int) -> np.ndarray:
    """Counts of each code per codebook: codes `[B, K, T]` -> int64 `[K, cardinality]` (summed over B and T)."""
    flat = codes.detach().cpu().long().transpose(0, 1).reshape(codes.shape[1], -1)  # [K, B*T]
    offsets = torch.arange(codes.shape[1])[:, None] * cardinality
    counts = torch.bincount((flat + offsets).reshape(-1), minlength=codes.shape[1] * cardinality)
    return counts.reshape(codes.shape[1], cardinality).numpy().astype(np.int64)


def entropy_bits(counts: np.ndarray) -> np.ndarray:
    """Plug-in (maximum-likelihood) entropy in bits of each row of `counts` `[..., N]`; 0 for an empty row.

    Estimated from a finite sample it is biased low (it cannot exceed log2 of the number of samples).
    """
    counts = np.asarray(counts, dtype=np.float64)
    totals = counts.sum(axis=-1, keepdims=True)
    probabilities = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    logs = np.log2(probabilities, out=np.zeros_like(probabilities), where=probabilities > 0)
    return -(probabilities * logs).sum(axis=-1)


def ideal_kbps(counts: np.ndarray, frame_rate: float) -> float:
    """Bitrate (kbps) of an ideal entropy coder using each codebook's empirical distribution, `counts` `[K, N]`:
    sum over codebooks of entropy (bits) * frame_rate / 1000. Lower than the nominal K * log2(N) * frame_rate."""
    return float(entropy_bits(counts).sum() * frame_rate / 1000)


@dataclass
class CodebookRow:
    """Statistics of one codebook's codes, pooled over the files of `group`, at one bandwidth (a `tokens.csv` row).

    Args:
        group: "all", "speech" or "music".
        bandwidth_kbps: nominal bandwidth of the codec setting.
        num_codebooks: K used at that bandwidth.
        codebook: index k (0 = first, coarsest).
        codes: number of codes counted (frames pooled over files).
        used_entries: distinct entries seen (of `cardinality`).
        usage: used_entries / cardinality, 0..1.
        entropy_bits: plug-in entropy of the empirical distribution (bits per code, at most log2(cardinality)).
        perplexity: 2 ** entropy_bits (the effective number of equally likely entries).
        entropy_kbps: entropy_bits * frame_rate / 1000, this codebook's share of the ideal entropy-coded bitrate.
    """

    group: str
    bandwidth_kbps: float
    num_codebooks: int
    codebook: int
    codes: int
    used_entries: int
    usage: float
    entropy_bits: float
    perplexity: float
    entropy_kbps: float


@dataclass
class TokenSummary:
    """Token rates of one codec setting over the files of `group` (a `tokens_summary.csv` row).

    Args:
        group: "all", "speech" or "music".
        bandwidth_kbps: nominal bandwidth of the codec setting.
        num_codebooks: K.
        files: files pooled.
        seconds: audio seconds pooled.
        tokens_per_second: K * frame_rate (tokens of a flattened sequence per second of audio).
        nominal_kbps: K * frame_rate * log2(cardinality) / 1000.
        entropy_kbps: sum over codebooks of pooled entropy * frame_rate / 1000 (ideal entropy coder, no context).
        mean_usage: mean over codebooks of `CodebookRow.usage`.
        mean_perplexity: mean over codebooks of `CodebookRow.perplexity`.
        lm_kbps: the audio LM's bits per second of audio / 1000, averaged weighting files by duration; None without
            an LM (or when it failed for every file).
    """

    group: str
    bandwidth_kbps: float
    num_codebooks: int
    files: int
    seconds: float
    tokens_per_second: float
    nominal_kbps: float
    entropy_kbps: float
    mean_usage: float
    mean_perplexity: float
    lm_kbps: float | None = None


def token_statistics(group: str, bandwidth: float, counts: np.ndarray, frame_rate: float, cardinality: int
                     ) -> list[CodebookRow]:
    """One `CodebookRow` per codebook from pooled code counts `[K, cardinality]`."""
    entropies = entropy_bits(counts)
    rows = []
    for k, (row, entropy) in enumerate(zip(counts, entropies, strict=True)):
        used = int((row > 0).sum())
        rows.append(CodebookRow(group, bandwidth, counts.shape[0], k, int(row.sum()), used, used / cardinality,
                                float(entropy), float(2.0 ** entropy), float(entropy * frame_rate / 1000)))
    return rows


# ---------------------------------------------------------------------------------------------------------- results
@dataclass
class ResultRow:
    """One file x system x bitrate (a row of `results.csv`). None means "does not apply / not measured".

    Args:
        file: input path.
        kind: "speech" or "music".
        duration_s: reference length (seconds).
        system: "original" (the reference itself), the codec's weights name, "opus", "mp3" or "codec2".
        family: "reference", "neural" or "baseline".
        setting: human label ("6 kbps", "opus 12k").
        num_codebooks: K (neural only).
        nominal_kbps: the codec's nominal bandwidth, or the bitrate asked of a baseline encoder.
        file_kbps: measured: .ecdc bytes (neural), encoded file bytes (baselines), or the input file's own size
            (reference), * 8 / 1000 / duration_s.
        encode_rtf: audio seconds per second of encoding (higher is faster); baselines include process start-up.
        decode_rtf: same for decoding.
        sample_rate: rate the metrics ran at (the codec's), Hz.
        delay_samples: latency removed before the waveform metrics (positive: the output lagged).
        si_sdr: dB, higher is better.
        si_sdr_meaningful: False for parametric codecs (Codec2), whose SI-SDR means nothing.
        stft_distance: multi-resolution STFT distance, lower is better.
        mel_distance: log10-mel L1, lower is better.
        pesq_wb: 1..4.64, higher is better (speech only).
        stoi: 0..1, higher is better (speech only).
        dnsmos_ovrl, dnsmos_sig, dnsmos_bak, dnsmos_p808: DNSMOS of the output, 1..5, higher is better (speech only).
        entropy_kbps: ideal entropy-coded bitrate of this file's codes (neural only), kbps.
        lm_kbps: the audio LM's bits per second of this file's codes / 1000 (neural only, with `--lm`).
        audio: the listening copy, relative to the output folder.
        note: anything unusual (resampling by the tool, skipped, failed).
    """

    file: str
    kind: str
    duration_s: float
    system: str
    family: str
    setting: str
    num_codebooks: int | None = None
    nominal_kbps: float | None = None
    file_kbps: float | None = None
    encode_rtf: float | None = None
    decode_rtf: float | None = None
    sample_rate: int | None = None
    delay_samples: int | None = None
    si_sdr: float | None = None
    si_sdr_meaningful: bool = True
    stft_distance: float | None = None
    mel_distance: float | None = None
    pesq_wb: float | None = None
    stoi: float | None = None
    dnsmos_ovrl: float | None = None
    dnsmos_sig: float | None = None
    dnsmos_bak: float | None = None
    dnsmos_p808: float | None = None
    entropy_kbps: float | None = None
    lm_kbps: float | None = None
    audio: str | None = None
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


RESULT_COLUMNS = tuple(f.name for f in fields(ResultRow))


@dataclass
class SweepResult:
    """Everything a sweep produced. Paths are inside `out_dir`; `notes` are sweep-wide remarks (missing tools, LM)."""

    out_dir: str
    model: str
    weights_sha256: str
    sample_rate: int
    channels: int
    frame_rate: float
    cardinality: int
    bandwidths: list[float]
    files: list[InputFile]
    rows: list[ResultRow]
    codebooks: list[CodebookRow]
    token_summary: list[TokenSummary]
    notes: list[str] = field(default_factory=list)
    lm_run: str | None = None
    jobs: int = 1
    elapsed_s: float = 0.0
    report_html: str | None = None

    def meta(self) -> dict:
        """The header of `results.json`: everything except the row lists."""
        skip = {"rows", "codebooks", "token_summary", "files"}
        meta = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        meta["files"] = [asdict(f) for f in self.files]
        return meta


# ---------------------------------------------------------------------------------------------------------- tasks
@dataclass(frozen=True)
class _Plan:
    """What every worker needs besides the codec."""

    out_dir: str
    dnsmos: bool
    lm_run: str | None


@dataclass(frozen=True)
class _Task:
    index: int  # of the input file
    path: str
    kind: str
    slug: str
    file_kbps: float
    system: str  # "original", "neural", or a baseline system
    bandwidth: float | None = None
    baseline: BaselineSetting | None = None


@dataclass
class _Output:
    task: _Task
    row: ResultRow
    counts: np.ndarray | None = None  # [K, cardinality] code counts (neural only)
    lm_note: str = ""


_WORKER: dict = {}


def _init_worker(codec: Codec, plan: _Plan, threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)
    _WORKER.update(codec=codec, plan=plan, references={})


def _reference(path: str) -> torch.Tensor:
    """The input at the codec's rate and channels, `[C, S]`; the last two are kept per process."""
    references: dict = _WORKER["references"]
    if path not in references:
        codec: Codec = _WORKER["codec"]
        if len(references) >= 2:
            references.pop(next(iter(references)))
        references[path] = load_for_model(path, codec.sample_rate, codec.channels)[0][0]
    return references[path]


def _dnsmos_cached(estimate: torch.Tensor, sample_rate: int, cache_dir: Path) -> DnsmosScore | None:
    """DNSMOS of `estimate` `[C, S]`, cached on disk under its content hash (reruns and identical outputs are free)."""
    from .metrics import dnsmos

    data = estimate.detach().cpu().to(torch.float32).numpy()
    if data.size == 0 or not np.any(data) or not np.isfinite(data).all():
        return None
    key = hashlib.sha256(data.tobytes() + str(sample_rate).encode()).hexdigest()
    cached = cache_dir / f"{key}.json"
    if cached.is_file():
        return DnsmosScore(**json.loads(cached.read_text()))
    score = dnsmos(data, sample_rate)
    cache_dir.mkdir(parents=True, exist_ok=True)
    temp = cached.with_suffix(f".{os.getpid()}.tmp")
    temp.write_text(json.dumps(asdict(score)))
    os.replace(temp, cached)
    return score


def _quality(task: _Task, reference: torch.Tensor, estimate: torch.Tensor, row: ResultRow) -> None:
    """Fills the quality fields of `row` (in place) from `codec.metrics.evaluate`, with delay alignment."""
    codec: Codec = _WORKER["codec"]
    plan: _Plan = _WORKER["plan"]
    speech = task.kind == SPEECH
    if not torch.isfinite(estimate).all():
        row.note = "; ".join(filter(None, [row.note, "output holds NaN/Inf: not scored"]))
        return
    report: QualityReport = evaluate(reference, estimate, codec.sample_rate, speech=speech, align_delay=True,
                                     dnsmos=False, max_delay_seconds=MAX_DELAY_SECONDS)
    values = report.to_dict()
    for name in ("delay", "si_sdr", "stft_distance", "mel_distance", "pesq_wb", "stoi"):
        setattr(row, "delay_samples" if name == "delay" else name, values[name])
    if speech and plan.dnsmos:
        _fill_dnsmos(row, estimate)


def _fill_dnsmos(row: ResultRow, wav: torch.Tensor) -> None:
    codec: Codec = _WORKER["codec"]
    score = _dnsmos_cached(wav, codec.sample_rate, Path(_WORKER["plan"].out_dir) / "cache" / "dnsmos")
    if score is not None:
        row.dnsmos_ovrl, row.dnsmos_sig, row.dnsmos_bak, row.dnsmos_p808 = score.ovrl, score.sig, score.bak, score.p808


def _audio_path(task: _Task, name: str) -> tuple[Path, str]:
    relative = f"audio/{task.slug}/{name}.flac"
    return Path(_WORKER["plan"].out_dir) / relative, relative


def _save(task: _Task, name: str, wav: torch.Tensor) -> str:
    path, relative = _audio_path(task, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_audio(path, torch.nan_to_num(wav), _WORKER["codec"].sample_rate)
    return relative


def lm_bits_per_second(run_dir: str, codes: torch.Tensor, codec: Codec) -> tuple[float | None, str]:
    """The audio LM's bits per second of audio for `codes` `[1, K, T]`, via `audiolm.evaluate.bits_per_second`.

    Imported lazily (codec never imports audiolm at module level). Returns (None, note) when audiolm is not
    installed or the LM fails (e.g. it was trained for another number of codebooks), never raises.
    """
    try:
        from audiolm.evaluate import bits_per_second  # type: ignore[import-not-found]
    except ImportError as error:
        return None, f"LM not available ({' '.join(str(error).split())})"
    try:
        return float(bits_per_second(run_dir, codes, codec)), ""
    except Exception as error:  # a foreign hook: report it, keep sweeping
        return None, f"LM failed: {' '.join(str(error).split()) or type(error).__name__}"


def _neural(task: _Task) -> _Output:
    from .pipeline import decode, encode, read_container, write_container

    codec: Codec = _WORKER["codec"]
    plan: _Plan = _WORKER["plan"]
    reference = _reference(task.path)
    duration = reference.shape[-1] / codec.sample_rate
    bandwidth = float(task.bandwidth)  # type: ignore[arg-type]
    num_codebooks = codec.codebooks_for(bandwidth)
    start = time.perf_counter()
    encoded = encode(codec, reference[None], bandwidth)
    encode_seconds = time.perf_counter() - start
    buffer = io.BytesIO()
    write_container(codec, encoded, buffer)
    file_bytes = len(buffer.getvalue())
    buffer.seek(0)
    decoded_codes = read_container(codec, buffer)
    start = time.perf_counter()
    decoded = decode(codec, decoded_codes)[0]
    decode_seconds = time.perf_counter() - start
    counts = code_histogram(encoded.codes, codec.cardinality)
    row = ResultRow(task.path, task.kind, duration, codec.weights.name, "neural", f"{bandwidth:g} kbps", num_codebooks,
                    codec.bandwidth_for(num_codebooks), file_bytes * 8 / 1000 / max(duration, 1e-9),
                    duration / max(encode_seconds, 1e-9), duration / max(decode_seconds, 1e-9), codec.sample_rate,
                    entropy_kbps=ideal_kbps(counts, codec.frame_rate))
    lm_note = ""
    if plan.lm_run is not None:
        bits, lm_note = lm_bits_per_second(plan.lm_run, encoded.codes, codec)
        row.lm_kbps = bits / 1000 if bits is not None else None
    _quality(task, reference, decoded, row)
    row.audio = _save(task, f"{_safe(codec.weights.name)}_{bandwidth:g}kbps", decoded)
    return _Output(task, row, counts, lm_note)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _baseline(task: _Task) -> _Output:
    codec: Codec = _WORKER["codec"]
    setting: BaselineSetting = task.baseline  # type: ignore[assignment]
    reference = _reference(task.path)
    duration = reference.shape[-1] / codec.sample_rate
    result = run_baseline(setting, reference, codec.sample_rate, speech=task.kind == SPEECH)
    row = ResultRow(task.path, task.kind, duration, setting.system, "baseline", setting.label,
                    nominal_kbps=setting.target_kbps, sample_rate=codec.sample_rate,
                    si_sdr_meaningful=result.si_sdr_meaningful, note=result.note)
    if result.wav is None:
        return _Output(task, row)
    row.file_kbps = result.file_kbps
    row.encode_rtf = duration / max(result.encode_seconds, 1e-9)
    row.decode_rtf = duration / max(result.decode_seconds, 1e-9)
    _quality(task, reference, result.wav, row)
    row.audio = _save(task, f"{setting.system}_{setting.target_kbps:g}k", result.wav)
    return _Output(task, row)


def _original(task: _Task) -> _Output:
    """The reference itself: its listening copy, the input file's bitrate and (speech) its DNSMOS as a ceiling."""
    codec: Codec = _WORKER["codec"]
    plan: _Plan = _WORKER["plan"]
    reference = _reference(task.path)
    duration = reference.shape[-1] / codec.sample_rate
    row = ResultRow(task.path, task.kind, duration, "original", "reference",
                    f"{codec.sample_rate / 1000:g} kHz, {codec.channels} ch", file_kbps=task.file_kbps,
                    sample_rate=codec.sample_rate)
    if task.kind == SPEECH and plan.dnsmos:
        _fill_dnsmos(row, reference)
    row.audio = _save(task, "original", reference)
    return _Output(task, row)


def _run_task(task: _Task) -> _Output:
    if task.system == "original":
        return _original(task)
    if task.system == "neural":
        return _neural(task)
    return _baseline(task)


# ---------------------------------------------------------------------------------------------------------- driver
def _tasks(files: list[InputFile], bandwidths: Sequence[float], baselines: Sequence[BaselineSetting]) -> list[_Task]:
    tasks = []
    for index, item in enumerate(files):
        common = dict(index=index, path=item.path, kind=item.kind, slug=item.slug, file_kbps=item.file_kbps)
        tasks.append(_Task(system="original", **common))
        tasks.extend(_Task(system="neural", bandwidth=b, **common) for b in bandwidths)
        tasks.extend(_Task(system=s.system, baseline=s, **common) for s in baselines)
    return tasks


def _execute(tasks: list[_Task], codec: Codec, plan: _Plan, jobs: int, progress: bool) -> list[_Output]:
    from tqdm.auto import tqdm

    bar = tqdm(total=len(tasks), desc="sweep", unit="run", disable=not progress)
    outputs: list[_Output] = []
    try:
        if jobs <= 1:
            _init_worker(codec, plan, None)
            for task in tasks:
                setting = task.baseline.label if task.baseline else f"{task.system} {task.bandwidth or ''}"
                bar.set_postfix_str(f"{task.slug} {setting}".strip(), refresh=False)
                outputs.append(_run_task(task))
                bar.update()
            return outputs
        threads = max(1, (os.cpu_count() or 1) // jobs)
        context = multiprocessing.get_context("spawn")  # fork after torch has started threads can deadlock
        with ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker,
                                 initargs=(codec, plan, threads)) as pool:
            futures = [pool.submit(_run_task, task) for task in tasks]
            for future in as_completed(futures):
                outputs.append(future.result())
                bar.update()
        return outputs
    finally:
        bar.close()


def _group_counts(outputs: list[_Output], files: list[InputFile]) -> dict[tuple[str, float], tuple[np.ndarray, list]]:
    """(group, bandwidth) -> (pooled counts [K, N], the neural outputs pooled)."""
    pooled: dict[tuple[str, float], tuple[np.ndarray, list]] = {}
    for output in outputs:
        if output.counts is None:
            continue
        for group in ("all", files[output.task.index].kind):
            key = (group, float(output.task.bandwidth))  # type: ignore[arg-type]
            if key in pooled:
                pooled[key] = (pooled[key][0] + output.counts, pooled[key][1] + [output])
            else:
                pooled[key] = (output.counts.copy(), [output])
    return pooled


def _token_tables(outputs: list[_Output], files: list[InputFile], codec: Codec
                  ) -> tuple[list[CodebookRow], list[TokenSummary]]:
    codebooks, summary = [], []
    groups = ["all", SPEECH, MUSIC]
    pooled = _group_counts(outputs, files)
    for (group, bandwidth), (counts, members) in sorted(pooled.items(), key=lambda kv: (groups.index(kv[0][0]),
                                                                                       kv[0][1])):
        rows = token_statistics(group, bandwidth, counts, codec.frame_rate, codec.cardinality)
        codebooks.extend(rows)
        seconds = sum(m.row.duration_s for m in members)
        lm = [(m.row.lm_kbps, m.row.duration_s) for m in members if m.row.lm_kbps is not None]
        lm_kbps = sum(v * d for v, d in lm) / sum(d for _, d in lm) if lm else None
        k = counts.shape[0]
        summary.append(TokenSummary(group, bandwidth, k, len(members), seconds, k * codec.frame_rate,
                                    codec.bandwidth_for(k), ideal_kbps(counts, codec.frame_rate),
                                    float(np.mean([r.usage for r in rows])),
                                    float(np.mean([r.perplexity for r in rows])), lm_kbps))
    return codebooks, summary


def _write_csv(path: Path, rows: Sequence, columns: Sequence[str]) -> None:
    with open(path, "w", newline="") as fo:
        writer = csv.DictWriter(fo, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            values = asdict(row)
            writer.writerow({k: ("" if values[k] is None else values[k]) for k in columns})


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def write_results(result: SweepResult) -> None:
    """Writes `results.csv`, `results.json`, `tokens.csv` and `tokens_summary.csv` into `result.out_dir`."""
    out = Path(result.out_dir)
    _write_csv(out / "results.csv", result.rows, RESULT_COLUMNS)
    _write_csv(out / "tokens.csv", result.codebooks, [f.name for f in fields(CodebookRow)])
    _write_csv(out / "tokens_summary.csv", result.token_summary, [f.name for f in fields(TokenSummary)])
    document = {"meta": result.meta(), "rows": [r.to_dict() for r in result.rows],
                "token_summary": [asdict(s) for s in result.token_summary],
                "codebooks": [asdict(c) for c in result.codebooks]}
    (out / "results.json").write_text(json.dumps(_json_safe(document), indent=1) + "\n")


def read_results(out_dir: str | os.PathLike) -> SweepResult:
    """Loads the `SweepResult` a sweep saved in `out_dir/results.json` (e.g. to re-render the report)."""
    path = Path(out_dir) / "results.json"
    try:
        document = json.loads(path.read_text())
        meta = dict(document["meta"])
        meta["files"] = [InputFile(**f) for f in meta["files"]]
        return SweepResult(rows=[ResultRow(**r) for r in document["rows"]],
                           codebooks=[CodebookRow(**c) for c in document["codebooks"]],
                           token_summary=[TokenSummary(**t) for t in document["token_summary"]], **meta)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CodecError(f"{path}: not a sweep result ({' '.join(str(error).split())})") from None


def _sort_key(row: ResultRow, order: dict[str, int]) -> tuple:
    family = {"reference": 0, "neural": 1, "baseline": 2}[row.family]
    return order[row.file], family, row.system, row.nominal_kbps or 0.0


def run_sweep(
    inputs: Iterable[str | os.PathLike],
    codec: Codec,
    out_dir: str | os.PathLike,
    *,
    bandwidths: Sequence[float] | None = None,
    baselines: Sequence[BaselineSetting] = DEFAULT_SETTINGS,
    speech_globs: Sequence[str] = (),
    music_globs: Sequence[str] = (),
    dnsmos: bool = True,
    lm_run: str | os.PathLike | None = None,
    jobs: int = 1,
    progress: bool = True,
    report: bool = True,
) -> SweepResult:
    """Sweeps `codec` over `bandwidths` (default: all it offers) and `baselines` on every input; writes `out_dir`.

    Args:
        inputs: audio files and/or folders (searched recursively).
        codec: the neural codec under test.
        out_dir: output folder (created; existing result files in it are overwritten).
        bandwidths: kbps settings of the codec; default `codec.bandwidths`.
        baselines: classic codec settings; those whose tool is missing are skipped with a note.
        speech_globs: file-name/path globs forced to speech (see `classify`).
        music_globs: globs forced to music.
        dnsmos: compute DNSMOS for speech (about 1-2 s per output; cached under `out_dir/cache`).
        lm_run: an audiolm run folder; adds the LM's bits per second (see `lm_bits_per_second`).
        jobs: worker processes (1 = in this process).
        progress: show a tqdm bar.
        report: write plots and `report.html` (`codec.report.write_report`).
    """
    started = time.perf_counter()
    paths = collect_inputs(inputs)
    bandwidths = [float(b) for b in (bandwidths or codec.bandwidths)]
    for bandwidth in bandwidths:
        codec.codebooks_for(bandwidth)  # a BandwidthError now, not after minutes of work
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise CodecError(f"{out}: exists and is not a folder; --report takes a folder (report.html goes inside)")
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for path, slug in zip(paths, _slugs(paths), strict=True):
        info = audio_info(path)  # unreadable inputs fail here, before any work
        kind, rule = classify(path, speech_globs, music_globs)
        size_kbps = path.stat().st_size * 8 / 1000 / max(info.duration, 1e-9)
        files.append(InputFile(str(path), kind, rule, slug, size_kbps))
    notes = []
    runnable = []
    for setting in baselines:
        missing = missing_tools(setting.system)
        if missing:
            note = f"{setting.system}: skipped, {', '.join(missing)} not installed"
            if note not in notes:
                notes.append(note)
        else:
            runnable.append(setting)
    plan = _Plan(str(out), dnsmos, str(lm_run) if lm_run is not None else None)
    outputs = _execute(_tasks(files, bandwidths, runnable), codec, plan, max(1, jobs), progress)
    for output in outputs:
        if output.lm_note and output.lm_note not in notes:
            notes.append(output.lm_note)
    order = {f.path: i for i, f in enumerate(files)}
    rows = sorted((o.row for o in outputs), key=lambda r: _sort_key(r, order))
    codebooks, summary = _token_tables(outputs, files, codec)
    result = SweepResult(str(out), codec.weights.name, codec.weights.sha256, codec.sample_rate, codec.channels,
                         codec.frame_rate, codec.cardinality, bandwidths, files, rows, codebooks, summary, notes,
                         plan.lm_run, max(1, jobs))
    result.elapsed_s = time.perf_counter() - started
    write_results(result)
    if report:
        from .report import write_report

        result.report_html = str(write_report(result))
        result.elapsed_s = time.perf_counter() - started
        write_results(result)
    return result



def summary_table(rows: list[dict]) -> str:
    """Markdown table of means per kind x system x setting over `rows` (dicts of `results.csv` or `ResultRow.to_dict`):
    measured kbps, PESQ-wb, STOI, SI-SDR (left out where meaningless), log-mel distance."""
    metrics = ["file_kbps", "pesq_wb", "stoi", "si_sdr", "mel_distance"]
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        if r["family"] == "reference":
            continue
        groups[(r["kind"], r["family"] != "neural", r["system"], float(r["nominal_kbps"] or 0), r["setting"])].append(r)
    lines = ["| audio | system | setting | kbps (file) | PESQ-wb | STOI | SI-SDR dB | mel dist |",
             "|---|---|---|---|---|---|---|---|"]
    for key in sorted(groups, key=lambda k: (k[0] != "speech", k[1], k[2], k[3])):
        kind, _, system, _, setting = key
        values = []
        for m in metrics:
            xs = [float(r[m]) for r in groups[key] if r.get(m) not in (None, "", "None")]
            if m == "si_sdr":
                xs = [float(r[m]) for r in groups[key] if r.get(m) not in (None, "", "None")
                      and str(r.get("si_sdr_meaningful", "True")) == "True"]
            digits = 2 if m in ("file_kbps", "pesq_wb", "si_sdr") else 3
            values.append(f"{np.mean(xs):.{digits}f}" if xs else "–")
        lines.append(f"| {kind} | {system} | {setting} | " + " | ".join(values) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------- CLI
