"""The sweep's report: PNG plots (matplotlib, Agg) and one `report.html` with tables, plots and audio players.

`write_report(result)` reads a `codec.sweep.SweepResult` and writes into its `out_dir`:
- `plots/quality_speech.png`, `plots/quality_music.png`: each metric vs measured kbps (log axis), the mean over the
  files of that kind, one line per system (the neural codec over its bandwidths, Opus, MP3, Codec2);
- `plots/codebooks.png`: per-codebook usage and entropy; `plots/bitrates.png`: nominal vs entropy-coded vs LM kbps;
- `report.html`: links images and audio by relative paths (`plots/`, `audio/`), so the folder works wherever it is
  copied; it needs no network and no script beyond a small inline check that flags media that failed to load.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .sweep import ResultRow, SweepResult

# (field, label, higher is better)
METRICS: dict[str, tuple[str, bool]] = {
    "pesq_wb": ("PESQ-wb", True),
    "stoi": ("STOI", True),
    "dnsmos_ovrl": ("DNSMOS OVRL", True),
    "si_sdr": ("SI-SDR (dB)", True),
    "mel_distance": ("log-mel distance", False),
    "stft_distance": ("MR-STFT distance", False),
}
SPEECH_METRICS = ("pesq_wb", "stoi", "dnsmos_ovrl", "si_sdr", "mel_distance", "stft_distance")
MUSIC_METRICS = ("si_sdr", "mel_distance", "stft_distance")
COLORS = {"opus": "tab:orange", "mp3": "tab:green", "codec2": "tab:purple"}
NEURAL_COLOR = "tab:blue"


def _metric_value(row: ResultRow, metric: str) -> float | None:
    value = getattr(row, metric)
    if metric == "si_sdr" and not row.si_sdr_meaningful:
        return None
    return value if value is not None and math.isfinite(value) else None


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def _curves(rows: list[ResultRow], metric: str) -> dict[str, list[tuple[float, float, str]]]:
    """system -> [(mean file kbps, mean metric, setting)] over the rows' files, sorted by kbps."""
    by_setting: dict[tuple[str, str], list[ResultRow]] = defaultdict(list)
    for row in rows:
        if row.family != "reference" and row.file_kbps is not None:
            by_setting[(row.system, row.setting)].append(row)
    curves: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for (system, setting), members in by_setting.items():
        value = _mean([_metric_value(r, metric) for r in members])
        if value is not None:
            curves[system].append((float(np.mean([r.file_kbps for r in members])), value, setting))
    return {system: sorted(points) for system, points in curves.items()}


def plot_quality(rows: list[ResultRow], metrics: tuple[str, ...], title: str, path: Path) -> Path:
    """Quality vs measured kbps, one panel per metric; the reference's DNSMOS as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(3, len(metrics))
    lines = math.ceil(len(metrics) / columns)
    figure, axes = plt.subplots(lines, columns, figsize=(4.6 * columns, 3.6 * lines), squeeze=False)
    for axis, metric in zip(axes.flat, metrics, strict=False):
        label, higher = METRICS[metric]
        for system, points in sorted(_curves(rows, metric).items()):
            kbps, values, _ = zip(*points, strict=True)
            neural = system not in COLORS
            axis.plot(kbps, values, marker="o" if neural else "s", linewidth=2.2 if neural else 1.4,
                      color=NEURAL_COLOR if neural else COLORS[system], label=system)
        if metric == "dnsmos_ovrl":
            reference = _mean([r.dnsmos_ovrl for r in rows if r.family == "reference"])
            if reference is not None:
                axis.axhline(reference, color="gray", linestyle="--", linewidth=1, label="original")
        _kbps_axis(axis)
        axis.set_title(f"{label} ({'higher' if higher else 'lower'} is better)", fontsize=10)
        axis.grid(True, which="both", alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7)
        else:
            axis.text(0.5, 0.5, "no scores", transform=axis.transAxes, ha="center", color="gray")
    for axis in list(axes.flat)[len(metrics):]:
        axis.set_visible(False)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


KBPS_TICKS = (0.75, 1.5, 3, 6, 12, 24, 48, 96, 192)


def _kbps_axis(axis) -> None:
    """Log x axis labelled with plain kbps numbers (no 10^x minor-tick labels)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axis.set_xscale("log")
    low, high = axis.get_xlim()
    axis.set_xticks([t for t in KBPS_TICKS if low <= t <= high])
    axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.xaxis.set_minor_formatter(NullFormatter())
    axis.set_xlim(low, high)
    axis.set_xlabel("measured kbps")


