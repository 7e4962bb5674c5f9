"""Long-input benchmark: compress and decompress an N-minute file, report peak memory and wall time, check the codes.

    python scripts/bench_long_input.py --minutes 60                    # the default codec, 1 hour
    python scripts/bench_long_input.py --minutes 10 --model tiny.safetensors --json

1. Writes a synthetic, speech-like mono 16-bit WAV at the model rate (noise shaped by a syllable-rate envelope and a
   gliding pitch; block by block, so writing it needs no memory).
2. Runs `codec compress` and `codec decompress` each in a fresh process and reads that process's own peak resident
   memory (`VmHWM`, see `peakmem.py`: `ru_maxrss` would include the parent's) and wall time.
3. Checks the bounded-memory promise: the codes in the file equal a direct, unchunked encode of windows of the input
   (the start; for the frame codec also a window across a chunk boundary in the middle and the end, each with a
   margin wider than the model's receptive field); near-ties of the nearest-codebook search may flip a few codes,
   so at most `--max-code-mismatch` of them may differ. The decoded file must have the input's length.
Exits 1 if a check fails or a step's peak memory exceeds `--max-memory-gb` (default 2).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from peakmem import peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import json, sys, time
start = time.perf_counter()
sys.path.insert(0, "scripts")
from peakmem import peak_rss_mb
from codec.__main__ import main
code = main(sys.argv[1:])
print(json.dumps({"rc": code, "seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb()}), file=sys.stderr)
sys.exit(code)
"""


def write_speechlike(path: Path, minutes: float, rate: int, seed: int = 0) -> int:
    """Writes `minutes` of speech-like noise as 16-bit mono WAV, 10 s at a time; returns the number of samples."""
    total = int(minutes * 60 * rate)
    rng = np.random.default_rng(seed)
    block = 10 * rate
    phase = 0.0
    with sf.SoundFile(str(path), "w", rate, 1, subtype="PCM_16", format="WAV") as f:
        for start in range(0, total, block):
            n = min(block, total - start)
            t = (start + np.arange(n)) / rate
            envelope = np.clip(np.sin(2 * np.pi * 4.0 * t + np.sin(2 * np.pi * 0.3 * t)), 0, None) ** 2  # syllables
            pitch = 120 + 40 * np.sin(2 * np.pi * 0.5 * t)  # gliding voice, Hz
            phases = phase + 2 * np.pi * np.cumsum(pitch) / rate
            phase = float(phases[-1])
            voiced = np.sign(np.sin(phases)) * 0.15  # buzzy source, rich in harmonics
            noise = rng.standard_normal(n) * 0.05
            f.write((envelope * (voiced + noise) + 0.002 * rng.standard_normal(n)).astype(np.float32))
    return total


def run_step(args: list[str]) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in done.stderr.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"error: `codec {' '.join(args)}` failed: {done.stderr.strip()[-1000:]}")
    return json.loads(lines[-1])


