"""Subcommands `compress`, `decompress`, `roundtrip`, `info`, `sweep`: parse, call `codec.pipeline` (or
`codec.sweep`), print.

Nothing is imported at module level beyond the standard library: the default codec runs on the torch-free runtime
(`--runtime auto`), and a command that does not need torch should not pay 3 s for importing it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .errors import CodecError


def _model_arg(p: argparse.ArgumentParser, runtime: bool = True) -> None:
    p.add_argument("--model", "-m", help="codec: default | encodec_24khz | encodec_48khz | HF id | path "
                   "(default: $CODEC_MODEL, else the embedded default)")
    if runtime:
        p.add_argument("--runtime", choices=("auto", "torch", "onnxruntime"), default="auto",
                       help="what runs the codec: auto (default) = onnxruntime for this project's frame codec "
                            "(no torch in the process; graphs exported to the cache on first use), torch otherwise")


def _load(name: str | None, runtime: str = "auto"):
    from .registry import load_codec

    return load_codec(name, runtime=runtime)


def _weights_line(codec) -> str:
    return f"model {codec.weights.name} (weights sha256 {codec.weights.sha256[:16] or 'n/a'})"


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compress", help="audio file -> .ecdc")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("-b", "--bandwidth", type=float, default=6.0, help="kbps (default 6)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("--json", action="store_true", help="print a JSON report")
    p.add_argument("--any-threads", action="store_true",
                   help="Meta's models: encode on every thread (faster; a few codes may then differ between thread "
                        "counts). By default the output bytes do not depend on the thread count")
    _model_arg(p)
    p.set_defaults(func=run_compress)

    p = sub.add_parser("decompress", help=".ecdc -> audio file (WAV/FLAC by suffix)")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--rate", type=int, help="output sample rate (default: the model's)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("--json", action="store_true")
    _model_arg(p)
    p.set_defaults(func=run_decompress)

    p = sub.add_parser("roundtrip", help="compress + decompress in memory, print bitrate, speed and quality")
    p.add_argument("input")
    p.add_argument("-b", "--bandwidth", type=float, default=6.0, help="kbps (default 6)")
    p.add_argument("--music", action="store_true", help="not speech: skip PESQ/STOI/DNSMOS")
    p.add_argument("--no-dnsmos", action="store_true", help="skip DNSMOS (slow: about 2 s per 9 s of audio)")
    p.add_argument("--out", help="also write the reconstruction here")
    p.add_argument("--force", action="store_true")
    p.add_argument("--json", action="store_true")
    _model_arg(p)
    p.set_defaults(func=run_roundtrip)

    p = sub.add_parser("info", help="known models, bandwidths, where weights are looked up")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_info)


def run_compress(args) -> int:
    from .pipeline import compress

    codec = _load(args.model, args.runtime)
    report = compress(codec, args.input, args.output, args.bandwidth, force=args.force,
                      deterministic=not args.any_threads)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(f"{args.output}: {_weights_line(codec)}, {report.bandwidth:g} kbps ({report.num_codebooks} codebooks), "
              f"{report.duration_s:.2f} s, {report.file_bytes} bytes = {report.file_kbps:.2f} kbps, "
              f"encode {report.encode_rtf:.1f}x real time")
    return 0


def run_decompress(args) -> int:
    from .container import read_header
    from .pipeline import decompress

    name = args.model
    if name is None and not os.environ.get("CODEC_MODEL"):
        try:  # a file made with Meta's architectures names its model; use it when none is given
            with open(args.input, "rb") as fo:
                header = read_header(fo)
            from .container import META_LAYOUTS

            name = header.model if header.model in META_LAYOUTS else None
        except (OSError, CodecError):
            name = None  # decompress reports the problem with the file
    codec = _load(name, args.runtime)
    report = decompress(codec, args.input, args.output, rate=args.rate, force=args.force)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(f"{args.output}: {_weights_line(codec)}, {report.num_codebooks} codebooks, {report.duration_s:.2f} s "
              f"at {report.sample_rate} Hz, decode {report.decode_rtf:.1f}x real time")
    return 0


def _fmt(value, digits=3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def run_roundtrip(args) -> int:
    from .pipeline import roundtrip

    codec = _load(args.model, args.runtime)
    report = roundtrip(codec, args.input, args.bandwidth, speech=not args.music, dnsmos=not args.no_dnsmos,
                       output=args.out, force=args.force)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
        return 0
    q = report.quality
    lines = [
        f"input      {report.input} ({report.duration_s:.2f} s)",
        f"model      {codec.weights.name}",
        f"weights    sha256 {codec.weights.sha256 or 'n/a'}",
        f"bandwidth  {report.bandwidth:g} kbps nominal = {report.num_codebooks} codebooks x "
        f"{codec.frame_rate:g} frames/s x {codec.bits_per_code} bits; .ecdc file {report.file_kbps:.2f} kbps",
        f"speed      encode {report.encode_rtf:.1f}x, decode {report.decode_rtf:.1f}x real time",
        f"SI-SDR     {_fmt(q.get('si_sdr'), 2)} dB        (higher is better)",
        f"mel dist   {_fmt(q.get('mel_distance'))}           (lower is better)",
        f"STFT dist  {_fmt(q.get('stft_distance'))}           (lower is better)",
    ]
    if not args.music:
        lines += [f"PESQ-wb    {_fmt(q.get('pesq_wb'), 2)}            (1-4.64, higher is better)",
                  f"STOI       {_fmt(q.get('stoi'))}           (0-1, higher is better)"]
        if not args.no_dnsmos:
            lines.append(f"DNSMOS     OVRL {_fmt(q.get('dnsmos_ovrl'), 2)} SIG {_fmt(q.get('dnsmos_sig'), 2)} "
                         f"BAK {_fmt(q.get('dnsmos_bak'), 2)}  (1-5, higher is better)")
    print("\n".join(lines))
    return 0


def run_info(args) -> int:
    from .interface import file_sha256
    from .loaders import KNOWN_MODELS, lookup_locations
    from .registry import DEFAULT_NAME, DEFAULT_WEIGHTS, resolve_name
    from .runtime.export import runtime_dir

    available = DEFAULT_WEIGHTS.is_file()
    export = runtime_dir(DEFAULT_WEIGHTS, file_sha256(DEFAULT_WEIGHTS)) if available else None
    rows = [{
        "name": DEFAULT_NAME, "sample_rate": 24000, "channels": 1, "bandwidths": [1.5, 3, 6, 12, 24],
        "weights": [str(DEFAULT_WEIGHTS)], "available": available,
        "note": "this project's own codec, trained offline on freely licensed audio (see codec/weights/MODEL_CARD.md)",
        "runtime": "onnxruntime (torch-free; --runtime torch for the torch model)",
        "runtime_export": None if export is None else str(export),
        "runtime_exported": bool(export and (export / "runtime.json").is_file()),
    }]
    for name, info in KNOWN_MODELS.items():
        places = lookup_locations(name)
        import glob

        rows.append({"name": name, "sample_rate": info.sample_rate, "channels": info.channels,
                     "bandwidths": list(info.bandwidths), "weights": places,
                     "available": any(glob.glob(p) for p in places),
                     "note": f"Meta's EnCodec; also loadable as {info.hf_id} (transformers format)",
                     "runtime": "torch"})
    if args.json:
        print(json.dumps({"selected": resolve_name(None), "models": rows}, indent=1))
        return 0
    print(f"selected by default: {resolve_name(None)} (override with --model or $CODEC_MODEL)")
    for row in rows:
        state = "available" if row["available"] else "not found"
        print(f"\n{row['name']}: {row['sample_rate']} Hz, {row['channels']} ch, "
              f"{'/'.join(f'{b:g}' for b in row['bandwidths'])} kbps [{state}]\n  {row['note']}")
        for place in row["weights"]:
            print(f"  looks in {place}")
        print(f"  runs on {row['runtime']}")
        if row.get("runtime_export"):
            state = "exported" if row["runtime_exported"] else "exported on first use"
            print(f"  runtime export {row['runtime_export']} ({state})")
    return 0


def add_sweep_parser(sub) -> None:
    """Adds `codec sweep` to the CLI's subparsers."""
    parser = sub.add_parser("sweep", help="bitrate vs quality report: every bandwidth, classic baselines, listening",
                            description="Run a codec at all its bandwidths (and Opus/MP3/Codec2 at similar bitrates) "
                                        "over files or folders; write results.csv/json, tokens.csv, plots and "
                                        "report.html into OUT_DIR.")
    parser.add_argument("inputs", nargs="+", help="audio files or folders (searched recursively)")
    parser.add_argument("--report", required=True, metavar="OUT_DIR", help="output folder")
    parser.add_argument("--model", "-m", default=None, help="codec name or path (default: CODEC_MODEL or the embedded)")
    parser.add_argument("--lm", default=None, metavar="RUN", help="audiolm run folder: add the LM's bits per second")
    parser.add_argument("--jobs", "-j", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--bandwidth", "-b", type=float, action="append", default=None,
                        help="only this bandwidth in kbps (repeatable; default: all the model offers)")
    parser.add_argument("--speech", action="append", default=[], metavar="GLOB", help="treat matching files as speech")
    parser.add_argument("--music", action="append", default=[], metavar="GLOB", help="treat matching files as music")
    parser.add_argument("--no-baselines", action="store_true", help="skip Opus, MP3 and Codec2")
    parser.add_argument("--no-dnsmos", action="store_true", help="skip DNSMOS (the slowest metric)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(func=run_sweep_cli)


def run_sweep_cli(args) -> int:
    from .registry import load_codec
    from .sweep import DEFAULT_SETTINGS, collect_inputs, run_sweep, summary_table

    collect_inputs(args.inputs)  # a typo in a path fails before a model loads
    codec = load_codec(args.model)
    if hasattr(codec, "eval"):
        codec.eval()
    result = run_sweep(args.inputs, codec, args.report, bandwidths=args.bandwidth,
                       baselines=() if args.no_baselines else DEFAULT_SETTINGS, speech_globs=args.speech,
                       music_globs=args.music, dnsmos=not args.no_dnsmos, lm_run=args.lm, jobs=args.jobs,
                       progress=not args.quiet)
    summary = {"report": result.report_html, "results": str(Path(result.out_dir) / "results.csv"),
               "model": result.model, "weights_sha256": result.weights_sha256, "files": len(result.files),
               "rows": len(result.rows), "elapsed_s": round(result.elapsed_s, 1), "notes": result.notes}
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(f"model {result.model} (sha256 {result.weights_sha256[:12] or 'none'}): {len(result.files)} files, "
              f"{len(result.rows)} rows in {result.elapsed_s:.1f} s")
        for note in result.notes:
            print(f"note: {note}")
        print(f"report: {result.report_html}")
        print(summary_table([row.to_dict() for row in result.rows]))
    return 0


if __name__ == "__main__":
    sys.exit("use `codec`")
