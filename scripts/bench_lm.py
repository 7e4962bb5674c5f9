"""Audio-LM speed: constrained generation and a training step, against transformers in the same run.

    python scripts/bench_lm.py [--tokens 64] [--repeats 3] [--threads 2] [--train-tokens 1024] [--smoke]

The model is the embedded Gemma 3 270M extended with EnCodec's 32 x 1024 audio tokens (untrained rows, `normal`
init so that their logits are spread out), prompted with `<bos> <|audio_start|>` and two frames of codes, and asked
for `--tokens` audio tokens in the flatten pattern at 6 kbps (K = 8), each restricted to its codebook's 1024 rows.

- baseline: `model.generate(do_sample=False)` with the codebook constraint as a `LogitsProcessor` (everything but
  the allowed rows set to -inf), so both pick from the same tokens; its head has all 295k rows.
- `audiolm.generate`: the project's sampler (KV cache, restricted head per step), greedy.
- `audiolm.fastgen`: static KV cache, hand-rolled Gemma 3 step, restricted head gathered once; 1 and 8 streams.
- bound: bytes a step must read (body weights + the head rows it uses + the KV cache) over the memory bandwidth
  measured by a large matrix-vector product in this run.
- training: tokens/s of forward + backward over `--train-batch` windows of `--train-tokens` tokens, restricted head
  vs the full tied head (all 295k rows; its logits restricted to the same rows after the product, so the loss value
  is the same). The target is the training recipe's own step (`audiolm.train.AudioLM`: the body and the audio rows
  train, so the full head's product also has a `[V, H]` weight gradient); the head alone (the whole embedding
  frozen on both sides: only the head's forward product and input gradient differ) is printed beside it.

Greedy outputs must be identical; exits with status 1 when a target is missed (fastgen >= 3x the baseline single
stream, 8 streams >= 15x it in aggregate, training step >= 2x). `--smoke` uses a tiny random Gemma 3 (targets not
enforced, equality still checked).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SINGLE_TARGET = 3.0
BATCH_TARGET = 15.0
TRAIN_TARGET = 2.0
K = 8  # codebooks at 6 kbps (EnCodec 24 kHz / the default codec)
AUDIO_TOKENS_PER_SECOND = {"1.5 kbps": 150, "6 kbps": 600}


def load_model(smoke: bool):
    """(model, vocab): Gemma 3 270M from the converted cache (or a tiny random Gemma 3), extended with audio rows."""
    import torch

    from audiolm.model import extend_model
    from audiolm.vocab import AudioVocab

    if smoke:
        from transformers import Gemma3ForCausalLM, Gemma3TextConfig

        torch.manual_seed(0)
        config = Gemma3TextConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                                  num_attention_heads=4, num_key_value_heads=1, head_dim=16, sliding_window=16,
                                  layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                                  max_position_embeddings=1024)
        model = Gemma3ForCausalLM(config).eval()
    else:
        from audiolm.gemma import load_gemma

        model = load_gemma(log=False).model
    vocab = AudioVocab(audio_base=model.get_input_embeddings().weight.shape[0], num_codebooks=32)
    extend_model(model, vocab, init="normal")
    for p in model.parameters():
        p.requires_grad_(False)
    return model, vocab


def memory_bandwidth(megabytes: int, dtype_name: str = "float32", repeats: int = 5) -> float:
    """Bytes/s of a `[n, n]` matrix x vector product of about `megabytes` (median of `repeats`)."""
    import torch

    dtype = getattr(torch, dtype_name)
    n = int((megabytes * 2**20 / torch.tensor([], dtype=dtype).element_size()) ** 0.5)
    matrix = torch.randn(n, n).to(dtype)
    vector = torch.randn(n).to(dtype)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        matrix @ vector
        times.append(time.perf_counter() - start)
    return matrix.numel() * matrix.element_size() / statistics.median(times[1:])


def step_bytes(model, head_rows: int, context: int) -> int:
    """Bytes one decoding step reads: body weights (not the embedding table), `head_rows` head rows, the KV cache."""
    config = model.config
    body = sum(p.numel() * p.element_size() for name, p in model.model.named_parameters() if "embed_tokens" not in name)
    hidden = config.hidden_size
    element = model.get_input_embeddings().weight.element_size()
    kv = 2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim * context * element
    return body + head_rows * hidden * element + kv


@dataclass
class Setup:
    model: object
    vocab: object
    rows: list  # per codebook: ids [1024]
    prompts: object  # [8, P] prompt ids, row 0 is the single-stream prompt
    prompt_codes: object  # [8, K, Tp]


def make_setup(model, vocab, streams: int = 8, prompt_frames: int = 2) -> Setup:
    import torch

    from audiolm.patterns import get_pattern

    pattern = get_pattern("flatten", K)
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, vocab.cardinality, (streams, K, prompt_frames), generator=g)
    head = torch.tensor([2, vocab.start_id])
    prompts = torch.stack([torch.cat([head, pattern.codes_to_ids(codes[b: b + 1], vocab)[0]]) for b in range(streams)])
    rows = [torch.tensor(list(vocab.codebook_ids(k))) for k in range(K)]
    return Setup(model, vocab, rows, prompts, codes)


def baseline_generate(setup: Setup, prompt, tokens: int):
    """transformers' `generate`, greedy, with the codebook constraint as a logits processor; returns `[B, tokens]`."""
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    width = setup.model.get_output_embeddings().weight.shape[0]
    allowed = torch.zeros(K, width, dtype=torch.bool)
    for k in range(K):
        allowed[k, setup.rows[k]] = True
    P = prompt.shape[1]

    class CodebookMask(LogitsProcessor):
        def __call__(self, input_ids, scores):
            return scores.masked_fill(~allowed[(input_ids.shape[1] - P) % K], float("-inf"))

    with torch.inference_mode():
        out = setup.model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=tokens,
                                   min_new_tokens=tokens, do_sample=False, pad_token_id=0,
                                   logits_processor=LogitsProcessorList([CodebookMask()]))
    return out[:, P:]