def windows(codec, frames: int, window_frames: int) -> list[int]:
    """First frames of the windows to check against a direct encode."""
    if not hasattr(codec, "chunk_frames"):
        return [0]  # causal streaming models: the prefix is exact; elsewhere the streaming state differs
    middle = (frames // 2 // codec.chunk_frames) * codec.chunk_frames - window_frames // 2  # across a chunk edge
    return sorted({0, max(0, middle), max(0, frames - window_frames)})


def check_codes(codec, source: Path, ecdc: Path, bandwidth: float, window_seconds: float) -> dict:
    """Compares windows of the file's codes with direct encodes of the same audio (plus margins)."""
    from codec.pipeline import read_container

    with open(ecdc, "rb") as fo:
        codes = read_container(codec, fo).codes  # [1, K, T]
    hop = round(codec.sample_rate / codec.frame_rate)
    frames = codes.shape[-1]
    window = min(frames, int(window_seconds * codec.frame_rate))
    starts = windows(codec, frames, window)
    margin = 0
    if hasattr(codec, "chunk_frames"):
        margin = codec._context()[0] + 8
        codec.chunk_frames = 10**9  # direct: one pass over the window
    compared = differing = 0
    for first in starts:
        lo = max(0, first - margin)
        hi = min(frames, first + window + margin)
        audio, _ = sf.read(str(source), start=lo * hop, stop=min(hi * hop, sf.info(str(source)).frames),
                           dtype="float32", always_2d=True)
        wav = torch.from_numpy(audio.T.copy())[None]
        with torch.inference_mode():
            direct = codec.encode(wav, bandwidth).codes[..., first - lo: first - lo + window]
        expected = codes[..., first: first + window]
        compared += expected.numel()
        differing += int((direct != expected).sum())
    return {"windows": len(starts), "window_seconds": window / codec.frame_rate,
            "codes_compared": compared, "codes_differing": differing, "frames": frames}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--model", default=None, help="codec name or path (default: $CODEC_MODEL or the default codec)")
    p.add_argument("-b", "--bandwidth", type=float, default=6.0)
    p.add_argument("--workdir", help="where the files go (default: a temporary folder, removed afterwards)")
    p.add_argument("--max-memory-gb", type=float, default=2.0)
    p.add_argument("--max-code-mismatch", type=float, default=0.001, help="fraction of codes allowed to differ")
    p.add_argument("--window-seconds", type=float, default=60.0, help="length of each directly encoded window")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    from codec.registry import load_codec

    codec = load_codec(args.model)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        folder = Path(args.workdir or tmp)
        source, ecdc, decoded = folder / "long.wav", folder / "long.ecdc", folder / "long.decoded.wav"
        start = time.perf_counter()
        samples = write_speechlike(source, args.minutes, codec.sample_rate)
        write_seconds = time.perf_counter() - start
        model = ["--model", args.model] if args.model else []
        compress = run_step(["compress", str(source), str(ecdc), "-b", str(args.bandwidth), "--force", *model])
        decompress = run_step(["decompress", str(ecdc), str(decoded), "--force", *model])
        out_samples = sf.info(str(decoded)).frames
        codes = check_codes(codec, source, ecdc, args.bandwidth, args.window_seconds)
        report = {
            "model": codec.weights.name, "weights_sha256": codec.weights.sha256, "minutes": args.minutes,
            "input_bytes": source.stat().st_size, "ecdc_bytes": ecdc.stat().st_size, "write_input_s": write_seconds,
            "compress": compress, "decompress": decompress, "input_samples": samples, "decoded_samples": out_samples,
            "code_check": codes, "threads": torch.get_num_threads(),
            "peak_rss_this_process_mb": peak_rss_mb(),
        }
    limit_mb = args.max_memory_gb * 1024
    failures = []
    for step in ("compress", "decompress"):
        if report[step]["peak_rss_mb"] > limit_mb:
            failures.append(f"{step} peaked at {report[step]['peak_rss_mb']:.0f} MB > {limit_mb:.0f} MB")
    if out_samples != samples:
        failures.append(f"decoded {out_samples} samples, input has {samples}")
    if codes["codes_differing"] > args.max_code_mismatch * codes["codes_compared"]:
        failures.append(f"{codes['codes_differing']} of {codes['codes_compared']} codes differ from a direct encode")
    report["failures"] = failures
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        audio_s = args.minutes * 60
        for step in ("compress", "decompress"):
            r = report[step]
            print(f"{step:10s} {r['seconds']:8.1f} s wall ({audio_s / r['seconds']:.1f}x real time), "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB")
        print(f"codes      {codes['codes_differing']} of {codes['codes_compared']} differ from a direct encode "
              f"({codes['windows']} windows of {codes['window_seconds']:.0f} s)")
        print(f"files      input {report['input_bytes'] / 1e6:.1f} MB, .ecdc {report['ecdc_bytes'] / 1e6:.2f} MB")
        for failure in failures:
            print(f"error: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
