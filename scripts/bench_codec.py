"""Codec inference speed against Meta's `encodec` package, measured in the same run (interleaved, medians).

    python scripts/bench_codec.py [--seconds 60] [--repeats 3] [--threads 2] [--memory-seconds 60,600] [--smoke]

Rows:
- `encodec_24khz`: Meta's EnCodec 24 kHz architecture with random weights and filled codebooks (no download), run by
  Meta's package (`model.set_target_bandwidth(6); model.encode(wav)` / `model.decode(frames)` under `no_grad`) and by
  ours on the same weights (`codec.pipeline.encode/decode`, what the CLI runs: weight norm folded, inference mode,
  streamed in chunks for long inputs). Codes are compared entry by entry (the streamed path may differ at rare float
  near-ties; they are counted) and ours decodes Meta's codes to within `--tolerance` of Meta's waveform.
- `default`: the embedded default codec (`codec/weights/default.safetensors`) against the same Meta baseline (its
  own chunked path is checked against one whole-signal pass), then its torch-free runtime (`codec.runtime`, what
  `codec compress` runs) against the torch model, interleaved, with the codes that differ counted (a line, no target).
- peak memory (`VmHWM` of a fresh subprocess that encodes and decodes N seconds, see `peakmem.py`) for ours and
  Meta's.

Prints a table (the README's), the real-time factors (audio seconds per compute second, higher is better) and exits
with status 1 when a target is missed: speed-up >= 2 for encode and decode, codes identical up to counted near-ties
(<= 1e-4 of the codes), waveform within 1e-4, our peak memory not growing with length (longest <= 1.5x shortest).
`--smoke` runs tiny random models on a few seconds of audio to check the script itself (targets not enforced).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SPEEDUP_TARGET = 2.0
TOLERANCE = 1e-4
CODE_MISMATCH_LIMIT = 1e-4  # fraction of codes allowed to differ (float near-ties of the streamed path)
MEMORY_GROWTH_LIMIT = 1.5


# ---- models ---------------------------------------------------------------------------------------------------------
def meta_encodec(tiny: bool, seed: int = 0):
    """Meta's `encodec.EncodecModel` (24 kHz architecture, or a tiny one) with random weights and filled codebooks."""
    import torch
    from encodec import EncodecModel
    from encodec.modules import SEANetDecoder, SEANetEncoder
    from encodec.quantization import ResidualVectorQuantizer

    torch.manual_seed(seed)
    width = dict(dimension=16, n_filters=2) if tiny else {}
    encoder = SEANetEncoder(channels=1, norm="weight_norm", causal=True, **width)
    decoder = SEANetDecoder(channels=1, norm="weight_norm", causal=True, **width)
    quantizer = ResidualVectorQuantizer(dimension=encoder.dimension, n_q=32, bins=1024)
    model = EncodecModel(encoder, decoder, quantizer, [1.5, 3.0, 6.0, 12.0, 24.0], 24_000, 1, normalize=False,
                         segment=None, name="encodec_24khz").eval()
    with torch.no_grad():  # each codebook ~ a Gaussian fitted to the residual it quantises (as the test fixtures do)
        probe = torch.randn(1, 1, 24_000) * 0.3
        residual = model.encoder(probe).transpose(1, 2).reshape(-1, encoder.dimension)
        for layer in model.quantizer.vq.layers:
            book = layer._codebook
            book.embed.copy_(residual.mean(0) + residual.std(0) * torch.randn_like(book.embed))
            book.embed_avg.copy_(book.embed)
            book.cluster_size.fill_(1.0)
            book.inited.fill_(1.0)
            residual = residual - book.embed[book.quantize(residual)]
    model.set_target_bandwidth(6.0)
    return model


