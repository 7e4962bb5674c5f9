"""How well an audio LM predicts codes: cross-entropy per codebook, accuracy and bits per second of audio, against
n-gram baselines estimated on the same shards.

Bits per second of audio = sum over codebooks of (cross-entropy in bits per code) x (codes per second = frame rate):
the length of an ideal entropy code of the codes under the model. The codec's own rate (`K * log2(cardinality)`
bits per frame) is the ceiling; a model that does not beat the baselines below has learnt nothing beyond them.

Baselines (counts from the `train` split, add-one/Laplace smoothing over the `cardinality` codes, scored on the
evaluated split):
- unigram: p(c | codebook k);
- bigram, same codebook: p(c_t | c_{t-1}) of codebook k (the first frame uses the unigram);
- bigram, previous position: p(c | previous token in the flattened frame-major order), i.e. codebook k-1 of the same
  frame, or codebook K-1 of the previous frame for k = 0 (the very first code uses the unigram).

Lower is better for every number here, except accuracy.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from codec.errors import CodecError

from .data import TokenDataset, load_tokens


@dataclass
class Baselines:
    """Bits per code `[K]` of each n-gram baseline on the evaluated codes."""

    unigram: list[float]
    bigram_same_codebook: list[float]
    bigram_previous_position: list[float]


def ngram_baselines(train: TokenDataset, test: TokenDataset) -> Baselines:
    """Add-one smoothed unigram and bigram cross-entropies (bits per code, per codebook) of `test` under `train`."""
    K, card = train.num_codebooks, train.cardinality
    uni = torch.ones(K, card, dtype=torch.float64)
    same = torch.ones(K, card, card)  # float32 counts are exact up to 2**24 per cell
    prev = torch.ones(K, card, card)
    k_index = torch.arange(K)[:, None]
    for e in train.examples:
        c = e.codes  # [K, T]
        if c.shape[1] == 0:
            continue
        uni.index_put_((k_index.expand_as(c), c), torch.ones(c.shape, dtype=torch.float64), accumulate=True)
        if c.shape[1] > 1:
            a, b = c[:, :-1], c[:, 1:]
            same.index_put_((k_index.expand_as(a), a, b), torch.ones(a.shape), accumulate=True)
        flat = c.T.reshape(-1)  # frame-major order
        books = torch.arange(K).repeat(c.shape[1])
        prev.index_put_((books[1:], flat[:-1], flat[1:]), torch.ones(flat.shape[0] - 1), accumulate=True)
    log_uni = (uni / uni.sum(-1, keepdim=True)).log2()
    log_same = same.div_(same.sum(-1, keepdim=True)).log2_()  # in place: K x card x card can be large
    log_prev = prev.div_(prev.sum(-1, keepdim=True)).log2_()
    bits = torch.zeros(3, K, dtype=torch.float64)
    count = torch.zeros(K, dtype=torch.float64)
    for e in test.examples:
        c = e.codes
        T = c.shape[1]
        if T == 0:
            continue
        count += T
        u = -log_uni[k_index.expand_as(c), c]  # [K, T]
        bits[0] += u.sum(1)
        s = u.clone()  # float64
        if T > 1:
            s[:, 1:] = -log_same[k_index.expand(K, T - 1), c[:, :-1], c[:, 1:]]
        bits[1] += s.sum(1)
        flat = c.T.reshape(-1)
        books = torch.arange(K).repeat(T)
        p = torch.cat([u[:1, 0], -log_prev[books[1:], flat[:-1], flat[1:]].double()])  # [T * K] frame-major
        bits[2] += p.reshape(T, K).sum(0)
    per = (bits / count.clamp_min(1)).tolist()
    return Baselines(unigram=per[0], bigram_same_codebook=per[1], bigram_previous_position=per[2])


@dataclass
class EvalReport:
    """An LM evaluated on a split of token shards (bits are per code, lists are per codebook).

    Args:
        split: the evaluated split.
        seconds: seconds of audio evaluated.
        frame_rate: codec frames per second.
        codec_bits_per_second: the codec's raw rate, `K * log2(cardinality) * frame_rate`.
        lm_bits: the LM's cross-entropy per codebook (bits per code).
        lm_bits_per_second: `frame_rate * sum(lm_bits)`.
        accuracy: top-1 accuracy over the codes.
        stop_bits: cross-entropy of the stop decisions (bits), NaN if none.
        baselines: n-gram cross-entropies per codebook.
        baseline_bits_per_second: the same as bits per second, by baseline name.
        beats_baselines: the LM's bits per second is below every baseline's.
    """

    split: str
    seconds: float
    frame_rate: float
    codec_bits_per_second: float
    lm_bits: list[float]
    lm_bits_per_second: float
    accuracy: float
    stop_bits: float
    baselines: Baselines
    baseline_bits_per_second: dict[str, float]
    beats_baselines: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        """A plain-text table: one row per model, bits/s and bits per code of each codebook."""
        K = len(self.lm_bits)
        header = f"{'model':<28}{'bits/s':>10}" + "".join(f"{f'k{k}':>8}" for k in range(K))
        rows = [header, "-" * len(header)]

        def line(name: str, bps: float, bits: list[float]) -> str:
            return f"{name:<28}{bps:>10.1f}" + "".join(f"{b:>8.3f}" for b in bits)

        card_bits = self.codec_bits_per_second / self.frame_rate / max(1, K)
        rows.append(line("codec (raw codes)", self.codec_bits_per_second, [card_bits] * K))
        rows.append(line("unigram", self.baseline_bits_per_second["unigram"], self.baselines.unigram))
        rows.append(line("bigram (same codebook)", self.baseline_bits_per_second["bigram_same_codebook"],
                         self.baselines.bigram_same_codebook))
        rows.append(line("bigram (previous position)", self.baseline_bits_per_second["bigram_previous_position"],
                         self.baselines.bigram_previous_position))
        rows.append(line("audio LM", self.lm_bits_per_second, self.lm_bits))
        rows.append(f"LM top-1 accuracy {self.accuracy:.3f}; {self.seconds:.1f} s of {self.split} audio; "
                    f"{'beats' if self.beats_baselines else 'does NOT beat'} every baseline")
        return "\n".join(rows)


@dataclass
class LoadedRun:
    """A trained run ready to score windows: the `AudioLM` wrapper, tokenizer, bridge config and training recipe."""

    model: Any
    tokenizer: Any
    bridge: Any
    seq_len: int
    text_conditioning: bool
    device: Any


def load_run(run: str | Path, codec: Any | None = None, device: str | None = None) -> LoadedRun:
    from .model import load_bridge
    from .train import AudioLM

    bridge = load_bridge(run, codec=codec)
    recipe = bridge.config.extra.get("train", {})
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = AudioLM(bridge.model, bridge.config.vocab, bridge.config.num_codebooks).to(device).eval()
    return LoadedRun(model, bridge.tokenizer, bridge.config, int(recipe.get("seq_len", 1024)),
                     bool(recipe.get("text_conditioning", False)), device)


def score(loaded: LoadedRun, dataset: TokenDataset, batch_size: int = 4):
    """Summed `train.Stats` of the run over every window of `dataset` (each example cut into consecutive windows)."""
    from .patterns import get_pattern
    from .train import WindowSource, evaluate_windows

    config = loaded.bridge
    if dataset.num_codebooks != config.num_codebooks:
        raise CodecError(f"the shards have {dataset.num_codebooks} codebooks, the model {config.num_codebooks}")
    pattern = get_pattern(config.pattern, config.num_codebooks)
    source = WindowSource(dataset, pattern, config.vocab, loaded.tokenizer, loaded.seq_len, loaded.text_conditioning)
    pad = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
    return evaluate_windows(loaded.model, source.sequential(), batch_size, loaded.device, pad)


def evaluate(run: str | Path, shards: str | Path, split: str = "valid", batch_size: int = 4) -> EvalReport:
    """Score a run on `split` of `shards` and compare it with the n-gram baselines (see the module docstring)."""
    data = load_tokens(shards)
    test, train = data.split(split), data.split("train")
    if not test.examples:
        raise CodecError(f"{shards}: no {split!r} split (splits: {', '.join(data.splits)})")
    if not train.examples:
        raise CodecError(f"{shards}: no 'train' split to estimate the baselines on")
    loaded = load_run(run)
    if loaded.bridge.codec_sha256 != data.codec_sha256:
        raise CodecError(f"{run} was trained on codes of {loaded.bridge.codec_name}, the shards hold "
                         f"{data.codec_name} codes")
    stats = score(loaded, test, batch_size)
    baselines = ngram_baselines(train, test)
    fr = data.frame_rate
    base_bps = {name: fr * sum(bits) for name, bits in asdict(baselines).items()}
    lm_bps = stats.bits_per_second(fr)
    stop = float(stats.nll[-1] / stats.count[-1] / math.log(2)) if stats.count[-1] else float("nan")
    return EvalReport(
        split=split, seconds=test.seconds, frame_rate=fr,
        codec_bits_per_second=data.num_codebooks * math.log2(data.cardinality) * fr,
        lm_bits=stats.bits_per_code, lm_bits_per_second=lm_bps, accuracy=stats.accuracy, stop_bits=stop,
        baselines=baselines, baseline_bits_per_second=base_bps,
        beats_baselines=all(lm_bps < b for b in base_bps.values()),
    )


@lru_cache(maxsize=2)
def _cached_run(run: str) -> LoadedRun:
    return load_run(run)


def bits_per_second(run_dir: str | Path, codes: torch.Tensor, codec: Any) -> float:
    """Bits per second of audio the run's LM needs for codes `[1, K, T]` of `codec` (total cross-entropy in bits of
    every code / seconds of audio). The run is loaded once per process (cached); lower is better."""
    from .data import TokenExample

    loaded = _cached_run(str(Path(run_dir).resolve()))
    loaded.bridge.check_codec(codec)
    if codes.dim() != 3 or codes.shape[0] != 1:
        raise CodecError(f"codes must be [1, K, T], got shape {list(codes.shape)}")
    K, T = codes.shape[1], codes.shape[2]
    if K != loaded.bridge.num_codebooks:
        raise CodecError(f"the run models {loaded.bridge.num_codebooks} codebooks, the codes have {K}")
    if T == 0:
        raise CodecError("no frames to score")
    dataset = TokenDataset([TokenExample(codes[0].long().cpu(), "", "test")], codec.weights.name,
                           codec.weights.sha256, codec.bandwidth_for(K), K, codec.frame_rate, codec.max_codebooks,
                           codec.cardinality, codec.sample_rate)
    stats = score(loaded, dataset)
    return float(stats.nll[:-1].sum() / math.log(2) / (T / codec.frame_rate))


# ---- CLI ------------------------------------------------------------------------------------------------------------
def add_eval_arguments(parser) -> None:
    parser.add_argument("run", help="a trained run folder")
    parser.add_argument("shards", help="folder of token shards (the train split gives the baselines)")
    parser.add_argument("--split", default="valid", help="split to evaluate (valid)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run_eval(args) -> int:
    report = evaluate(args.run, args.shards, args.split, args.batch_size)
    print(json.dumps(report.to_json(), indent=2) if args.json else report.table())
    return 0
