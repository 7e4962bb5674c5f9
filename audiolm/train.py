"""Fine-tuning Gemma 3 on audio tokens: next-token training with the loss only on audio, over the restricted head.

A training sequence is `[<bos>, text..., <|audio_start|>, audio tokens (pattern)..., <|audio_end|>]`, cut into windows
of at most `seq_len` tokens that start on a pattern step (each window is re-prefixed with `<bos> text <|audio_start|>`).
The text is the shard's `text` column with `--text-conditioning`, else empty.

What is predicted (everything else has label -100):
- every code token, with the softmax over its codebook's `cardinality` rows plus the audio specials (exact: no other
  token can occur there), through the bridge's `restricted_logits`;
- the decision to stop: `<|audio_end|>` at a frame boundary (flatten), or the `<|audio_pad|>` in codebook 0's slot of
  the first step after the last frame (delay; the rest of the delay tail and the final end are forced, so unlabelled).

What is trained (`AudioLM`): the audio rows are a separate parameter `audio_embed` `[R, H]` (every row from
`audio_base` on, used both as input embedding and, tied, as the restricted head), while the 262k text rows stay frozen:
the restricted head never touches them, so they would only get gradient from the few text-prefix inputs, and freezing
them saves 3 x 168M floats of optimizer state. `export` writes `audio_embed` back into the tied embedding matrix. With
`--lora`, the body gets LoRA adapters (peft; merged at export); without, every body weight is trained. On the CPU the
body's attention skips the blocks its mask removes (`audiolm.attention`; about a quarter of a step at 1024 tokens).

`accelerate launch -m audiolm train ...` runs data-parallel on several GPUs (each process draws its own windows); bf16
autocast on GPU. Checkpoints (`RUN/checkpoint/`: trainable weights as safetensors, optimizer state loaded with
`weights_only=True`, RNG states, step) are replaced atomically and resumed automatically; `RUN/log.csv` gets one row
per logged step and split: cross-entropy per codebook in bits per token and bits per second of audio
(`frame_rate * sum_k CE_k`, the LM's code length for one second of codes).
"""

from __future__ import annotations

import csv
import json
import math
import os
import pickle
import shutil
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from codec.errors import CodecError

from .attention import use_blocked_attention
from .data import TokenDataset, load_tokens
from .model import BridgeConfig, restricted_logits, save_bridge
from .patterns import PAD, Pattern, get_pattern
from .vocab import AUDIO_END, AUDIO_PAD, AudioVocab