def plot_codebooks(result: SweepResult, path: Path) -> Path:
    """Per-codebook usage (fraction of entries used) and entropy (bits), pooled over all files, at the highest
    bandwidth swept (residual VQ: codebook k's codes do not depend on how many follow it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [c for c in result.codebooks if c.group == "all"]
    top = max((c.bandwidth_kbps for c in rows), default=None)
    rows = [c for c in rows if c.bandwidth_kbps == top]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 3.4))
    index = [c.codebook for c in rows]
    left.bar(index, [c.usage for c in rows], color=NEURAL_COLOR)
    left.set_ylim(0, 1.05)
    left.set_xlabel("codebook")
    left.set_title("usage: fraction of entries used", fontsize=10)
    right.bar(index, [c.entropy_bits for c in rows], color=NEURAL_COLOR, label="entropy")
    if result.cardinality:
        right.axhline(math.log2(result.cardinality), color="gray", linestyle="--", linewidth=1,
                      label=f"log2({result.cardinality})")
    right.set_xlabel("codebook")
    right.set_title("entropy (bits per code)", fontsize=10)
    right.legend(fontsize=7)
    figure.suptitle(f"{result.model}: codebooks at {top:g} kbps, all files" if top is not None else result.model)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def plot_bitrates(result: SweepResult, path: Path) -> Path:
    """Nominal kbps vs the ideal entropy-coded kbps (and the LM's, when measured) per bandwidth, all files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [s for s in result.token_summary if s.group == "all"]
    figure, axis = plt.subplots(figsize=(6.5, 3.4))
    positions = np.arange(len(rows))
    series = [("nominal", [s.nominal_kbps for s in rows], "lightgray"),
              ("entropy-coded (ideal)", [s.entropy_kbps for s in rows], NEURAL_COLOR)]
    if any(s.lm_kbps is not None for s in rows):
        series.append(("audio LM", [s.lm_kbps or 0.0 for s in rows], "tab:red"))
    width = 0.8 / len(series)
    for i, (label, values, color) in enumerate(series):
        axis.bar(positions + (i - (len(series) - 1) / 2) * width, values, width, label=label, color=color)
    axis.set_xticks(positions, [f"{s.bandwidth_kbps:g}" for s in rows])
    axis.set_xlabel("codec setting (kbps)")
    axis.set_ylabel("kbps")
    axis.set_title("bits per second of audio", fontsize=10)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


# ------------------------------------------------------------------------------------------------------------ html
def _fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _table(header: list[str], body: list[list[str]], css: str = "") -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in body)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def _si_sdr_cell(row: ResultRow) -> str:
    if not row.si_sdr_meaningful:
        return f'<span class="na" title="parametric codec: SI-SDR not meaningful">{_fmt(row.si_sdr, 1)}*</span>'
    return _fmt(row.si_sdr, 1)


def _metric_cells(row: ResultRow, speech: bool) -> list[str]:
    cells = [_si_sdr_cell(row), _fmt(row.mel_distance), _fmt(row.stft_distance)]
    if speech:
        cells = [_fmt(row.pesq_wb), _fmt(row.stoi, 3), _fmt(row.dnsmos_ovrl)] + cells
    return cells


def _metric_header(speech: bool) -> list[str]:
    header = ["SI-SDR dB ↑", "mel ↓", "MR-STFT ↓"]
    return (["PESQ-wb ↑", "STOI ↑", "DNSMOS ↑"] + header) if speech else header


def _summary_table(rows: list[ResultRow], kind: str) -> str:
    """Mean over the files of `kind`, one line per system and setting."""
    speech = kind == "speech"
    groups: dict[tuple[str, str, str], list[ResultRow]] = defaultdict(list)
    for row in rows:
        if row.kind == kind:
            groups[(row.family, row.system, row.setting)].append(row)
    family_order = {"reference": 0, "neural": 1, "baseline": 2}
    body = []
    for (_family, system, setting), members in sorted(
            groups.items(), key=lambda kv: (family_order[kv[0][0]], kv[0][1], kv[1][0].nominal_kbps or 0.0)):
        mean = {metric: _mean([getattr(m, metric) for m in members]) for metric in
                ("file_kbps", "encode_rtf", "decode_rtf", "si_sdr", "mel_distance", "stft_distance", "pesq_wb",
                 "stoi", "dnsmos_ovrl")}
        proxy = replace(members[0], **mean)  # a row holding the means, to format like any other
        notes = sorted({m.note for m in members if m.note})
        body.append([html.escape(system), html.escape(setting), _fmt(mean["file_kbps"]),
                     *_metric_cells(proxy, speech), _fmt(mean["encode_rtf"], 1), _fmt(mean["decode_rtf"], 1),
                     str(len(members)), html.escape("; ".join(notes))])
    header = ["system", "setting", "kbps (file)", *_metric_header(speech), "enc ×RT", "dec ×RT", "files", "note"]
    return _table(header, body, "summary")


