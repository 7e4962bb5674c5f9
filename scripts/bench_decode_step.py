"""Where a `FastDecoder` step spends its time: weight layouts of the matrix products, then a profiled step.

    python scripts/bench_decode_step.py [--threads 2] [--streams 1,8] [--smoke]

1. Layouts: the four products of each of Gemma 3 270M's 18 layers (q/k/v, o, gate/up, down; random fp32 weights, one
   distinct set per layer so that a step streams ~0.4 GB from memory as the real one does), timed per step
   (interleaved) for `F.linear(x, W)`, `x @ W^T` with `W^T` stored `[in, out]`, `(W @ x^T)^T` with `W` as stored
   `[out, in]`, and oneDNN's linear on `W` prepacked for the batch size, at each batch size; and `x @ W^T` once more
   with all those `[in, out]` copies in one buffer of transparent huge pages, as `FastDecoder` keeps its weights
   (`audiolm.fastgen._into_one_buffer`). The choices in `audiolm.fastgen._Projection` rest on this table.
2. The real step: the embedded Gemma 3 270M (or a tiny random one with `--smoke`) extended with audio rows, a
   `FastDecoder` step timed (median of 20), then one step under `torch.profiler`: its time in matrix products and the
   number of tensor operations it dispatches.
3. Small operations: microseconds per call of single tensor operations on a hidden-size vector `[1, 640]`, and of
   the RMS norm written out (six operations), as `F.rms_norm` and as `audiolm.fastgen._rms_norm` (four). A step
   dispatches hundreds of these, so their fixed cost, not their arithmetic, is what the non-product part costs.

Measurements only; no targets (the targets live in bench_lm.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

GEMMA_270M_PRODUCTS = [(1536, 640), (640, 1024), (4096, 640), (640, 2048)]  # (out, in): qkv, o, gate_up, down
LAYERS = 18


def layout_times(batch: int, shapes: list[tuple[int, int]], layers: int, repeats: int = 5) -> dict[str, float]:
    """Milliseconds per step of all `layers` x `shapes` products in each layout (median of `repeats`)."""
    import torch
    import torch.nn.functional as F

    from audiolm.fastgen import _into_one_buffer, _packed_products_available

    weights = [[torch.randn(o, i) for o, i in shapes] for _ in range(layers)]
    inputs = {i: torch.randn(batch, i) for _, i in shapes}
    layouts = {  # name: (weight as stored, product)
        "F.linear(x, W)": (lambda w: w, lambda x, w: F.linear(x, w)),
        "x @ W^T, W^T stored [in, out]": (lambda w: w.t().contiguous(), lambda x, wt: x @ wt),
        "(W @ x^T)^T, W stored [out, in]": (lambda w: w, lambda x, w: (w @ x.t()).t().contiguous()),
    }
    if _packed_products_available(torch.float32):
        layouts["oneDNN linear, W prepacked for B"] = (
            lambda w: torch.ops.mkldnn._reorder_linear_weight(w, batch),
            lambda x, p: torch.ops.mkldnn._linear_pointwise(x, p, None, "none", [], ""))
    stored = {name: [[prepare(w) for w in ws] for ws in weights] for name, (prepare, _) in layouts.items()}
    # what FastDecoder does at B = 1: the `[in, out]` copies moved into one huge-page buffer in the order a step reads
    holders = [SimpleNamespace(weight=w.t().contiguous()) for ws in weights for w in ws]
    _into_one_buffer(holders)
    name = "x @ W^T, as above, all in one huge-page buffer (fastgen)"
    layouts[name] = (None, layouts["x @ W^T, W^T stored [in, out]"][1])
    stored[name] = [[h.weight for h in holders[k * len(shapes) : (k + 1) * len(shapes)]] for k in range(layers)]
    times: dict[str, list[float]] = {name: [] for name in layouts}
    with torch.inference_mode():
        for _ in range(repeats + 1):  # layouts interleaved, the first round is a warm-up
            for name, (_, product) in layouts.items():
                start = time.perf_counter()
                for ws in stored[name]:
                    for (_, i), w in zip(shapes, ws, strict=True):
                        product(inputs[i], w)
                times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(t[1:]) for name, t in times.items()}


def profiled_step(model, vocab, batch: int) -> tuple[float, float, int]:
    """(ms per step, ms of it in matrix products, tensor operations dispatched) of a FastDecoder step at `batch`."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from audiolm.fastgen import FastDecoder

    prompt = torch.full((batch, 4), vocab.audio_base, dtype=torch.long)
    decoder = FastDecoder(model, max_len=64, batch=batch)
    decoder.prefill(prompt)
    token = torch.full((batch,), vocab.audio_base, dtype=torch.long)
    for _ in range(3):
        decoder.step(token)
    times = []
    for _ in range(20):
        start = time.perf_counter()
        decoder.step(token)
        times.append(time.perf_counter() - start)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        decoder.step(token)
    events = prof.events()
    top_level = [e for e in events if e.cpu_parent is None]
    products = ("aten::mm", "aten::addmm", "aten::bmm", "mkldnn::_linear_pointwise")
    matmul_us = sum(e.self_cpu_time_total for e in events if e.name in products)
    return 1e3 * statistics.median(times), matmul_us / 1e3, len(top_level)


