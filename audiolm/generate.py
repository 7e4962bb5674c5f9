"""Constrained, KV-cached sampling of audio tokens from a trained audio LM, decoded through the codec.

Every position of a pattern belongs to one codebook (`Pattern.codebook_at`), so at each step the logits are computed
only over that codebook's `cardinality` rows plus the audio specials (the bridge's `restricted_logits` on the last
hidden state), and everything the position cannot hold is masked *before* sampling:
- a code position can only emit a code of its codebook: no invalid token, no skipped or shuffled frame, ever;
- the stop can only come at a frame boundary (codebook 0's position): `<|audio_end|>` in flatten, the `<|audio_pad|>`
  that opens the tail in delay (after which the tail's pads, the remaining codes of the last frames and the final
  `<|audio_end|>` follow as the layout dictates); it is forced once the length is reached;
- positions whose token is known (the delay pattern's leading pads, the prompt's codes) are forced, not sampled.

The batch of samples shares one prefix `[<bos>, text..., <|audio_start|>, prompt tokens...]`, run once; each
following step feeds one token per sample (finished samples are fed pads, which nothing reads). Two engines run the
steps with the same arithmetic and give the same tokens (tested): `audiolm.fastgen.FastDecoder` (static KV cache,
layers run by hand, head rows gathered once per codebook; the default for a plain Gemma 3) and the model's own
forward with `past_key_values` (any model, adapters included). Greedy decoding (`temperature=0`) is deterministic;
sampling is reproducible for a seed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from codec.errors import CodecError

from .model import restricted_logits
from .patterns import Pattern
from .vocab import AUDIO_END, AUDIO_PAD, AudioVocab


@dataclass
class Sampling:
    """How to pick each token among the allowed ones.

    Args:
        temperature: softmax temperature; 0 means greedy (argmax).
        top_k: keep only the k most likely tokens (0: all).
        top_p: keep the smallest set of tokens whose probability reaches p (1: all).
        seed: seed of the sampler's random generator.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0


@dataclass
class Generated:
    """What `generate_codes` produced.

    Args:
        codes: per sample, codes `[K, T_i]` (the prompt's frames first).
        ids: per sample, the audio token ids after `<|audio_start|>`, up to and including `<|audio_end|>`.
        prompt_frames: frames that came from the prompt.
    """

    codes: list[torch.Tensor]
    ids: list[torch.Tensor]
    prompt_frames: int


def pick(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator | None) -> torch.Tensor:
    """Choose one column per row of `logits` `[B, N]` (masked columns are -inf)."""
    if sampling.temperature <= 0:
        return logits.argmax(-1)
    logits = logits.float() / sampling.temperature
    if sampling.top_k and sampling.top_k < logits.shape[-1]:
        kth = logits.topk(sampling.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) >= sampling.top_p  # keeps the first token always
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


ENGINES = ("auto", "fast", "transformers")