LOG_FILE = "log.csv"
CHECKPOINT_DIR = "checkpoint"
CONFIG_FILE = "train_config.json"
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LN2 = math.log(2)


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved in `RUN/train_config.json` and in `bridge.json` (`extra`).

    Args:
        base: Gemma name or path (see `audiolm.gemma`).
        pattern: `flatten` or `delay`.
        lora: LoRA adapters on the body instead of full fine-tuning (the audio rows are always trained).
        lora_rank: LoRA rank r.
        lora_alpha: LoRA alpha (scale alpha / r).
        steps: optimizer steps.
        seq_len: tokens per training window, prefix included.
        batch_size: windows per micro-batch (per process).
        grad_accum: micro-batches per optimizer step.
        lr: peak learning rate of the body (full or LoRA).
        audio_lr: peak learning rate of the audio rows (None: `lr`).
        warmup: linear warm-up steps, then cosine decay to `min_lr_ratio * lr`.
        min_lr_ratio: final learning rate as a fraction of the peak.
        weight_decay: AdamW weight decay of the body (never of the audio rows).
        max_grad_norm: gradient clipping (0: none).
        text_conditioning: put the shards' `text` before `<|audio_start|>`.
        gradient_checkpointing: recompute activations in the backward pass (less memory, ~30 % slower).
        init: initialisation of the new rows (see `audiolm.model.INITS`).
        eval_every: validate every this many steps (and at the end).
        eval_windows: validation windows (the first ones of the valid split, in order).
        save_every: checkpoint every this many steps (and at the end).
        log_every: write a train row every this many steps.
        seed: seed of the data order and of LoRA's initialisation.
    """

    base: str = "gemma-3-270m"
    pattern: str = "flatten"
    lora: bool = False
    lora_rank: int = 16
    lora_alpha: float = 32.0
    steps: int = 1000
    seq_len: int = 1024
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 1e-4
    audio_lr: float | None = 1e-3
    warmup: int = 50
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    text_conditioning: bool = False
    gradient_checkpointing: bool = False
    init: str = "mean"
    eval_every: int = 100
    eval_windows: int = 32
    save_every: int = 100
    log_every: int = 10
    seed: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning-rate multiplier at `step` (0-based): linear warm-up, then cosine from 1 to `min_lr_ratio`."""
    if step < config.warmup:
        return (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


# ---- sequences ------------------------------------------------------------------------------------------------------
@dataclass
class AudioStream:
    """The audio part of one example, after `<|audio_start|>`, with what each token is trained as.

    Args:
        ids: `[L]` token ids (pattern ids, then the end).
        books: `[L]` codebook whose rows (plus the specials) predict each token; -1 where it is not predicted.
        cols: `[L]` column of the token among those rows (code c -> c; special i -> cardinality + i).
    """

    ids: torch.Tensor
    books: torch.Tensor
    cols: torch.Tensor


def audio_stream(codes: torch.Tensor, pattern: Pattern, vocab: AudioVocab) -> AudioStream:
    """The complete token stream of codes `[K, T]` with its targets (see the module docstring)."""
    K, T = codes.shape
    card = vocab.cardinality
    ids = pattern.codes_to_ids(codes[None], vocab)[0]
    layout = pattern.layout(T)  # [L] codebook per position, PAD where a pad goes
    books = layout.clone()
    cols = torch.where(layout >= 0, (ids - vocab.audio_base) % card, torch.zeros_like(ids))
    pad_col, end_col = card + vocab.specials.index(AUDIO_PAD), card + vocab.specials.index(AUDIO_END)
    if pattern.name == "delay":
        # the stop decision: codebook 0's slot of step T holds a pad (the rest of the tail and the end are forced)
        if T > 0 and K > 1:
            books[T * K], cols[T * K] = 0, pad_col
        ids = torch.cat([ids, torch.tensor([vocab.end_id])])
        books = torch.cat([books, torch.tensor([-1 if K > 1 else 0])])
        cols = torch.cat([cols, torch.tensor([end_col])])
    else:
        ids = torch.cat([ids, torch.tensor([vocab.end_id])])
        books = torch.cat([books, torch.tensor([0])])
        cols = torch.cat([cols, torch.tensor([end_col])])
    books[books == PAD] = -1
    return AudioStream(ids=ids, books=books, cols=cols)


def text_prefix(tokenizer: Any, text: str = "") -> list[int]:
    """`[<bos>] + text tokens`: what comes before `<|audio_start|>` (no bos if the tokenizer has none)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    ids = [bos] if bos is not None else []
    if text:
        ids += list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return ids


@dataclass
class Window:
    """One training sequence: `ids` `[L]` and, per position, the codebook and column of the token it predicts."""

    ids: torch.Tensor
    books: torch.Tensor
    cols: torch.Tensor


def make_window(prefix: list[int], stream: AudioStream, start: int, length: int, vocab: AudioVocab) -> Window:
    """`prefix + <|audio_start|> + stream[start : start + length]`; position p predicts token p + 1."""
    head = torch.tensor([*prefix, vocab.start_id], dtype=torch.long)
    part = slice(start, start + length)
    ids = torch.cat([head, stream.ids[part]])
    n = ids.shape[0] - head.shape[0]
    books = torch.full_like(ids, -1)
    cols = torch.zeros_like(ids)
    books[head.shape[0] - 1 : head.shape[0] - 1 + n] = stream.books[part]
    cols[head.shape[0] - 1 : head.shape[0] - 1 + n] = stream.cols[part]
    return Window(ids, books, cols)


@dataclass
class Batch:
    """Right-padded windows: `input_ids`, `attention_mask`, `books`, `cols`, each `[B, L]`."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    books: torch.Tensor
    cols: torch.Tensor

    def to(self, device: torch.device | str) -> Batch:
        return Batch(*(getattr(self, f.name).to(device) for f in fields(self)))


def collate(windows: list[Window], pad_id: int = 0) -> Batch:
    L = max(w.ids.shape[0] for w in windows)
    B = len(windows)
    out = Batch(torch.full((B, L), pad_id), torch.zeros(B, L, dtype=torch.long), torch.full((B, L), -1),
                torch.zeros(B, L, dtype=torch.long))
    for b, w in enumerate(windows):
        n = w.ids.shape[0]
        out.input_ids[b, :n], out.attention_mask[b, :n], out.books[b, :n], out.cols[b, :n] = w.ids, 1, w.books, w.cols
    return out


class WindowSource:
    """Windows of a token dataset: random ones for training, the consecutive ones of every example for evaluation.

    Args:
        dataset: the examples.
        pattern: their layout.
        vocab: the audio vocabulary.
        tokenizer: for the text prefix.
        seq_len: at most this many tokens per window, prefix included.
        text_conditioning: put each example's text in the prefix.
    """

    def __init__(self, dataset: TokenDataset, pattern: Pattern, vocab: AudioVocab, tokenizer: Any, seq_len: int,
                 text_conditioning: bool = False):
        self.pattern, self.vocab, self.seq_len = pattern, vocab, seq_len
        self.items: list[tuple[list[int], AudioStream]] = []
        for example in dataset.examples:
            if example.codes.shape[1] == 0:
                continue
            prefix = text_prefix(tokenizer, example.text if text_conditioning else "")
            if len(prefix) + 2 > seq_len:
                raise CodecError(f"--seq-len {seq_len} leaves no room for audio after the text of {example.source}")
            self.items.append((prefix, audio_stream(example.codes, pattern, vocab)))
        weights = [s.ids.shape[0] for _, s in self.items]
        self.weights = torch.tensor(weights, dtype=torch.float64) if weights else torch.zeros(0)

    def __len__(self) -> int:
        return len(self.items)

    def random(self, generator: torch.Generator) -> Window:
        """A window of a random example (chosen in proportion to its length), starting at a random pattern step."""
        i = int(torch.multinomial(self.weights, 1, generator=generator))
        prefix, stream = self.items[i]
        room = self.seq_len - len(prefix) - 1
        K = self.pattern.num_codebooks
        last_step = max(0, math.ceil((stream.ids.shape[0] - room) / K))
        start = int(torch.randint(0, last_step + 1, (1,), generator=generator)) * K
        return make_window(prefix, stream, start, room, self.vocab)

    def sequential(self, limit: int | None = None) -> list[Window]:
        """Every example cut into consecutive windows (each window's start a pattern step), in order."""
        out: list[Window] = []
        K = self.pattern.num_codebooks
        for prefix, stream in self.items:
            room = max(K, (self.seq_len - len(prefix) - 1) // K * K)
            for start in range(0, stream.ids.shape[0], room):
                out.append(make_window(prefix, stream, start, room, self.vocab))
                if limit is not None and len(out) >= limit:
                    return out
        return out


# ---- the model ------------------------------------------------------------------------------------------------------
class _Head:
    """What `restricted_logits` needs of a model: the tied head weight (here, the audio rows) and the soft-cap."""

    def __init__(self, weight: torch.Tensor, config: Any):
        self._weight, self.config = weight, config

    def get_output_embeddings(self) -> Any:
        return self

    @property
    def weight(self) -> torch.Tensor:
        return self._weight


@dataclass
class LMOutput:
    """A forward pass over a batch.

    Args:
        loss: mean cross-entropy (nats) over the predicted tokens.
        nll: `[K + 1]` summed cross-entropy (nats) of the code tokens of each codebook, and (last) of the stop
            decisions.
        count: `[K + 1]` tokens summed in `nll`.
        correct: `[K + 1]` tokens whose argmax over their rows was right.
    """

    loss: torch.Tensor
    nll: torch.Tensor
    count: torch.Tensor
    correct: torch.Tensor


class AudioLM(nn.Module):
    """A Gemma causal LM whose audio rows are the separate trainable parameter `audio_embed` `[R, H]`.

    Args:
        lm: the extended Gemma (`Gemma3ForCausalLM`, possibly with LoRA layers injected).
        vocab: its audio vocabulary.
        num_codebooks: K, codebooks per frame.
    """

    def __init__(self, lm: Any, vocab: AudioVocab, num_codebooks: int):
        super().__init__()
        self.lm = lm
        self.vocab = vocab
        self.num_codebooks = num_codebooks
        emb = lm.get_input_embeddings()
        emb.weight.requires_grad_(False)
        self.audio_embed = nn.Parameter(emb.weight[vocab.audio_base :].detach().clone())
        card, S = vocab.cardinality, len(vocab.specials)
        specials = vocab.num_code_tokens + torch.arange(S)
        rows = torch.stack([torch.cat([k * card + torch.arange(card), specials]) for k in range(num_codebooks)])
        self.register_buffer("rows", rows, persistent=False)  # [K, card + S] rows of `audio_embed` per codebook
        use_blocked_attention(lm)  # attention skips what its mask removes on the CPU (`audiolm.attention`)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """`[B, L]` ids -> `[B, L, H]` input embeddings (text rows frozen, audio rows from `audio_embed`)."""
        emb = self.lm.get_input_embeddings()
        base = self.vocab.audio_base
        is_audio = (input_ids >= base)[..., None]
        text = F.embedding(input_ids.clamp(max=base - 1), emb.weight)
        audio = F.embedding((input_ids - base).clamp(min=0), self.audio_embed)
        x = torch.where(is_audio, audio, text)
        scale = getattr(emb, "embed_scale", None)  # Gemma multiplies embeddings by sqrt(hidden)
        return x * scale.to(x.dtype) if scale is not None else x

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Last hidden states `[B, L, H]`."""
        body = self.lm.get_decoder()
        out = body(inputs_embeds=self.embed(input_ids), attention_mask=attention_mask, use_cache=False)
        return out.last_hidden_state

    def codebook_logits(self, hidden: torch.Tensor, codebook: int) -> torch.Tensor:
        """`[..., N, H]` hidden -> `[..., N, card + S]` logits over one codebook's rows and the specials."""
        head = _Head(self.audio_embed, self.lm.config)
        return restricted_logits(head, hidden, self.rows[codebook])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, books: torch.Tensor,
                cols: torch.Tensor) -> LMOutput:
        return self.scores(self.hidden(input_ids, attention_mask), books, cols)

    def scores(self, hidden: torch.Tensor, books: torch.Tensor, cols: torch.Tensor,
               logits_of: Callable[[torch.Tensor, int], torch.Tensor] | None = None) -> LMOutput:
        """Loss and statistics of hidden states `[B, L, H]` against `books` / `cols` `[B, L]`.

        `logits_of(where, k)` gives the `[n, card + S]` logits of the positions `where` (`[B, L]` bool) over codebook
        k's rows; the default is the restricted head (`codebook_logits`). `scripts/bench_lm.py` passes columns of
        the full head's logits to time the same loss through all rows.
        """
        if logits_of is None:

            def logits_of(where: torch.Tensor, k: int) -> torch.Tensor:
                return self.codebook_logits(hidden[where][None], k)[0]

        K, card = self.num_codebooks, self.vocab.cardinality
        nll = hidden.new_zeros(K + 1, dtype=torch.float32)
        count = torch.zeros(K + 1, device=hidden.device)
        correct = torch.zeros(K + 1, device=hidden.device)
        total = hidden.new_zeros((), dtype=torch.float32)
        for k in range(K):
            where = books == k
            if not bool(where.any()):
                continue
            logits = logits_of(where, k).float()  # [n, card + S]
            target = cols[where]
            losses = F.cross_entropy(logits, target, reduction="none")
            total = total + losses.sum()
            is_code = target < card
            right = (logits.argmax(-1) == target).float()
            bucket = torch.where(is_code, torch.full_like(target, k), torch.full_like(target, K))
            nll = nll.index_add(0, bucket, losses.detach())
            count = count.index_add(0, bucket, torch.ones_like(right))
            correct = correct.index_add(0, bucket, right)
        loss = total / count.sum().clamp_min(1)
        return LMOutput(loss=loss, nll=nll, count=count, correct=correct)


def extended_lm(base: str, vocab_for: Any, init: str = "mean", codebooks: torch.Tensor | None = None,
                log: bool = True) -> tuple[Any, Any, AudioVocab]:
    """Load Gemma `base`, extend it (and its tokenizer) with the audio vocabulary `vocab_for(audio_base)`."""
    from .gemma import load_gemma
    from .model import extend_model

    gemma = load_gemma(base, log=log)
    vocab = vocab_for(gemma.model.get_input_embeddings().weight.shape[0])
    extend_model(gemma.model, vocab, init=init, codebooks=codebooks)
    vocab.extend_tokenizer(gemma.tokenizer)
    return gemma.model, gemma.tokenizer, vocab


# ---- statistics and logging -----------------------------------------------------------------------------------------
@dataclass
class Stats:
    """Summed cross-entropy, counts and correct argmaxes per codebook (last: stop decisions)."""

    nll: torch.Tensor
    count: torch.Tensor
    correct: torch.Tensor

    @classmethod
    def zeros(cls, num_codebooks: int) -> Stats:
        return cls(*(torch.zeros(num_codebooks + 1, dtype=torch.float64) for _ in range(3)))

    def add(self, out: LMOutput) -> None:
        self.nll += out.nll.detach().double().cpu()
        self.count += out.count.detach().double().cpu()
        self.correct += out.correct.detach().double().cpu()

    @property
    def loss(self) -> float:
        """Mean cross-entropy (nats) over every predicted token."""
        return float(self.nll.sum() / self.count.sum().clamp_min(1))

    @property
    def bits_per_code(self) -> list[float]:
        """Cross-entropy in bits per token for each codebook's codes (NaN where none was seen)."""
        return [float(n / c / LN2) if c else float("nan") for n, c in zip(self.nll[:-1], self.count[:-1], strict=True)]

    @property
    def accuracy(self) -> float:
        """Top-1 accuracy over the code tokens."""
        return float(self.correct[:-1].sum() / self.count[:-1].sum().clamp_min(1))

    def bits_per_second(self, frame_rate: float) -> float:
        """frame_rate * sum_k CE_k (bits): what the LM needs to code one second of audio's codes."""
        return frame_rate * sum(self.bits_per_code)


def log_row(step: int, split: str, stats: Stats, frame_rate: float, lr: float, seconds: float) -> dict[str, Any]:
    row: dict[str, Any] = {"step": step, "split": split, "loss": round(stats.loss, 5),
                           "accuracy": round(stats.accuracy, 5),
                           "bits_per_second": round(stats.bits_per_second(frame_rate), 2)}
    for k, bits in enumerate(stats.bits_per_code):
        row[f"bits_k{k}"] = round(bits, 5)
    stop = stats.count[-1]
    row["bits_stop"] = round(float(stats.nll[-1] / stop / LN2), 5) if stop else float("nan")
    row.update({"tokens": int(stats.count.sum()), "lr": f"{lr:.3g}", "elapsed_s": round(seconds, 1)})
    return row


def append_log(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def _truncate_log(path: Path, step: int) -> None:
    """Drop log rows after `step` (written after the checkpoint a resumed run restarts from)."""
    if not path.exists():
        return
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    keep = [r for r in rows if int(r["step"]) <= step]
    if len(keep) != len(rows) and rows:
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(keep)
        tmp.replace(path)


@torch.no_grad()
def evaluate_windows(model: AudioLM, windows: list[Window], batch_size: int, device: Any, pad_id: int = 0,
                     autocast: Any = nullcontext) -> Stats:
    """Summed statistics of `model` over `windows` (in batches)."""
    was_training = model.training
    model.eval()
    stats = Stats.zeros(model.num_codebooks)
    for i in range(0, len(windows), batch_size):
        batch = collate(windows[i : i + batch_size], pad_id).to(device)
        with autocast():
            stats.add(model(batch.input_ids, batch.attention_mask, batch.books, batch.cols))
    model.train(was_training)
    return stats


# ---- checkpoints ----------------------------------------------------------------------------------------------------
def trainable_state(model: AudioLM) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(run: Path, model: AudioLM, optimizer: Any, step: int, config: TrainConfig,
                    generator: torch.Generator) -> Path:
    """Write `run/checkpoint/` atomically (a temp folder renamed into place)."""
    from safetensors.torch import save_file

    tmp = run / f".{CHECKPOINT_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    rng = {"torch": torch.get_rng_state(), "data": generator.get_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state()
    save_file(rng, str(tmp / "rng.safetensors"))
    (tmp / "state.json").write_text(json.dumps({"step": step, "config": asdict(config)}, indent=2) + "\n")
    final = run / CHECKPOINT_DIR
    old = run / f".{CHECKPOINT_DIR}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(run: Path, model: AudioLM, optimizer: Any, generator: torch.Generator) -> int:
    """Restore weights, optimizer, RNG; return the step to continue from."""
    from safetensors.torch import load_file

    directory = run / CHECKPOINT_DIR
    try:
        state = json.loads((directory / "state.json").read_text())
        weights = load_file(str(directory / "trainable.safetensors"))
        optim = torch.load(directory / "optimizer.pt", weights_only=True, map_location="cpu")
        rng = load_file(str(directory / "rng.safetensors"))
    except (OSError, ValueError, RuntimeError, pickle.UnpicklingError, EOFError) as e:
        raise CodecError(f"{directory}: cannot resume from it ({str(e).splitlines()[0][:160]})") from None
    own = dict(model.named_parameters())
    missing = [n for n in own if own[n].requires_grad and n not in weights]
    if missing or any(n not in own for n in weights):
        raise CodecError(f"{directory}: its weights do not fit this model (e.g. {(missing or list(weights))[0]})")
    with torch.no_grad():
        for n, w in weights.items():
            own[n].copy_(w)
    optimizer.load_state_dict(optim)
    torch.set_rng_state(rng["torch"])
    generator.set_state(rng["data"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])
    return int(state["step"])


def export(run: Path, model: AudioLM, tokenizer: Any, bridge: BridgeConfig, peft_model: Any | None = None) -> Path:
    """Merge LoRA and the audio rows into a plain Gemma and save it with `save_bridge` (`bridge.json` last)."""
    (run / "bridge.json").unlink(missing_ok=True)  # a partial save must not look complete
    lm = peft_model.merge_and_unload() if peft_model is not None else model.lm
    with torch.no_grad():
        lm.get_input_embeddings().weight[model.vocab.audio_base :] = model.audio_embed.to(lm.dtype)
    return save_bridge(run, lm, tokenizer, bridge)


# ---- training -------------------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """What `train` did: the run folder, the final step, and the last train/valid statistics."""

    run: Path
    step: int
    resumed_from: int
    train: dict[str, Any] = field(default_factory=dict)
    valid: dict[str, Any] = field(default_factory=dict)


def _vocab_for(dataset: TokenDataset):
    return lambda audio_base: AudioVocab(audio_base, dataset.max_codebooks, dataset.cardinality)


def train(shards: str | Path, run: str | Path, config: TrainConfig, codec: Any | None = None, progress: bool = True,
          log: Any = None) -> TrainResult:
    """Train (or resume) a run on token shards; see the module docstring.

    Args:
        shards: folder of token shards (`audiolm prepare`); needs a `train` split (a `valid` split is used to validate).
        run: output folder: checkpoint, log, and at the end the saved model (`save_bridge`).
        config: the recipe.
        codec: the codec of the shards, only for `init="codebook"`.
        progress: show a tqdm bar.
        log: function taking one line of text (default: print to stderr on the main process).
    """
    from accelerate import Accelerator
    from tqdm import tqdm

    run = Path(run)
    accelerator = Accelerator(mixed_precision="bf16" if torch.cuda.is_available() else "no",
                              cpu=not torch.cuda.is_available())
    main = accelerator.is_main_process
    say = log or (lambda message: print(message, file=sys.stderr) if main else None)
    saved = run / CONFIG_FILE
    if saved.exists():
        previous = TrainConfig.from_json(json.loads(saved.read_text()))
        changed = {k for k in asdict(config) if getattr(previous, k) != getattr(config, k)}
        if changed - {"steps", "eval_every", "save_every", "log_every", "eval_windows"}:
            raise CodecError(f"{run} holds a run with other settings ({', '.join(sorted(changed))}); use another --out")
    data = load_tokens(shards)
    train_set, valid_set = data.split("train"), data.split("valid")
    if not train_set.examples:
        raise CodecError(f"{shards}: no 'train' split in the shards")
    if codec is not None and codec.weights.sha256 != data.codec_sha256:
        raise CodecError(f"the shards were made with {data.codec_name}, not {codec.weights.name}")
    if config.init == "codebook" and codec is None:
        raise CodecError("--init codebook needs the codec (--model)")
    torch.manual_seed(config.seed)
    codebooks = None
    if codec is not None and config.init == "codebook":
        from .model import codec_codebooks

        codebooks = codec_codebooks(codec)
    lm, tokenizer, vocab = extended_lm(config.base, _vocab_for(data), config.init, codebooks, log=main)
    K = data.num_codebooks
    pattern = get_pattern(config.pattern, K)
    peft_model = None
    if config.lora:
        from peft import LoraConfig, get_peft_model

        peft_model = get_peft_model(lm, LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha,
                                                   target_modules=list(LORA_TARGETS), lora_dropout=0.0))
    model = AudioLM(lm, vocab, K)
    if config.gradient_checkpointing:
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lm.config.use_cache = False
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    windows = WindowSource(train_set, pattern, vocab, tokenizer, config.seq_len, config.text_conditioning)
    valid_windows = (WindowSource(valid_set, pattern, vocab, tokenizer, config.seq_len, config.text_conditioning)
                     .sequential(config.eval_windows) if valid_set.examples else [])
    audio_params = [model.audio_embed]
    body_params = [p for n, p in model.named_parameters() if p.requires_grad and n != "audio_embed"]
    groups = [{"params": audio_params, "lr": config.audio_lr or config.lr, "weight_decay": 0.0}]
    if body_params:
        groups.append({"params": body_params, "lr": config.lr, "weight_decay": config.weight_decay})
    optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.95))
    peak = [g["lr"] for g in optimizer.param_groups]
    generator = torch.Generator().manual_seed(config.seed * 1000 + accelerator.process_index)
    start = 0
    if (run / CHECKPOINT_DIR / "state.json").exists():
        start = load_checkpoint(run, model, optimizer, generator)
        say(f"resuming {run} from step {start}")
        if main:
            _truncate_log(run / LOG_FILE, start)
    model, optimizer = accelerator.prepare(model, optimizer)
    if main:
        run.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(asdict(config), indent=2) + "\n")
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        say(f"training {config.base} on {train_set.seconds / 60:.1f} min of {data.codec_name} codes ({K} codebooks, "
            f"{config.pattern}), {'LoRA' if config.lora else 'full'}; {trainable / 1e6:.1f}M trainable parameters")
    bridge = BridgeConfig(codec_name=data.codec_name, codec_sha256=data.codec_sha256, num_codebooks=K,
                          pattern=config.pattern, vocab=vocab, base_model=config.base, init=config.init,
                          sample_rate=data.sample_rate, frame_rate=data.frame_rate,
                          extra={"train": asdict(config), "bandwidth": data.bandwidth, "shards": str(shards)})
    result = TrainResult(run=run, step=start, resumed_from=start)
    stats = Stats.zeros(K)
    began = time.perf_counter()
    bar = tqdm(total=config.steps, initial=start, disable=not (progress and main), unit="step", desc="training")
    model.train()
    for step in range(start, config.steps):
        scale = lr_at(step, config)
        for group, lr in zip(optimizer.param_groups, peak, strict=True):
            group["lr"] = lr * scale
        for micro in range(config.grad_accum):
            batch = collate([windows.random(generator) for _ in range(config.batch_size)], pad_id)
            batch = batch.to(accelerator.device)
            sync = nullcontext() if micro == config.grad_accum - 1 else accelerator.no_sync(model)
            with sync:
                with accelerator.autocast():
                    out = model(batch.input_ids, batch.attention_mask, batch.books, batch.cols)
                accelerator.backward(out.loss / config.grad_accum)
            stats.add(out)
        if config.max_grad_norm:
            accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        done = step + 1
        bar.update(1)
        bar.set_postfix(loss=f"{stats.loss:.3f}")
        last = done == config.steps
        if main and (done % config.log_every == 0 or last):
            row = log_row(done, "train", stats, data.frame_rate, peak[-1] * scale, time.perf_counter() - began)
            append_log(run / LOG_FILE, row)
            result.train = row
            stats = Stats.zeros(K)
        if main and valid_windows and (done % config.eval_every == 0 or last):
            v = evaluate_windows(accelerator.unwrap_model(model), valid_windows, config.batch_size,
                                 accelerator.device, pad_id, accelerator.autocast)
            row = log_row(done, "valid", v, data.frame_rate, peak[-1] * scale, time.perf_counter() - began)
            append_log(run / LOG_FILE, row)
            result.valid = row
            bar.write(f"step {done}: valid loss {v.loss:.3f}, {row['bits_per_second']:.0f} bits/s",
                      file=sys.stderr)
        if main and (done % config.save_every == 0 or last):
            save_checkpoint(run, accelerator.unwrap_model(model), optimizer, done, config, generator)
        result.step = done
    bar.close()
    accelerator.wait_for_everyone()
    if main:
        export(run, accelerator.unwrap_model(model), tokenizer, bridge, peft_model)
        say(f"saved {run} (step {result.step})")
    return result