def op_costs(hidden: int, repeats: int = 20000) -> dict[str, float]:
    """Microseconds per call (best of 3 runs of `repeats` calls) of small operations on `[1, hidden]`."""
    import torch
    import torch.nn.functional as F

    from audiolm.fastgen import _rms_norm

    x, w = torch.randn(1, hidden), torch.randn(hidden)
    eps = 1e-6
    floor = torch.tensor((hidden * eps) ** 0.5)
    ops = {
        "x * w": lambda: x * w,
        "x.mean(-1, keepdim=True)": lambda: x.mean(-1, keepdim=True),
        "torch.linalg.vector_norm(x, dim=-1)": lambda: torch.linalg.vector_norm(x, dim=-1, keepdim=True),
        "RMS norm written out (6 ops)": lambda: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w,
        "F.rms_norm(x, (n,), w, eps)": lambda: F.rms_norm(x, (hidden,), w, eps),
        "fastgen._rms_norm (4 ops)": lambda: _rms_norm(x, w, floor),
    }
    result = {}
    with torch.inference_mode():
        for name, op in ops.items():
            best = float("inf")
            for _ in range(3):
                for _ in range(200):
                    op()
                start = time.perf_counter()
                for _ in range(repeats):
                    op()
                best = min(best, (time.perf_counter() - start) / repeats)
            result[name] = 1e6 * best
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--streams", default="1,8", help="comma-separated batch sizes")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes and a tiny random Gemma 3")
    args = parser.parse_args(argv)
    import warnings

    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.streams.split(",")]
    shapes, layers = ([(48, 16), (16, 32), (64, 16), (16, 32)], 2) if args.smoke else (GEMMA_270M_PRODUCTS, LAYERS)
    print(f"# decode-step benchmark: {args.threads} threads, torch {torch.__version__}"
          + (" (smoke: tiny shapes)" if args.smoke else ""), flush=True)
    rows = {b: layout_times(b, shapes, layers) for b in batches}
    names = list(next(iter(rows.values())))
    print("\n| matrix products of one step (ms) | " + " | ".join(f"B = {b}" for b in batches) + " |")
    print("|---|" + "---|" * len(batches))
    for name in names:
        print(f"| {name} | " + " | ".join(f"{rows[b][name]:.1f}" for b in batches) + " |")

    from bench_lm import load_model

    model, vocab = load_model(args.smoke)
    print("\n| FastDecoder step | ms per step (median of 20) | of which matrix products (profiled step) "
          "| tensor ops dispatched |")
    print("|---|---|---|---|")
    for b in batches:
        ms, matmul_ms, ops = profiled_step(model, vocab, b)
        print(f"| B = {b} | {ms:.1f} | {matmul_ms:.1f} ms | {ops} |")
    hidden = model.config.hidden_size
    costs = op_costs(hidden, repeats=200 if args.smoke else 20000)
    print(f"\n| one call on a [1, {hidden}] vector | microseconds |")
    print("|---|---|")
    for name, us in costs.items():
        print(f"| {name} | {us:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