def ours_from_meta(meta, tiny: bool):
    """Our `EncodecModel` holding `meta`'s weights (renamed by the loaders, weight norm folded)."""
    from codec.interface import WeightsInfo
    from codec.loaders import meta_to_ours
    from codec.models.encodec import EncodecModel
    from codec.modules import SEANetConfig, SEANetDecoder, SEANetEncoder
    from codec.quantization import ResidualVectorQuantizer

    config = SEANetConfig(channels=1, norm="weight_norm", causal=True,
                          **(dict(dimension=16, n_filters=2) if tiny else {}))
    quantizer = ResidualVectorQuantizer(dim=config.dimension, num_codebooks=32, codebook_size=1024)
    model = EncodecModel(SEANetEncoder(config), SEANetDecoder(config), quantizer, sample_rate=24_000, channels=1,
                         bandwidths=(1.5, 3.0, 6.0, 12.0, 24.0), name="encodec_24khz",
                         weights=WeightsInfo("encodec_24khz-random", ""))
    result = model.load_state_dict(meta_to_ours(meta.state_dict()), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise RuntimeError(f"weights do not map: {result}")
    return model.fold_weight_norm().eval()


def default_codec(tiny: bool):
    if tiny:
        import torch

        from codec.models.framecodec import FrameCodecConfig, frame_codec

        torch.manual_seed(0)
        config = FrameCodecConfig(dim=16, intermediate_dim=32, encoder_layers=1, decoder_layers=1, latent_dim=16)
        model = frame_codec(config, kmeans_init=False).eval()
        model.chunk_frames = 150  # so a few seconds take the chunked path
        return model
    from codec.registry import load_codec

    return load_codec("default")


def test_signal(seconds: float, sample_rate: int = 24_000, seed: int = 0):
    """`[1, 1, S]`: a few drifting tones plus noise, peak about 0.5."""
    import torch

    g = torch.Generator().manual_seed(seed)
    n = int(seconds * sample_rate)
    t = torch.arange(n, dtype=torch.float64) / sample_rate
    wav = torch.zeros(n, dtype=torch.float64)
    for f0 in (110.0, 220.0, 440.0, 1234.0):
        wav += 0.08 * torch.sin(2 * torch.pi * f0 * t * (1 + 0.01 * torch.sin(0.3 * t)))
    wav += 0.05 * torch.randn(n, generator=g, dtype=torch.float64)
    return wav.float()[None, None]


# ---- timing ---------------------------------------------------------------------------------------------------------
def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


@dataclass
class Row:
    """One codec pair: medians of the interleaved timings, and the correctness checks."""

    name: str
    seconds: float
    meta_encode: list[float] = field(default_factory=list)
    ours_encode: list[float] = field(default_factory=list)
    meta_decode: list[float] = field(default_factory=list)
    ours_decode: list[float] = field(default_factory=list)
    code_mismatches: int = 0
    codes_total: int = 0
    max_abs_diff: float = 0.0
    check: str = ""

    def median(self, name: str) -> float:
        return statistics.median(getattr(self, name))

    def speedup(self, op: str) -> float:
        return self.median(f"meta_{op}") / self.median(f"ours_{op}")

    def rtf(self, who: str, op: str) -> float:
        return self.seconds / self.median(f"{who}_{op}")


def bench_pair(name: str, meta, ours, wav, repeats: int, compare_to_meta: bool, whole_pass=None) -> Row:
    """Interleave Meta and ours (encode, encode, decode, decode) `repeats` times; check codes and waveforms."""
    import torch

    from codec import pipeline

    seconds = wav.shape[-1] / 24_000
    row = Row(name, seconds)
    for _ in range(repeats):
        with torch.no_grad():
            t, frames = timed(lambda: meta.encode(wav))
        row.meta_encode.append(t)
        t, encoded = timed(lambda: pipeline.encode(ours, wav, 6.0))
        row.ours_encode.append(t)
        with torch.no_grad():
            t, meta_wav = timed(lambda: meta.decode(frames))  # noqa: B023 (called at once)
        row.meta_decode.append(t)
        t, ours_wav = timed(lambda: pipeline.decode(ours, encoded))  # noqa: B023
        row.ours_decode.append(t)
    if compare_to_meta:
        meta_codes = frames[0][0]
        row.codes_total = meta_codes.numel()
        row.code_mismatches = int((meta_codes != encoded.codes).sum())
        from codec.interface import EncodedAudio

        same_codes = pipeline.decode(ours, EncodedAudio(codes=meta_codes, length=wav.shape[-1]))
        row.max_abs_diff = float((same_codes - meta_wav[..., : wav.shape[-1]]).abs().max())
        row.check = "vs Meta"
    elif whole_pass is not None:
        whole_codes, whole_wav = whole_pass(wav)
        row.codes_total = whole_codes.numel()
        row.code_mismatches = int((whole_codes != encoded.codes).sum())
        row.max_abs_diff = float((whole_wav - ours_wav).abs().max())
        row.check = "chunked vs one pass"
    del ours_wav
    return row


def framecodec_whole_pass(model):
    """Encode and decode in one pass (chunking off), for the chunked path's equality check."""
    def run(wav):
        from codec.interface import EncodedAudio

        saved = model.chunk_frames
        model.chunk_frames = 1 << 30
        try:
            encoded = model.encode(wav, 6.0)
            return encoded.codes, model.decode(EncodedAudio(codes=encoded.codes, length=wav.shape[-1]))
        finally:
            model.chunk_frames = saved
    return run


def runtime_comparison(model, wav, repeats: int) -> str:
    """The torch-free runtime (ONNX Runtime + numpy) against the torch model it was exported from: interleaved encode
    and decode timings (medians), codes that differ, and the waveforms both decode from the torch model's codes."""
    import tempfile

    import numpy as np

    from codec import pipeline
    from codec.runtime.export import export_runtime
    from codec.runtime.framecodec import RuntimeFrameCodec

    with tempfile.TemporaryDirectory() as tmp:
        runtime = RuntimeFrameCodec(export_runtime(model, Path(tmp) / "runtime"), model.weights)
    runtime.chunk_frames = model.chunk_frames
    array = wav.numpy()
    times: dict[str, list[float]] = {"torch encode": [], "runtime encode": [], "torch decode": [],
                                     "runtime decode": []}
    for _ in range(repeats):
        t, reference = timed(lambda: pipeline.encode(model, wav, 6.0))
        times["torch encode"].append(t)
        t, encoded = timed(lambda: pipeline.encode(runtime, array, 6.0))
        times["runtime encode"].append(t)
        t, torch_wav = timed(lambda: pipeline.decode(model, reference))  # noqa: B023 (called at once)
        times["torch decode"].append(t)
        t, runtime_wav = timed(lambda: pipeline.decode(runtime, reference))  # noqa: B023
        times["runtime decode"].append(t)
    m = {k: statistics.median(v) for k, v in times.items()}
    seconds = wav.shape[-1] / 24_000
    differ = int((reference.codes.numpy() != encoded.codes).sum())
    gap = float(np.abs(torch_wav.numpy() - runtime_wav).max())
    return (f"default codec on the torch-free runtime (ONNX Runtime + numpy, `--runtime auto`): encode "
            f"{m['runtime encode']:.2f} s ({seconds / m['runtime encode']:.1f}x real time) vs torch "
            f"{m['torch encode']:.2f} s = {m['torch encode'] / m['runtime encode']:.2f}x, decode "
            f"{m['runtime decode']:.2f} s ({seconds / m['runtime decode']:.1f}x) vs {m['torch decode']:.2f} s = "
            f"{m['torch decode'] / m['runtime decode']:.2f}x; {differ}/{reference.codes.numel()} codes differ from "
            f"the torch model's (near-ties), same codes decode within {gap:.1e}")


# ---- profile ---------------------------------------------------------------------------------------------------------
def profile_shares(ours, wav, rows: int = 6) -> tuple[str, dict[str, float]]:
    """Markdown table of the ops with the most self CPU time in our encode and decode of `wav` (torch.profiler),
    and every op's share of the encode (for `identical_codes_limit`)."""
    from collections import Counter

    from torch.profiler import ProfilerActivity, profile

    from codec import pipeline

    encoded = pipeline.encode(ours, wav, 6.0)  # warm-up, and the codes to decode
    lines = ["| op (ours, encodec_24khz) | share of encode | share of decode |", "|---|---|---|"]
    shares = []
    for run in (lambda: pipeline.encode(ours, wav, 6.0), lambda: pipeline.decode(ours, encoded)):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run()
        spent = Counter()
        for event in prof.events():
            spent[event.name] += event.self_cpu_time_total
        total = sum(spent.values())
        shares.append({name: t / total for name, t in spent.items()})
    names = sorted(set(shares[0]) | set(shares[1]), key=lambda n: -(shares[0].get(n, 0) + shares[1].get(n, 0)))
    for name in names[:rows]:
        lines.append(f"| `{name}` | {100 * shares[0].get(name, 0):.0f} % | {100 * shares[1].get(name, 0):.0f} % |")
    return "\n".join(lines), shares[0]


def identical_codes_limit(row: Row, encode_shares: dict[str, float]) -> str:
    """What bounds the encode speed-up while the codes must equal Meta's, from the ops' shares of our encode.

    The codes depend on the exact rounding of the latent, so the kernels that compute it must be the ones Meta's
    package runs on `[B, C, T]` signals: oneDNN's convolutions, oneDNN's LSTM and PyTorch's ELU (a time-major
    convolution moves the latent by float rounding and flips codes at near-ties, as the time-major line shows; the
    ELU's vectorised `expm1` costs the same in either layout, `--layers`). Their share of our encode, times our
    median, is a floor that no reimplementation of the rest can go under; Meta's median over it is the best speed-up
    at identical codes."""
    fixed = ("aten::mkldnn_convolution", "aten::mkldnn_rnn_layer", "aten::elu")
    share = sum(encode_shares.get(name, 0.0) for name in fixed)
    floor = share * row.median("ours_encode")
    return (f"identical-codes limit: convolutions, LSTM and ELU (the kernels whose rounding fixes the codes, the same "
            f"as Meta's) take {100 * share:.0f} % of our encode = {floor:.2f} s of {row.median('ours_encode'):.2f} s;"
            f" Meta's {row.median('meta_encode'):.2f} s / {floor:.2f} s = at most "
            f"{row.median('meta_encode') / floor:.2f}x with everything else free")


def time_major_encode(meta, ours, wav, repeats: int) -> tuple[float, float, int, int]:
    """(Meta's median, ours time-major median, codes differing from Meta's, codes) for the opt-in fast encoder."""
    import torch

    from codec import pipeline

    meta_t, ours_t = [], []
    ours.encoder.time_major = True
    try:
        for _ in range(repeats):
            with torch.no_grad():
                t, frames = timed(lambda: meta.encode(wav))
            meta_t.append(t)
            t, encoded = timed(lambda: pipeline.encode(ours, wav, 6.0))
            ours_t.append(t)
    finally:
        ours.encoder.time_major = False
    codes = frames[0][0]
    return statistics.median(meta_t), statistics.median(ours_t), int((codes != encoded.codes).sum()), codes.numel()


def layer_table(ours, seconds: float, repeats: int = 3) -> str:
    """Markdown table: each SEANet convolution and the ELUs of our encodec_24khz on `seconds` of audio, timed in the
    `[B, C, T]` layout and time-major (`codec.modules.conv`), best of `repeats`."""
    import torch
    import torch.nn.functional as F

    from codec.modules import SConv1d, SConvTranspose1d, conv_transpose1d_by_matmul, to_time_major
    from codec.modules.seanet import ELU

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            times.append(timed(fn)[0])
        return min(times)

    inputs: list[tuple[str, torch.nn.Module, torch.Tensor]] = []
    hooks = []
    for part in ("encoder", "decoder"):
        for module in getattr(ours, part).modules():
            if isinstance(module, (SConv1d, SConvTranspose1d, ELU)):
                hooks.append(module.register_forward_pre_hook(
                    lambda m, args, part=part: inputs.append((part, m, args[0]))))
    saved = ours.encoder.time_major, ours.decoder.time_major
    ours.encoder.time_major = ours.decoder.time_major = False
    try:
        with torch.inference_mode():
            ours.decode_segment(ours.encode_segment(test_signal(seconds), 8)[0])
    finally:
        for hook in hooks:
            hook.remove()
        ours.encoder.time_major, ours.decoder.time_major = saved
    lines = [f"| layer ({seconds:.0f} s of audio) | input [C, T] | `[B, C, T]` ms | time-major ms | speed-up "
             "| time-major GFLOP/s |", "|---|---|---|---|---|---|"]
    totals: dict[str, list[float]] = {}
    with torch.inference_mode():
        for part, module, x in inputs:
            fast = to_time_major(x)
            if isinstance(module, SConvTranspose1d):  # what the streamed [B, C, T] path runs (the fastest there)
                weight = module.conv.weight
                plain = best(lambda: conv_transpose1d_by_matmul(x, weight, module.stride))  # noqa: B023
                name = f"{part} transposed conv {weight.shape[0]}->{weight.shape[1]} k{module.kernel_size} " \
                       f"s{module.stride}"
            elif isinstance(module, ELU):  # PyTorch's ELU (what [B, C, T] runs) on the same time-major memory
                plain = best(lambda: F.elu(fast))  # noqa: B023
            else:
                plain = best(lambda: module(x))  # noqa: B023
                name = (f"{part} conv {module.conv.in_channels}->{module.conv.out_channels} k{module.kernel_size} "
                        f"s{module.stride}")
            tm = best(lambda: module(fast))  # noqa: B023
            key = (f"{part} ELUs (all; PyTorch's vs `codec.modules.seanet.ELU`)" if isinstance(module, ELU)
                   else f"{part} convolutions (all)")
            totals.setdefault(key, [0.0, 0.0])
            totals[key][0] += plain
            totals[key][1] += tm
            if not isinstance(module, ELU):
                weight = module.conv.weight  # [C_out, C_in, k] or, transposed, [C_in, C_out, k]
                frames = x.shape[-1] if isinstance(module, SConvTranspose1d) else -(-x.shape[-1] // module.stride)
                flops = 2 * weight.numel() * frames
                lines.append(f"| {name} | {x.shape[1]} x {x.shape[-1]} | {1e3 * plain:.1f} | {1e3 * tm:.1f} | "
                             f"{plain / tm:.2f}x | {flops / tm / 1e9:.0f} |")
    for key, (plain, tm) in totals.items():
        lines.append(f"| **{key}** | | {1e3 * plain:.1f} | {1e3 * tm:.1f} | {plain / tm:.2f}x | |")
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    peak = 2 * 2048**3 / best(lambda: a @ b) / 1e9
    lines.append(f"\nfor scale: a 2048 x 2048 fp32 matrix product runs at {peak:.0f} GFLOP/s here")
    return "\n".join(lines)


# ---- memory (fresh subprocesses) ------------------------------------------------------------------------------------
def memory_child(which: str, seconds: float, tiny: bool, threads: int) -> None:
    """Body of a `--memory-child` subprocess: encode + decode `seconds` of audio, print peak RSS in MB as JSON."""
    import torch
    from peakmem import current_rss_mb, peak_rss_mb, reset_peak

    torch.set_num_threads(threads)
    wav = test_signal(seconds)
    reset_peak()  # the peak of making the signal is not the codec's
    base = current_rss_mb()
    if which == "meta":
        model = meta_encodec(tiny)
        with torch.no_grad():
            model.decode(model.encode(wav))
    else:
        from codec import pipeline

        model = ours_from_meta(meta_encodec(tiny), tiny) if which == "ours" else default_codec(tiny)
        pipeline.decode(model, pipeline.encode(model, wav, 6.0))
    print(json.dumps({"which": which, "seconds": seconds, "peak_mb": peak_rss_mb(), "before_mb": base}))


def measure_memory(which: str, seconds: float, tiny: bool, threads: int) -> tuple[float, float]:
    """(peak MB, MB before the codec work: torch, the test signal) of a fresh `--memory-child` process."""
    cmd = [sys.executable, __file__, "--memory-child", which, "--seconds", str(seconds), "--threads", str(threads)]
    if tiny:
        cmd.append("--smoke")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return result["peak_mb"], result["before_mb"]


# ---- report ---------------------------------------------------------------------------------------------------------
def table(rows: list[Row], memory: dict[tuple[str, float], tuple[float, float]]) -> tuple[str, list[str]]:
    lines = ["| codec (6 kbps) | audio | op | Meta `encodec` s (x real time) | ours s (x real time) | speed-up "
             "| check |",
             "|---|---|---|---|---|---|---|"]
    missed = []
    for row in rows:
        frac = row.code_mismatches / max(row.codes_total, 1)
        for op in ("encode", "decode"):
            check = (f"{row.check}: {row.code_mismatches}/{row.codes_total} codes differ" if op == "encode"
                     else f"{row.check}: max |diff| {row.max_abs_diff:.1e}")
            lines.append(f"| {row.name} | {row.seconds:.0f} s | {op} | {row.median('meta_' + op):.2f} "
                         f"({row.rtf('meta', op):.1f}x) | {row.median('ours_' + op):.2f} ({row.rtf('ours', op):.1f}x) "
                         f"| **{row.speedup(op):.2f}x** | {check} |")
            if row.speedup(op) < SPEEDUP_TARGET:
                missed.append(f"{row.name} {op}: speed-up {row.speedup(op):.2f}x < {SPEEDUP_TARGET}x")
        if frac > CODE_MISMATCH_LIMIT:
            missed.append(f"{row.name}: {row.code_mismatches} codes differ ({frac:.1e} > {CODE_MISMATCH_LIMIT})")
        if row.max_abs_diff > TOLERANCE:
            missed.append(f"{row.name}: waveform differs by {row.max_abs_diff:.1e} > {TOLERANCE}")
    if memory:
        lines += ["", "| peak memory (encode + decode, fresh process) | audio | peak RSS | resident before encoding "
                  "(torch, the signal) | added by the codec |", "|---|---|---|---|---|"]
        order = {"meta": 0, "ours": 1, "default": 2}
        for (which, seconds), (mb, before) in sorted(memory.items(), key=lambda i: (order[i[0][0]], i[0][1])):
            label = {"meta": "Meta `encodec`", "ours": "ours, encodec_24khz", "default": "ours, default"}[which]
            lines.append(f"| {label} | {seconds:.0f} s | {mb:.0f} MB | {before:.0f} MB | {mb - before:.0f} MB |")
        for which in ("ours", "default"):
            runs = sorted((s, mb) for (w, s), (mb, _) in memory.items() if w == which)
            if len(runs) >= 2 and runs[-1][1] > MEMORY_GROWTH_LIMIT * runs[0][1]:
                missed.append(f"{which}: peak memory grows with length ({runs[0][1]:.0f} MB at {runs[0][0]:.0f} s, "
                              f"{runs[-1][1]:.0f} MB at {runs[-1][0]:.0f} s)")
    return "\n".join(lines), missed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=None, help="audio length (default 60; smoke 3)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions; medians are reported")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for everything measured")
    parser.add_argument("--memory-seconds", default=None,
                        help="comma-separated lengths for the peak-memory runs of ours (default 60,600; smoke 2,6)")
    parser.add_argument("--meta-memory-seconds", default=None,
                        help="lengths for Meta's peak-memory runs (default: the shortest of --memory-seconds)")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: encodec, default, memory")
    parser.add_argument("--smoke", action="store_true", help="tiny models, seconds of audio, targets not enforced")
    parser.add_argument("--json", default=None, help="also write the raw timings to this file")
    parser.add_argument("--profile", type=float, default=0.0,
                        help="also profile our encodec_24khz encode and decode of this many seconds (0: off)")
    parser.add_argument("--layers", type=float, default=0.0,
                        help="also time each convolution and the ELUs in both layouts on this many seconds (0: off)")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    seconds = args.seconds or (3.0 if args.smoke else 60.0)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import warnings

    warnings.filterwarnings("ignore")
    if args.memory_child:
        memory_child(args.memory_child, seconds, args.smoke, args.threads)
        return 0
    import torch

    torch.set_num_threads(args.threads)
    skip = {s for s in args.skip.split(",") if s}
    print(f"# codec benchmark: {seconds:.0f} s of audio, 6 kbps, {args.repeats} interleaved repeats, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, {os.cpu_count()} CPUs"
          + (" (smoke: tiny models)" if args.smoke else ""), flush=True)
    wav = test_signal(seconds)
    rows = []
    meta = meta_encodec(args.smoke)
    if "encodec" not in skip:
        ours = ours_from_meta(meta, args.smoke)
        rows.append(bench_pair("encodec_24khz (random weights)", meta, ours, wav, args.repeats, True))
        fast_encode = time_major_encode(meta, ours, wav, args.repeats)
        print("  encodec_24khz done", flush=True)
    if "default" not in skip:
        default = default_codec(args.smoke)
        label = f"default ({default.weights.name}) vs Meta 24 kHz"
        rows.append(bench_pair(label, meta, default, wav, args.repeats, False, framecodec_whole_pass(default)))
        runtime_line = runtime_comparison(default, wav, args.repeats)
        print("  default done", flush=True)
    memory: dict[tuple[str, float], tuple[float, float]] = {}
    if "memory" not in skip:
        lengths = [float(s) for s in (args.memory_seconds or ("2,6" if args.smoke else "60,600")).split(",")]
        meta_lengths = [float(s) for s in args.meta_memory_seconds.split(",")] if args.meta_memory_seconds else [
            min(lengths)]
        for s in lengths:
            for which in ("ours", "default"):
                if which == "default" and "default" in skip:
                    continue
                memory[(which, s)] = measure_memory(which, s, args.smoke, args.threads)
        for s in meta_lengths:
            memory[("meta", s)] = measure_memory("meta", s, args.smoke, args.threads)
        print("  memory done", flush=True)
    text, missed = table(rows, memory)
    print()
    print(text)
    if "encodec" not in skip:
        meta_t, ours_t, differ, total = fast_encode
        print(f"\nopt-in time-major encoder (`model.encoder.time_major = True`; not the target, its codes differ): "
              f"encode {ours_t:.2f} s ({seconds / ours_t:.1f}x real time) vs Meta {meta_t:.2f} s = "
              f"**{meta_t / ours_t:.2f}x**, {differ}/{total} codes differ from Meta's (near-ties)")
    if "default" not in skip:
        print("\n" + runtime_line)
    if args.profile:
        print(f"\nprofile of {args.profile:.0f} s, {torch.get_num_threads()} threads:\n")
        shares_table, encode_shares = profile_shares(ours_from_meta(meta, args.smoke), test_signal(args.profile))
        print(shares_table)
        if "encodec" not in skip:
            print("\n" + identical_codes_limit(rows[0], encode_shares))
    if args.layers:
        print(f"\nlayers, {torch.get_num_threads()} threads:\n")
        print(layer_table(ours_from_meta(meta, args.smoke), args.layers))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": [r.__dict__ for r in rows],
                                               "memory": {f"{w}@{s}": {"peak_mb": mb, "before_mb": before}
                                                          for (w, s), (mb, before) in memory.items()}}, indent=1))
    print()
    if args.smoke:
        correctness = [m for m in missed if re.search(r"codes differ|waveform", m)]
        for m in correctness:
            print(f"MISSED: {m}")
        print("smoke run: speed targets not enforced")
        return 1 if correctness else 0
    for m in missed:
        print(f"MISSED: {m}")
    if not rows and not memory:
        print("no target measured (every part skipped)")
    else:
        print("all targets met" if not missed else f"{len(missed)} target(s) missed")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