def repo_generate(setup: Setup, tokens: int):
    """`audiolm.generate.generate_codes`, greedy, with the stop disallowed; returns the generated ids `[1, tokens]`."""
    import torch

    from audiolm.generate import Sampling, generate_codes
    from audiolm.patterns import get_pattern

    frames = setup.prompt_codes.shape[-1]
    total = frames + tokens // K
    result = generate_codes(setup.model, setup.vocab, get_pattern("flatten", K), [2], total,
                            prompt=setup.prompt_codes[0], sampling=Sampling(temperature=0), min_new_frames=total + 1)
    ids = result.ids[0][frames * K:][:tokens]
    return ids[None].to(torch.long)


def fast_generate(setup: Setup, prompts, tokens: int):
    from audiolm.fastgen import FastDecoder

    decoder = FastDecoder(setup.model, max_len=prompts.shape[1] + tokens + 1, batch=prompts.shape[0])
    return decoder.generate(prompts, setup.rows, lambda i: i % K, tokens)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


# ---- training step --------------------------------------------------------------------------------------------------
def set_attention(model, plain: bool) -> None:
    """The body's attention: transformers' `sdpa` (`plain`) or `audiolm.attention`'s block-skipping one."""
    from audiolm.attention import NAME, register

    register()
    model.set_attn_implementation("sdpa" if plain else NAME)


@dataclass
class StepTimes:
    """Median seconds of a training step through each head, their loss values, the tokens per step, and the op table
    of one more restricted step (empty unless profiled)."""

    restricted: float
    full: float
    loss_restricted: float
    loss_full: float
    tokens: int
    profile: str


