"""Start-up time: how long a fresh process takes until the codec, or Gemma from its converted cache, is ready.

    python scripts/bench_startup.py [--repeats 3] [--skip gemma]

Each case runs in a fresh Python process (`--repeats` times, median reported), timed from before `import` to the
model being usable, with the time of a bare `import torch` measured the same way beside it (the floor every torch
command pays). Cases:
- codec (onnxruntime): `codec.load_codec("default", runtime="onnxruntime")`, what `codec roundtrip` / `compress` /
  `decompress` do before any audio (their `--runtime auto`): the torch-free runtime (`codec.runtime`), from its
  export in the cache (the warm-up run makes it if missing);
- codec (torch): `codec.load_codec("default")`, the torch model (Python API, `--runtime torch`), for comparison;
- codec CLI: `codec compress` of a 1 s clip, end to end (parsing, loading, encoding, writing);
- gemma: the embedded Gemma 3 270M from its converted cache (`audiolm.gemma.locate_gemma`), loaded as `audiolm
  generate` loads a run: weights through transformers' `from_pretrained`, no tokenizer (only `--text` needs it);
- gemma + tokenizer: the same with the 33 MB tokenizer, as `load_gemma` does.
Exits 1 when the codec as the CLI runs it (onnxruntime, and the whole 1 s compress) takes 2 s or more, or Gemma
without the tokenizer 10 s or more (the targets of issue 7).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODEC_TARGET_S = 2.0
GEMMA_TARGET_S = 10.0
TORCH_FREE = {"codec (onnxruntime)", "codec compress, 1 s clip (CLI)"}  # cases whose process never imports torch
# appended to the measured runs (not the warm-up, which may export the runtime with torch): they fail, and the script
# with them, if torch was imported after all
CHECKS = {"codec (onnxruntime)": "\nimport sys\nassert 'torch' not in sys.modules, 'torch was imported'"}

CASES = {
    "import torch": "import torch",
    "codec (onnxruntime)": "from codec import load_codec; load_codec('default', runtime='onnxruntime')",
    "codec (torch)": "from codec import load_codec; load_codec('default')",
    "gemma": (
        "from audiolm.gemma import locate_gemma\n"
        "from transformers import AutoModelForCausalLM\n"
        "source = locate_gemma(log=False)\n"
        "AutoModelForCausalLM.from_pretrained(source.path, local_files_only=True).eval()"
    ),
    "gemma + tokenizer": "from audiolm.gemma import load_gemma; load_gemma(log=False)",
}


def timed_process(code: str) -> float:
    """Wall seconds of `python -c code` in a fresh process, start-up of the interpreter included."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"error: {code!r} failed: {done.stderr.strip().splitlines()[-1:]}")
    return seconds


def cli_compress_seconds(clip: Path, out: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "codec", "compress", str(clip), str(out), "--force"], cwd=ROOT,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: codec compress failed: {done.stderr.strip()}")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip", default="", help="comma-separated cases to skip: gemma, cli")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    results: dict[str, float] = {}
    for name, code in CASES.items():
        if name.startswith("gemma") and "gemma" in skip:
            continue
        timed_process(code)  # warm the page cache: every measured run reads files already in memory
        results[name] = statistics.median(timed_process(code + CHECKS.get(name, "")) for _ in range(args.repeats))
    if "cli" not in skip:
        import numpy as np
        import soundfile as sf

        with tempfile.TemporaryDirectory() as tmp:
            clip = Path(tmp) / "clip.wav"
            sf.write(str(clip), (np.random.default_rng(0).standard_normal(24_000) * 0.1).astype("float32"), 24_000)
            cli_compress_seconds(clip, Path(tmp) / "x.ecdc")
            results["codec compress, 1 s clip (CLI)"] = statistics.median(
                cli_compress_seconds(clip, Path(tmp) / "x.ecdc") for _ in range(args.repeats))
    floor = results["import torch"]
    targets = {"codec (onnxruntime)": CODEC_TARGET_S, "codec compress, 1 s clip (CLI)": CODEC_TARGET_S,
               "gemma": GEMMA_TARGET_S}
    print(f"| fresh process until ready | seconds (median of {args.repeats}) | after `import torch` | target | met |")
    print("|---|---|---|---|---|")
    missed = []
    for name, seconds in results.items():
        target = targets.get(name)
        met = "" if target is None else ("yes" if seconds < target else "**no**")
        if target is not None and seconds >= target:
            missed.append(name)
        extra = "" if name == "import torch" else ("(no torch)" if name in TORCH_FREE else f"{seconds - floor:.2f}")
        print(f"| {name} | {seconds:.2f} | {extra} | {'' if target is None else f'< {target:g} s'} | {met} |")
    if missed:
        print(f"targets missed: {', '.join(missed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