# ---- CLI ------------------------------------------------------------------------------------------------------------
def add_train_arguments(parser) -> None:
    d = TrainConfig()
    parser.add_argument("shards", help="folder of token shards (audiolm prepare)")
    parser.add_argument("--out", required=True, help="run folder (checkpoints, log.csv, the final model)")
    parser.add_argument("--base", default=None, help="Gemma name or path (default: $GEMMA_MODEL or gemma-3-270m)")
    parser.add_argument("--pattern", choices=["flatten", "delay"], default=d.pattern, help="token layout (flatten)")
    parser.add_argument("--lora", action="store_true", help="LoRA on the body instead of full fine-tuning")
    parser.add_argument("--lora-rank", type=int, default=d.lora_rank)
    parser.add_argument("--steps", type=int, default=d.steps)
    parser.add_argument("--seq-len", type=int, default=d.seq_len, help="tokens per window, text prefix included")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="windows per micro-batch")
    parser.add_argument("--grad-accum", type=int, default=d.grad_accum, help="micro-batches per step")
    parser.add_argument("--lr", type=float, default=d.lr, help="peak learning rate of the body")
    parser.add_argument("--audio-lr", type=float, default=d.audio_lr, help="peak learning rate of the audio rows")
    parser.add_argument("--warmup", type=int, default=d.warmup)
    parser.add_argument("--text-conditioning", action="store_true", help="condition on the shards' text column")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--init", default=d.init, choices=["mean", "normal", "codebook"], help="new-row init")
    parser.add_argument("--model", default=None, help="the shards' codec (only needed for --init codebook)")
    parser.add_argument("--eval-every", type=int, default=d.eval_every)
    parser.add_argument("--eval-windows", type=int, default=d.eval_windows)
    parser.add_argument("--save-every", type=int, default=d.save_every)
    parser.add_argument("--log-every", type=int, default=d.log_every)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run_train(args) -> int:
    from .gemma import resolve_name

    config = TrainConfig(
        base=resolve_name(args.base), pattern=args.pattern, lora=args.lora, lora_rank=args.lora_rank,
        lora_alpha=2.0 * args.lora_rank, steps=args.steps, seq_len=args.seq_len, batch_size=args.batch_size,
        grad_accum=args.grad_accum, lr=args.lr, audio_lr=args.audio_lr, warmup=args.warmup,
        text_conditioning=args.text_conditioning, gradient_checkpointing=args.gradient_checkpointing,
        init=args.init, eval_every=args.eval_every, eval_windows=args.eval_windows, save_every=args.save_every,
        log_every=args.log_every, seed=args.seed,
    )
    for name in ("steps", "seq_len", "batch_size", "grad_accum"):
        if getattr(config, name) < 1:
            raise CodecError(f"--{name.replace('_', '-')} must be at least 1")
    codec = None
    if args.model:
        from .cli_tokens import load_codec_by_name

        codec = load_codec_by_name(args.model)
    result = train(args.shards, args.out, config, codec=codec, progress=not args.quiet)
    summary = result.valid or result.train
    if summary:
        print(f"{result.run}: step {result.step}, {summary['split']} loss {summary['loss']:.3f}, "
              f"{summary['bits_per_second']:.0f} bits/s of audio")
    return 0
