"""Subcommands `compress`, `decompress`, `roundtrip`, `info`: parse, call `codec.pipeline`, print."""

from __future__ import annotations

import argparse
import json
import os
import sys

from .errors import CodecError


def _model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "-m", help="codec: default | encodec_24khz | encodec_48khz | HF id | path "
                   "(default: $CODEC_MODEL, else the embedded default)")


def _load(name: str | None):
    from .registry import load_codec

    return load_codec(name)


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

    codec = _load(args.model)
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
            from .loaders import KNOWN_MODELS

            name = header.model if header.model in KNOWN_MODELS else None
        except (OSError, CodecError):
            name = None  # decompress reports the problem with the file
    codec = _load(name)
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

    codec = _load(args.model)
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
    from .loaders import KNOWN_MODELS, lookup_locations
    from .registry import DEFAULT_NAME, DEFAULT_WEIGHTS, resolve_name

    rows = [{
        "name": DEFAULT_NAME, "sample_rate": 24000, "channels": 1, "bandwidths": [1.5, 3, 6, 12, 24],
        "weights": [str(DEFAULT_WEIGHTS)], "available": DEFAULT_WEIGHTS.is_file(),
        "note": "this project's own codec, trained offline on freely licensed audio (see codec/weights/MODEL_CARD.md)",
    }]
    for name, info in KNOWN_MODELS.items():
        places = lookup_locations(name)
        import glob

        rows.append({"name": name, "sample_rate": info.sample_rate, "channels": info.channels,
                     "bandwidths": list(info.bandwidths), "weights": places,
                     "available": any(glob.glob(p) for p in places),
                     "note": f"Meta's EnCodec; also loadable as {info.hf_id} (transformers format)"})
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
    return 0


if __name__ == "__main__":
    sys.exit("use `codec`")