def _token_table(result: SweepResult) -> str:
    lm = result.lm_run is not None
    body = []
    for s in result.token_summary:
        cells = [s.group, f"{s.bandwidth_kbps:g}", str(s.num_codebooks), _fmt(s.tokens_per_second, 0),
                 _fmt(s.nominal_kbps), _fmt(s.entropy_kbps), _fmt(s.mean_usage, 3), _fmt(s.mean_perplexity, 1),
                 str(s.files), _fmt(s.seconds, 1)]
        if lm:
            cells.insert(6, _fmt(s.lm_kbps))
        body.append(cells)
    header = ["group", "setting kbps", "K", "tokens/s", "nominal kbps", "entropy kbps", "mean usage",
              "mean perplexity", "files", "seconds"]
    if lm:
        header.insert(6, "LM kbps")
    return _table(header, body, "tokens")


def _listening(result: SweepResult) -> str:
    by_file: dict[str, list[ResultRow]] = defaultdict(list)
    for row in result.rows:
        by_file[row.file].append(row)
    sections = []
    for item in result.files:
        speech = item.kind == "speech"
        body = []
        for row in by_file.get(item.path, []):
            player = (f'<audio controls preload="metadata" src="{html.escape(row.audio)}"></audio>' if row.audio
                      else '<span class="na">no output</span>')
            body.append([html.escape(row.system), html.escape(row.setting), _fmt(row.file_kbps),
                         *_metric_cells(row, speech), player, html.escape(row.note)])
        header = ["system", "setting", "kbps", *_metric_header(speech), "listen", "note"]
        sections.append(f'<h3 id="{html.escape(item.slug)}">{html.escape(Path(item.path).name)} '
                        f'<small>{item.kind} ({html.escape(item.rule)}), {_fmt(by_file[item.path][0].duration_s, 1)} s'
                        f'</small></h3>' + _table(header, body, "listen"))
    return "\n".join(sections)


def _full_table(rows: list[ResultRow]) -> str:
    from dataclasses import fields

    from .sweep import ResultRow as Row

    columns = [f.name for f in fields(Row) if f.name not in ("audio",)]
    body = [[_fmt(getattr(r, c), 3) if isinstance(getattr(r, c), float) else _fmt(getattr(r, c)) for c in columns]
            for r in rows]
    return _table(columns, body, "full")