def head_step_times(model, vocab, length: int, repeats: int, profile: bool = False, batch: int = 1,
                    plain_attention: bool = False) -> StepTimes:
    """The head alone: forward + backward of `batch` sequences of at most `length` tokens with the body training and
    the whole (tied) embedding matrix frozen, through `restricted_forward` (per-position codebook rows) and through
    the full head restricted the same way after the product (same loss). Neither side forms a weight gradient of the
    head, so the difference is the head's forward product and its input gradient alone. The body's attention is
    `audiolm.attention`'s block-skipping one, as the recipe runs it, or transformers' `sdpa` with `plain_attention`.
    """
    import torch

    set_attention(model, plain_attention)

    from audiolm.model import codebook_rows, restricted_forward, restricted_loss

    g = torch.Generator().manual_seed(1)
    frames = (length - 2) // K
    codes = torch.randint(0, vocab.cardinality, (batch, K, frames), generator=g)
    from audiolm.patterns import get_pattern

    prefix = torch.tensor([[2, vocab.start_id]]).expand(batch, -1)
    ids = torch.cat([prefix, get_pattern("flatten", K).codes_to_ids(codes, vocab)], 1)
    labels = ids.clone()
    labels[:, :2] = -100
    # position l predicts token l + 1: rows of the token each position predicts (the first two positions: codebook 0)
    per_token = codebook_rows(vocab, "flatten", K, ids.shape[1] - 2)  # [L - 2, N] for the audio tokens
    rows = torch.cat([per_token[:1].expand(2, -1), per_token], 0)  # [L, N]; rows[l] = ids allowed at token l
    rows = torch.cat([rows[1:], rows[-1:]], 0)  # align: position l's logits cover token l + 1
    embedding = model.get_input_embeddings().weight
    params = [p for p in model.parameters() if p is not embedding]
    for p in params:
        p.requires_grad_(True)
    model.train()

    def restricted():
        out = restricted_forward(model, ids, rows, labels=labels)
        out.loss.backward()
        return float(out.loss.detach())

    def full():
        logits = model(input_ids=ids).logits  # [B, L, V]: the full head
        picked = torch.gather(logits, 2, rows[None].expand(logits.shape[0], -1, -1))
        loss = restricted_loss(picked, rows, labels)
        loss.backward()
        return float(loss.detach())

    try:
        return _interleaved(model, restricted, full, repeats, profile, ids.numel())
    finally:
        model.zero_grad(set_to_none=True)
        for p in params:
            p.requires_grad_(False)
        model.eval()