class _TransformersSteps:
    """Decoding steps through the model's own forward with a `DynamicCache`: works for any causal LM (adapters and
    stand-ins included)."""

    def __init__(self, model: Any):
        self.model = model
        self.cache = None

    def start(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.feed(input_ids)

    def feed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Tokens `[B, L]` -> the last position's final hidden state `[B, H]`."""
        out = self.model.get_decoder()(input_ids=input_ids, past_key_values=self.cache, use_cache=True)
        self.cache = out.past_key_values
        return out.last_hidden_state[:, -1]

    def logits(self, hidden: torch.Tensor, key: int, rows: torch.Tensor) -> torch.Tensor:
        return restricted_logits(self.model, hidden[:, None], rows)[:, 0]


class _FastSteps:
    """Decoding steps through `audiolm.fastgen.FastDecoder` (static cache, hand-run layers, head rows gathered once
    per codebook): the same arithmetic, several times faster per token on a CPU (`scripts/bench_lm.py`)."""

    def __init__(self, model: Any, max_len: int, batch: int):
        from .fastgen import FastDecoder

        self.decoder = FastDecoder(model, max_len=max_len, batch=batch)

    def start(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.decoder.prefill(input_ids)

    def feed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.decoder.step(input_ids[:, 0])

    def logits(self, hidden: torch.Tensor, key: int, rows: torch.Tensor) -> torch.Tensor:
        return self.decoder.logits(hidden, key, rows)


def _steps(model: Any, engine: str, max_len: int, batch: int):
    from .fastgen import FastDecoder

    if engine not in ENGINES:
        raise CodecError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    if engine == "transformers" or (engine == "auto" and not FastDecoder.supports(model)):
        return _TransformersSteps(model)
    if not FastDecoder.supports(model):
        raise CodecError("the fast engine needs a plain Gemma 3 causal LM (adapters merged); use --engine transformers")
    return _FastSteps(model, max_len, batch)


@torch.inference_mode()
def generate_codes(
    model: Any,
    vocab: AudioVocab,
    pattern: Pattern,
    prefix: list[int],
    max_frames: int,
    prompt: torch.Tensor | None = None,
    num_samples: int = 1,
    sampling: Sampling | None = None,
    min_new_frames: int = 1,
    progress: bool = False,
    engine: str = "auto",
) -> Generated:
    """Sample continuations of `prompt` with every token constrained to what its position may hold.

    Args:
        model: a Gemma causal LM extended with `vocab` (tied head).
        vocab: the audio vocabulary.
        pattern: the layout the model was trained on.
        prefix: token ids before `<|audio_start|>` (`[<bos>, text...]`).
        max_frames: stop at this many frames, prompt included.
        prompt: codes `[K, T_p]` to continue (None: start from silence of context).
        num_samples: samples generated together (a batch).
        sampling: temperature / top-k / top-p / seed (default: plain sampling at temperature 1).
        min_new_frames: the stop is not allowed before this many new frames.
        progress: show a tqdm bar over positions.
        engine: "fast" (`audiolm.fastgen`), "transformers" (the model's forward with a DynamicCache), or "auto":
            fast whenever the model is a plain Gemma 3 (both give the same tokens; tested).
    """
    from tqdm import tqdm

    sampling = sampling or Sampling()
    K, card, B = pattern.num_codebooks, vocab.cardinality, num_samples
    delay = pattern.name == "delay" and K > 1
    device = model.get_input_embeddings().weight.device
    prompt = torch.zeros(K, 0, dtype=torch.long) if prompt is None else prompt.long().cpu()
    if prompt.dim() != 2 or prompt.shape[0] != K:
        raise CodecError(f"the prompt must be codes [{K}, T], got shape {list(prompt.shape)}")
    Tp = prompt.shape[1]
    if max_frames <= Tp:
        raise CodecError(f"nothing to generate: the prompt already has {Tp} frames (limit {max_frames})")
    prompt_ids = pattern.codes_to_ids(prompt[None], vocab)[0][: Tp * K] if Tp else torch.zeros(0, dtype=torch.long)
    head = torch.tensor([*prefix, vocab.start_id], dtype=torch.long)
    start = torch.cat([head, prompt_ids])[None].expand(B, -1).to(device)
    generator = torch.Generator(device=device).manual_seed(sampling.seed)
    specials = [vocab.special_id(s) for s in vocab.specials]
    stop_col = card + vocab.specials.index(AUDIO_PAD if delay else AUDIO_END)
    rows = [torch.tensor([*vocab.codebook_ids(k), *specials], device=device) for k in range(K)]

    grid = torch.full((B, K, max_frames), -1, dtype=torch.long)
    grid[:, :, :Tp] = prompt
    streams: list[list[int]] = [prompt_ids.tolist() for _ in range(B)]
    ended: list[int | None] = [None] * B  # frames of a sample once it stopped
    finished = [False] * B
    position = Tp * K
    total = (max_frames + (K - 1 if delay else 0)) * K + 1
    steps = _steps(model, engine, max_len=start.shape[1] + total - position + 1, batch=B)
    hidden = steps.start(start)
    bar = tqdm(total=total, initial=position, disable=not progress, unit="tok", desc="generating")
    while not all(finished):
        step, k = divmod(position, K)
        frame = step - k if delay else step
        forced: list[int | None] = [None] * B
        may_stop = [False] * B
        for b in range(B):
            T_end = ended[b]
            if finished[b]:
                forced[b] = vocab.pad_id
            elif not delay:
                if k == 0 and frame >= max_frames:
                    forced[b], ended[b] = vocab.end_id, frame
                elif k == 0:
                    may_stop[b] = frame >= Tp + min_new_frames
            elif frame < 0:
                forced[b] = vocab.pad_id  # the leading triangle
            elif frame < Tp:
                forced[b] = int(prompt[k, frame]) + vocab.audio_base + k * card
            elif T_end is not None:
                if k == 0 and step >= T_end + K - 1:
                    forced[b] = vocab.end_id
                elif frame >= T_end:
                    forced[b] = vocab.pad_id
            elif k == 0 and frame >= max_frames:
                forced[b], ended[b] = vocab.pad_id, frame
            elif k == 0:
                may_stop[b] = frame >= Tp + min_new_frames
        chosen = torch.tensor([f if f is not None else -1 for f in forced])
        free = chosen < 0
        if bool(free.any()):
            logits = steps.logits(hidden, k, rows[k]).float()  # [B, card + S]
            allowed = torch.zeros_like(logits, dtype=torch.bool)
            allowed[:, :card] = True
            allowed[torch.tensor(may_stop, device=device), stop_col] = True
            cols = pick(logits.masked_fill(~allowed, float("-inf")), sampling, generator).cpu()
            sampled = rows[k].cpu()[cols]
            chosen = torch.where(free, sampled, chosen)
        for b in range(B):
            if finished[b]:
                continue
            token = int(chosen[b])
            streams[b].append(token)
            if token == vocab.end_id:
                finished[b] = True
                ended[b] = frame if ended[b] is None else ended[b]
            elif token == vocab.pad_id and delay and k == 0 and frame >= Tp and ended[b] is None:
                ended[b] = frame  # the sampled stop
            elif token != vocab.pad_id:
                grid[b, k, frame] = token - vocab.audio_base - k * card
            if not delay and token == vocab.end_id:
                ended[b] = frame
        position += 1
        bar.update(1)
        if all(finished):
            break
        hidden = steps.feed(chosen[:, None].to(device))
    bar.close()
    codes = [grid[b, :, : ended[b]].clone() for b in range(B)]
    ids = [torch.tensor(s, dtype=torch.long) for s in streams]
    for b in range(B):  # the guarantee, checked: every sample is a complete, valid sequence of its pattern
        if codes[b].numel() and bool((codes[b] < 0).any()):
            raise RuntimeError("internal error: a frame was left incomplete")
        if not torch.equal(pattern.ids_to_codes(ids[b][:-1], vocab)[0], codes[b]):
            raise RuntimeError("internal error: the generated tokens do not parse back to the same codes")
    return Generated(codes=codes, ids=ids, prompt_frames=Tp)


# ---- CLI ------------------------------------------------------------------------------------------------------------
def output_paths(out: str | Path, n: int) -> list[Path]:
    """OUT for one sample; OUT_0.wav, OUT_1.wav ... for several."""
    out = Path(out)
    return [out] if n == 1 else [out.with_name(f"{out.stem}_{i}{out.suffix}") for i in range(n)]


def add_generate_arguments(parser) -> None:
    parser.add_argument("run", help="a trained run folder (audiolm train --out)")
    parser.add_argument("--out", required=True, help="audio file to write (N samples: OUT_0.wav, OUT_1.wav, ...)")
    parser.add_argument("--seconds", type=float, required=True, help="seconds of audio to generate after the prompt")
    parser.add_argument("--prompt", default=None, help="audio file to continue")
    parser.add_argument("--prompt-seconds", type=float, default=None, help="use only the last N seconds of it")
    parser.add_argument("--text", default=None, help="text before the audio (runs trained with text conditioning)")
    parser.add_argument("--num-samples", type=int, default=1)
    parser.add_argument("--temperature", type=float, default=1.0, help="0: greedy")
    parser.add_argument("--top-k", type=int, default=250)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=None, help="codec (default: the one named in the run's bridge.json)")
    parser.add_argument("--strip-prompt", action="store_true", help="write only the generated part")
    parser.add_argument("--force", action="store_true", help="overwrite the output files")
    parser.add_argument("--engine", default="auto", choices=ENGINES,
                        help="decoding loop: fast (static cache, CPU-lean), transformers, or auto (fast when possible)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run_generate(args) -> int:
    from codec.audio import load_for_model, write_audio

    from .cli_tokens import load_codec_by_name
    from .model import load_bridge, read_bridge_config
    from .patterns import get_pattern

    if args.seconds <= 0 or args.num_samples < 1:
        raise CodecError("--seconds must be positive and --num-samples at least 1")
    paths = output_paths(args.out, args.num_samples)
    for path in paths:
        if path.exists() and not args.force:
            raise CodecError(f"{path}: already exists; use --force to overwrite it")
    config = read_bridge_config(args.run)
    codec = load_codec_by_name(args.model or config.codec_name)
    config.check_codec(codec)
    trained_with_text = bool(config.extra.get("train", {}).get("text_conditioning"))
    if args.text and not trained_with_text:
        raise CodecError(f"{args.run} was trained without text conditioning; leave out --text")
    bridge = load_bridge(args.run, codec=codec, tokenizer=bool(args.text))  # the tokenizer is slow to load
    K = config.num_codebooks
    pattern = get_pattern(config.pattern, K)
    prompt = None
    if args.prompt:
        wav, _ = load_for_model(args.prompt, codec.sample_rate, codec.channels)
        if args.prompt_seconds:
            wav = wav[..., -int(args.prompt_seconds * codec.sample_rate) :]
        with torch.inference_mode():
            prompt = codec.encode(wav, codec.bandwidth_for(K)).codes[0][:K]  # [K, T_p]
    Tp = 0 if prompt is None else prompt.shape[1]
    max_frames = Tp + max(1, round(args.seconds * codec.frame_rate))
    sampling = Sampling(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    torch.manual_seed(args.seed)
    result = generate_codes(bridge.model, config.vocab, pattern, bridge.prefix(args.text or ""),
                            max_frames, prompt, args.num_samples, sampling, progress=not args.quiet,
                            engine=args.engine)
    for path, codes in zip(paths, result.codes, strict=True):
        if args.strip_prompt:
            codes = codes[:, Tp:]
        with torch.inference_mode():
            wav = codec.decode_codes(codes[None]) if codes.shape[1] else torch.zeros(1, codec.channels, 0)
        write_audio(path, wav[0], codec.sample_rate, force=True, inputs=[args.prompt] if args.prompt else [])
        seconds = codes.shape[1] / codec.frame_rate
        print(f"wrote {path}: {codes.shape[1]} frames ({seconds:.2f} s, {result.prompt_frames} from the prompt)"
              if not args.strip_prompt else f"wrote {path}: {codes.shape[1]} new frames ({seconds:.2f} s)")
    if not args.quiet:
        print(f"codec: {codec.weights.name} (sha256 {codec.weights.sha256[:12]})", file=sys.stderr)
    return 0