TEMPLATE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Bitrate vs quality: $model</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1400px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
h3 small { font-weight: normal; color: #666; }
table { border-collapse: collapse; font-size: 13px; margin: .5em 0 1em; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; } td:first-child, td:nth-child(2) { text-align: left; }
table.full td { font-size: 11px; } td:last-child { text-align: left; white-space: normal; color: #555; }
audio { height: 30px; width: 260px; vertical-align: middle; }
.na { color: #999; text-decoration: line-through; }
.meta td { text-align: left; } .plots img { max-width: 100%; border: 1px solid #eee; margin: .5em 0; }
#missing { background: #fdd; border: 1px solid #c00; padding: .5em; }
.notes li { color: #a40; }
</style>
</head>
<body>
<h1>Bitrate vs quality: $model</h1>
<div id="missing" hidden></div>
<table class="meta">
<tr><td>model</td><td>$model</td></tr>
<tr><td>weights sha256</td><td><code>$sha256</code></td></tr>
<tr><td>codec</td><td>$rate Hz, $channels channel(s), $frame_rate frames/s, $cardinality entries per codebook</td></tr>
<tr><td>files</td><td>$files</td></tr>
<tr><td>made</td><td>$made, in $elapsed s with $jobs job(s)</td></tr>
<tr><td>data</td><td><a href="results.csv">results.csv</a>, <a href="results.json">results.json</a>,
 <a href="tokens.csv">tokens.csv</a>, <a href="tokens_summary.csv">tokens_summary.csv</a></td></tr>
</table>
$notes
<p>Every system is scored against the input converted to the codec's rate and channels (the <em>original</em> rows
play exactly that). Waveform metrics run after removing the output's delay (up to 0.25 s). kbps = measured file
size / duration. ↑ higher is better, ↓ lower is better; ×RT = seconds of audio per second of compute (baselines include
process start-up). PESQ, STOI and DNSMOS are for speech only. <span class="na">Struck-through*</span> SI-SDR: Codec2
is parametric, its SI-SDR means nothing.</p>
<h2>Summary (mean over files)</h2>
$summaries
<h2>Plots</h2>
<div class="plots">$plots</div>
<h2>Tokens</h2>
<p>tokens/s = K × frame rate (a flattened sequence); usage = fraction of the $cardinality entries seen; perplexity =
2<sup>entropy</sup>; entropy kbps = Σ<sub>codebooks</sub> entropy × frame rate / 1000, what an ideal entropy coder
without context would reach (estimated from few codes it is biased low). $lm_text</p>
$tokens
<h2>Listen</h2>
$listening
<h2>All rows</h2>
<details><summary>$row_count rows (as in results.csv)</summary>
$full
</details>
<script>
(function () {
  var missing = [];
  function flag(source) {
    missing.push(source);
    var box = document.getElementById("missing");
    box.hidden = false;
    box.textContent = missing.length + " image/audio file(s) could not be loaded (copy the whole report folder): "
      + missing.slice(0, 5).join(", ");
    document.body.setAttribute("data-media-errors", String(missing.length));
  }
  document.querySelectorAll("audio").forEach(function (audio) {
    if (audio.error) { flag(audio.getAttribute("src")); }
    audio.addEventListener("error", function () { flag(audio.getAttribute("src")); });
  });
  window.addEventListener("load", function () {
    var loaded = 0;
    document.querySelectorAll("img").forEach(function (image) {
      if (image.complete && image.naturalWidth > 0) { loaded += 1; } else { flag(image.getAttribute("src")); }
    });
    document.body.setAttribute("data-images-loaded", String(loaded));
  });
})();
</script>
</body>
</html>
""")


def write_report(result: SweepResult) -> Path:
    """Writes the plots and `report.html` into `result.out_dir`; returns the HTML's path."""
    out = Path(result.out_dir)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    kinds = [kind for kind in ("speech", "music") if any(f.kind == kind for f in result.files)]
    plots = []
    for kind in kinds:
        rows = [r for r in result.rows if r.kind == kind]
        metrics = SPEECH_METRICS if kind == "speech" else MUSIC_METRICS
        name = f"plots/quality_{kind}.png"
        files = sum(f.kind == kind for f in result.files)
        plot_quality(rows, metrics, f"{kind}: quality vs bitrate, mean over {files} file(s)", out / name)
        plots.append(name)
    if result.codebooks:
        plot_codebooks(result, out / "plots/codebooks.png")
        plot_bitrates(result, out / "plots/bitrates.png")
        plots += ["plots/codebooks.png", "plots/bitrates.png"]
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in result.notes)
    lm_text = (f"LM kbps: bits per second of audio under the audio LM <code>{html.escape(result.lm_run)}</code>."
               if result.lm_run else "No audio LM given (<code>--lm RUN</code> adds its bits per second).")
    page = TEMPLATE.substitute(
        model=html.escape(result.model), sha256=html.escape(result.weights_sha256 or "(none)"),
        rate=result.sample_rate, channels=result.channels, frame_rate=f"{result.frame_rate:g}",
        cardinality=result.cardinality,
        files=", ".join(f'<a href="#{html.escape(f.slug)}">{html.escape(Path(f.path).name)}</a> ({f.kind})'
                        for f in result.files),
        made=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), elapsed=f"{result.elapsed_s:.0f}",
        jobs=result.jobs, notes=f'<ul class="notes">{notes}</ul>' if notes else "",
        summaries="".join(f"<h3>{kind}</h3>" + _summary_table(result.rows, kind) for kind in kinds),
        plots="".join(f'<img src="{p}" alt="{p}">' for p in plots),
        lm_text=lm_text, tokens=_token_table(result), listening=_listening(result), row_count=len(result.rows),
        full=_full_table(result.rows),
    )
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