def recipe_step_times(model, vocab, length: int, repeats: int, profile: bool = False, batch: int = 1,
                      plain_attention: bool = False) -> StepTimes:
    """The training recipe's own step (`audiolm.train.AudioLM`: the body and the audio rows train, the text rows are
    frozen) on `batch` windows of `length` tokens, through the restricted head and through the full tied head.

    Median seconds of forward + backward of each, both loss values, and (with `profile`) the restricted step's op
    table. The full head is what transformers' `lm_head` computes: one product with the tied `[V, H]` matrix (the
    frozen text rows and the trainable `audio_embed`), so training the audio rows makes autograd form its `[V, H]`
    weight gradient; its logits are then restricted to each position's codebook rows (one gather) for the same loss.
    """
    import torch
    import torch.nn.functional as F

    from audiolm.patterns import get_pattern
    from audiolm.train import AudioLM, TrainConfig, audio_stream, collate, make_window

    g = torch.Generator().manual_seed(1)
    pattern = get_pattern(TrainConfig.pattern, K)
    windows = []
    for _ in range(batch):
        codes = torch.randint(0, vocab.cardinality, (K, length // K + 1), generator=g)
        # <bos> <|audio_start|> + audio tokens: `length` tokens, as a window of the recipe's `seq_len`
        windows.append(make_window([2], audio_stream(codes, pattern, vocab), 0, length - 2, vocab))
    b = collate(windows)
    embedding = model.get_input_embeddings().weight
    lm = AudioLM(model, vocab, K)  # freezes the embedding matrix, adds the trainable `audio_embed`
    set_attention(model, plain_attention)  # AudioLM selects the block-skipping attention; `--plain-attention` undoes it
    body = [p for p in model.parameters() if p is not embedding]
    for p in body:
        p.requires_grad_(True)
    lm.train()
    text_rows = embedding[: vocab.audio_base]
    columns = vocab.audio_base + lm.rows  # [K, card + S]: each codebook's rows as columns of the full head
    per_position = columns[b.books.clamp_min(0)]  # [B, L, card + S]

    def restricted():
        out = lm(b.input_ids, b.attention_mask, b.books, b.cols)
        out.loss.backward()
        return float(out.loss.detach())

    def full():
        hidden = lm.hidden(b.input_ids, b.attention_mask)
        logits = F.linear(hidden, torch.cat([text_rows, lm.audio_embed]))  # [B, L, V]: the full tied head
        picked = logits.gather(2, per_position)  # [B, L, card + S]
        out = lm.scores(hidden, b.books, b.cols, lambda where, k: picked[where])
        out.loss.backward()
        return float(out.loss.detach())

    try:
        return _interleaved(lm, restricted, full, repeats, profile, b.input_ids.numel())
    finally:
        lm.zero_grad(set_to_none=True)
        for p in body:
            p.requires_grad_(False)
        model.eval()


def _interleaved(module, restricted, full, repeats: int, profile: bool, tokens: int) -> StepTimes:
    """`restricted` and `full` timed alternately (gradients zeroed before each); with `profile`, one more
    `restricted` call under the profiler."""
    times_r, times_f = [], []
    loss_r = loss_f = float("nan")
    for _ in range(repeats):
        module.zero_grad(set_to_none=True)
        t, loss_r = timed(restricted)
        times_r.append(t)
        module.zero_grad(set_to_none=True)
        t, loss_f = timed(full)
        times_f.append(t)
    table = profile_step(restricted, module) if profile else ""
    return StepTimes(statistics.median(times_r), statistics.median(times_f), loss_r, loss_f, tokens, table)


def attention_times(model, length: int, repeats: int) -> str:
    """A sliding layer's attention alone (forward + backward on random `[1, H, length, D]` inputs with its band mask),
    transformers' `sdpa` vs `audiolm.attention`'s block-skipping version, interleaved: medians and the largest output
    difference. (The global layers get no mask without padding and run transformers' `sdpa` either way.)"""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from audiolm.attention import blocked_attention_forward

    config = model.config
    if "sliding_attention" not in config.layer_types:
        return ""
    module = model.model.layers[config.layer_types.index("sliding_attention")].self_attn
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, config.num_attention_heads, length, config.head_dim, generator=g)
    k, v = (torch.randn(1, config.num_key_value_heads, length, config.head_dim, generator=g) for _ in range(2))
    pos = torch.arange(length)
    mask = ((pos[None, :] <= pos[:, None]) & (pos[:, None] - pos[None, :] < config.sliding_window))[None, None]

    def step(fn):
        qq, kk, vv = (t.clone().requires_grad_(True) for t in (q, k, v))
        out, _ = fn(module, qq, kk, vv, mask, scaling=module.scaling)
        out.sum().backward()
        return out.detach()

    times = {sdpa_attention_forward: [], blocked_attention_forward: []}
    outs = {}
    for _ in range(repeats):
        for fn, ts in times.items():
            t, outs[fn] = timed(lambda fn=fn: step(fn))
            ts.append(t)
    base, ours = (statistics.median(ts) for ts in times.values())
    diff = float((outs[sdpa_attention_forward] - outs[blocked_attention_forward]).abs().max())
    return (f"attention alone, one sliding layer ({config.sliding_window}-token window), forward + backward at "
            f"{length} tokens, interleaved x {repeats}: transformers' sdpa {base * 1e3:.0f} ms, block-skipping "
            f"{ours * 1e3:.0f} ms ({ours / base:.2f}x the time), outputs within {diff:.1e}")


def profile_step(step, model, rows: int = 6) -> str:
    """Markdown table of the ops with the most self CPU time in one call of `step` (torch.profiler, FLOPs counted for
    matrix products), after zeroing the gradients as the timed steps do."""
    from torch.profiler import ProfilerActivity, profile

    model.zero_grad(set_to_none=True)
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        step()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    lines = ["| op (one restricted training step) | calls | self s | share | GFLOP/s |", "|---|---|---|---|---|"]
    for event in events[:rows]:
        seconds = event.self_cpu_time_total / 1e6
        rate = f"{event.flops / 1e9 / seconds:.1f}" if event.flops and seconds else ""
        lines.append(f"| `{event.key}` | {event.count} | {seconds:.3f} | {event.self_cpu_time_total / total:.1%} | "
                     f"{rate} |")
    return "\n".join(lines)


# ---- main -----------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=None, help="tokens to generate (default 64; smoke 16)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions; medians are reported (on "
                        "a noisy host one slow run of 64 tokens moves a median of 2 by 10 %%)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--streams", type=int, default=8, help="streams of the batched run")
    parser.add_argument("--train-tokens", type=int, default=None, help="tokens per window of the training step "
                        "(default: the recipe's seq_len, 1024; smoke 32)")
    parser.add_argument("--train-batch", type=int, default=1, help="sequences per training step (the training "
                        "recipe's default is 4 x 1024 tokens)")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: repo, batch, train (both "
                        "training steps), head (the head-only training step)")
    parser.add_argument("--profile-train", action="store_true",
                        help="also profile one restricted step of the recipe (ops, shares, GFLOP/s of the products)")
    parser.add_argument("--plain-attention", action="store_true", help="train with transformers' sdpa attention "
                        "instead of the recipe's block-skipping one (audiolm.attention)")
    parser.add_argument("--smoke", action="store_true", help="tiny random Gemma 3; targets not enforced")
    args = parser.parse_args(argv)
    tokens = args.tokens or (16 if args.smoke else 64)
    tokens -= tokens % K
    train_tokens = args.train_tokens or (32 if args.smoke else 1024)
    skip = {s for s in args.skip.split(",") if s}
    import warnings

    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model, vocab = load_model(args.smoke)
    print(f"# audio-LM benchmark: {'tiny random Gemma 3' if args.smoke else 'Gemma 3 270M'} + {vocab.num_audio_tokens} "
          f"audio tokens, fp32, {tokens} tokens, flatten K={K}, {args.threads} threads, {args.repeats} interleaved "
          f"repeats (model ready in {time.perf_counter() - start:.1f} s)", flush=True)
    setup = make_setup(model, vocab, streams=args.streams)
    single = setup.prompts[:1]
    # FastDecoder prepares its weights (fused, re-laid-out) once per model and layout, as loading prepares the
    # baseline's model; timed here, outside the timed generations
    from audiolm.fastgen import FastDecoder

    prepare = {n: timed(lambda n=n: FastDecoder(model, max_len=8, batch=n))[0] for n in sorted({1, args.streams})}
    results: dict[str, list[float]] = {"baseline": [], "repo": [], "fast": [], "batch": []}
    outputs = {}
    for _ in range(args.repeats):
        t, outputs["baseline"] = timed(lambda: baseline_generate(setup, single, tokens))
        results["baseline"].append(t)
        if "repo" not in skip:
            t, outputs["repo"] = timed(lambda: repo_generate(setup, tokens))
            results["repo"].append(t)
        t, outputs["fast"] = timed(lambda: fast_generate(setup, single, tokens))
        results["fast"].append(t)
        if "batch" not in skip:
            t, outputs["batch"] = timed(lambda: fast_generate(setup, setup.prompts, tokens))
            results["batch"].append(t)
        print("  repeat done", flush=True)
    bandwidth = memory_bandwidth(16 if args.smoke else 256)
    bandwidth_bf16 = memory_bandwidth(16 if args.smoke else 256, "bfloat16")
    context = single.shape[1] + tokens // 2
    full_rows = model.get_output_embeddings().weight.shape[0]
    bytes_full, bytes_restricted = step_bytes(model, full_rows, context), step_bytes(model, 1024, context)

    base = statistics.median(results["baseline"])
    base_tps = tokens / base
    missed, lines = [], []
    lines.append("| generation (greedy, constrained) | streams | tokens/s (aggregate) | vs baseline "
                 "| bound (bytes/step / bandwidth) | audio s per s at 1.5 / 6 kbps | identical to baseline |")
    lines.append("|---|---|---|---|---|---|---|")

    def row(label, key, streams, bound_bytes, reference):
        seconds = statistics.median(results[key])
        tps = streams * tokens / seconds
        same = torch.equal(outputs[key][:1], reference)
        bound = f"{bandwidth / bound_bytes:.0f} tok/s ({bound_bytes / 1e9:.2f} GB / {bandwidth / 1e9:.1f} GB/s)"
        if streams > 1:
            bound = f"{streams * bandwidth / bound_bytes:.0f} tok/s if weight reads dominate"
        audio = " / ".join(f"{tps / n:.2f}" for n in AUDIO_TOKENS_PER_SECOND.values())
        lines.append(f"| {label} | {streams} | {tps:.1f} | **{tps / base_tps:.2f}x** | {bound} | {audio} | "
                     f"{'yes' if same else 'NO'} |")
        if not same:
            missed.append(f"{label}: greedy output differs from the baseline")
        return tps

    reference = outputs["baseline"]
    row("transformers `generate` + LogitsProcessor (baseline)", "baseline", 1, bytes_full, reference)
    if "repo" not in skip:
        row("`audiolm.generate.generate_codes`", "repo", 1, bytes_restricted, reference)
    fast_tps = row("`audiolm.fastgen.FastDecoder`", "fast", 1, bytes_restricted, reference)
    if fast_tps / base_tps < SINGLE_TARGET:
        missed.append(f"fastgen single stream {fast_tps / base_tps:.2f}x < {SINGLE_TARGET}x")
    if "batch" not in skip:
        batch_tps = row("`audiolm.fastgen.FastDecoder`, batch", "batch", args.streams, bytes_restricted, reference)
        if batch_tps / base_tps < BATCH_TARGET:
            missed.append(f"fastgen {args.streams} streams {batch_tps / base_tps:.2f}x < {BATCH_TARGET}x")
    lines.append("")
    lines.append("FastDecoder weights prepared once per model and layout before the timed runs: "
                 + ", ".join(f"{t:.2f} s ({n} stream{'s' if n > 1 else ''})" for n, t in prepare.items()))
    lines.append(f"memory bandwidth (matrix x vector, {args.threads} threads): {bandwidth / 1e9:.1f} GB/s fp32, "
                 f"{bandwidth_bf16 / 1e9:.1f} GB/s bf16 (bf16 halves the bytes; it pays only if its rate stays "
                 f"above half the fp32 one)")

    if "train" not in skip:
        cases = [("the body and the audio rows: the recipe's step (`audiolm.train.AudioLM`)", recipe_step_times, True)]
        if "head" not in skip:
            cases.append(("the body only, embedding frozen: the head alone (`restricted_forward`)", head_step_times,
                          False))
        attention = "transformers' sdpa" if args.plain_attention else "block-skipping sdpa"
        lines += ["", f"| training step, forward + backward, {args.train_batch} x {train_tokens} tokens, {attention} "
                  "| what trains "
                  f"| full head ({full_rows} rows) tokens/s | restricted tokens/s | restricted vs full | loss (both) |",
                  "|---|---|---|---|---|---|"]
        profiles = []
        for label, step_times, target in cases:
            st = step_times(model, vocab, train_tokens, args.repeats, args.profile_train and target, args.train_batch,
                            args.plain_attention)
            speedup = st.full / st.restricted
            same_loss = abs(st.loss_restricted - st.loss_full) <= 1e-4 * max(1.0, abs(st.loss_full))
            loss = f"{st.loss_full:.6f}" if same_loss else f"{st.loss_full:.6f} vs {st.loss_restricted:.6f}"
            mark = f"**{speedup:.2f}x**" if target else f"{speedup:.2f}x (no target)"
            lines.append(f"| {'target' if target else 'for reference'} | {label} | {st.tokens / st.full:.1f} | "
                         f"{st.tokens / st.restricted:.1f} | {mark} | {loss} |")
            if not same_loss:
                missed.append(f"training loss differs ({label}): {st.loss_restricted} vs {st.loss_full}")
            if target and speedup < TRAIN_TARGET:
                missed.append(f"training step {speedup:.2f}x < {TRAIN_TARGET}x")
            if st.profile:
                profiles.append(st.profile)
        lines += ["", attention_times(model, train_tokens, max(3, args.repeats))]
        lines += [""] + profiles if profiles else []
    print()
    print("\n".join(lines))
    print()
    if args.smoke:
        wrong = [m for m in missed if "differ" in m]
        for m in wrong:
            print(f"MISSED: {m}")
        print("smoke run: speed targets not enforced")
        return 1 if wrong else 0
    for m in missed:
        print(f"MISSED: {m}")
    print("all targets met" if not missed else f"{len(missed)} target(s) missed")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
