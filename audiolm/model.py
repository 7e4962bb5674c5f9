"""Extending a Gemma 3 causal LM with audio tokens, restricted-head forward passes, and saving/loading the bridge.

- `extend_model` grows the (tied) embedding to `vocab.padded_size(64)` rows and initialises the new rows on purpose
  (see `INITS`); the base rows are left bit-identical, so text behaviour only changes through the extra softmax mass.
- `restricted_forward` computes logits only over the rows that can occur (all audio rows, or per position one
  codebook's rows plus the audio specials), exactly equal to the full head's logits at those columns, final logit
  soft-capping included.
- `save_bridge` / `load_bridge` write and read a standard transformers checkpoint (model, tokenizer with the added
  tokens) plus `bridge.json`, which names the codec (and its weights' sha256), the codebooks, the pattern and the ids.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from codec.interface import Codec

from .errors import BridgeError
from .patterns import get_pattern
from .vocab import AudioVocab

BRIDGE_FILE = "bridge.json"
BRIDGE_FORMAT = 1
PAD_MULTIPLE = 64
INITS = ("mean", "normal", "codebook")
"""New-row initialisations, all matched to the per-dimension mean `mu` and std `sigma` of the base (text) rows:

- `mean`: `mu + noise * sigma * z` with a small `noise` (default 0.1): every new token starts near the average text
  embedding, so its logit is near the average logit and adding 33k tokens takes little probability from text.
- `normal`: `mu + sigma * z`: new rows look like random text rows.
- `codebook`: a fixed random projection of the codec's own codebook vectors `[K, card, D]`, standardised per codebook,
  mixed with a random per-codebook offset (centred; weights 0.8 / 0.6, about unit variance), then scaled to `sigma`
  around `mu`: codes close in the codec's space start close in the LM's, and codebooks start apart.

Specials use `mean`; padding rows are exactly `mu`. `scripts/compare_init.py` compares them by training loss.
"""
DEFAULT_INIT = "mean"


# ---- extension ------------------------------------------------------------------------------------------------------
def embedding_stats(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std `[H]` of embedding rows `[N, H]`, as float64."""
    w = weight.detach().float()
    return w.mean(0).double(), w.std(0).double()


def init_rows(
    vocab: AudioVocab,
    mu: torch.Tensor,
    sigma: torch.Tensor,
    init: str = DEFAULT_INIT,
    codebooks: torch.Tensor | None = None,
    noise: float = 0.1,
    seed: int = 0,
) -> torch.Tensor:
    """New embedding rows `[num_audio_tokens, H]` (codes then specials) for `vocab`; see `INITS`.

    Args:
        vocab: the audio vocabulary the rows are for.
        mu: `[H]` per-dimension mean of the text rows.
        sigma: `[H]` per-dimension std of the text rows.
        init: one of `INITS`.
        codebooks: `[K, cardinality, D]` codec codebook vectors (K >= vocab.num_codebooks), for `init="codebook"`.
        noise: scale of the noise of the `mean` init, in units of `sigma`.
        seed: seed of the random generator (the rows are a pure function of the arguments).
    """
    if init not in INITS:
        raise BridgeError(f"unknown init {init!r}; choose one of: {', '.join(INITS)}")
    g = torch.Generator().manual_seed(seed)
    H = mu.shape[0]
    mu, sigma = mu.double(), sigma.double()
    n_codes, n_special = vocab.num_code_tokens, len(vocab.specials)
    specials = mu + noise * sigma * torch.randn(n_special, H, generator=g, dtype=torch.float64)
    if init == "mean":
        codes = mu + noise * sigma * torch.randn(n_codes, H, generator=g, dtype=torch.float64)
    elif init == "normal":
        codes = mu + sigma * torch.randn(n_codes, H, generator=g, dtype=torch.float64)
    else:
        if codebooks is None:
            raise BridgeError("init='codebook' needs the codec's codebook vectors [K, cardinality, D]")
        K, card = vocab.num_codebooks, vocab.cardinality
        if codebooks.dim() != 3 or codebooks.shape[0] < K or codebooks.shape[1] != card:
            raise BridgeError(f"codebooks must be [>={K}, {card}, D], got {list(codebooks.shape)}")
        cb = codebooks[:K].double()
        projection = torch.randn(cb.shape[-1], H, generator=g, dtype=torch.float64) / math.sqrt(cb.shape[-1])
        z = cb @ projection  # [K, card, H]
        z = (z - z.mean(1, keepdim=True)) / z.std(1, keepdim=True).clamp_min(1e-8)
        offsets = torch.randn(K, 1, H, generator=g, dtype=torch.float64)
        offsets = offsets - offsets.mean(0) if K > 1 else offsets  # so the audio rows' mean is exactly `mu`
        codes = (mu + sigma * (0.8 * z + 0.6 * offsets)).reshape(n_codes, H)
    return torch.cat([codes, specials]).float()


@dataclass
class Extension:
    """What `extend_model` did: the vocabulary, the init used, and the embedding size before and after."""

    vocab: AudioVocab
    init: str
    old_rows: int
    new_rows: int


def extend_model(
    model: Any,
    vocab: AudioVocab,
    init: str = DEFAULT_INIT,
    codebooks: torch.Tensor | None = None,
    noise: float = 0.1,
    seed: int = 0,
) -> Extension:
    """Resize `model`'s embeddings (in place) to `vocab.padded_size(64)` rows and initialise the audio rows.

    The base rows are unchanged and the LM head stays tied to the input embedding. Arguments as in `init_rows`.
    """
    emb = model.get_input_embeddings()
    old_rows = emb.weight.shape[0]
    if old_rows != vocab.audio_base:
        raise BridgeError(f"model has {old_rows} embedding rows but the audio vocabulary starts at {vocab.audio_base}")
    mu, sigma = embedding_stats(emb.weight)
    rows = init_rows(vocab, mu, sigma, init=init, codebooks=codebooks, noise=noise, seed=seed)
    new_rows = vocab.padded_size(PAD_MULTIPLE)
    model.resize_token_embeddings(new_rows, mean_resizing=False)
    emb = model.get_input_embeddings()
    with torch.no_grad():
        emb.weight[vocab.audio_base : vocab.size] = rows.to(emb.weight)
        emb.weight[vocab.size :] = mu.to(emb.weight)
    if getattr(model.config, "tie_word_embeddings", True):
        model.tie_weights()
    head = model.get_output_embeddings()
    if head is not None and head.weight.data_ptr() != emb.weight.data_ptr():
        raise BridgeError("the LM head is not tied to the input embedding after resizing")
    return Extension(vocab=vocab, init=init, old_rows=old_rows, new_rows=new_rows)


def codec_codebooks(codec: Codec) -> torch.Tensor | None:
    """The codec's codebook vectors `[K, cardinality, D]` if it exposes them (`codebook_vectors()`), else None."""
    getter = getattr(codec, "codebook_vectors", None)
    return getter() if callable(getter) else None


# ---- restricted head ------------------------------------------------------------------------------------------------
def audio_rows(vocab: AudioVocab) -> torch.Tensor:
    """`[N]` every audio id (codes and specials): the rows a position inside an audio span can hold."""
    return torch.arange(vocab.audio_base, vocab.size)


def codebook_rows(vocab: AudioVocab, pattern_name: str, num_codebooks: int, num_tokens: int) -> torch.Tensor:
    """`[num_tokens, cardinality + S]`: for audio token i of a pattern, its codebook's ids plus the S audio specials.

    Row i lists the ids audio token i may be (the specials cover pads, the end of audio and a new start). To use them
    as logit rows, align with the position that *predicts* token i (position i - 1 of the audio stream).
    """
    pattern = get_pattern(pattern_name, num_codebooks)
    specials = torch.tensor([vocab.special_id(s) for s in vocab.specials])
    books = torch.tensor([max(pattern.codebook_at(i), 0) for i in range(num_tokens)], dtype=torch.long)
    codes = vocab.audio_base + books[:, None] * vocab.cardinality + torch.arange(vocab.cardinality)  # [n, card]
    return torch.cat([codes, specials.expand(num_tokens, -1)], dim=1)


@dataclass
class RestrictedOutput:
    """Logits over a subset of the vocabulary.

    Args:
        logits: `[B, L, N]` logits; column n of position l is the full head's logit of id `rows[l, n]` (or `rows[n]`).
        rows: `[N]` ids shared by every position, or `[L, N]` ids per position.
        loss: mean next-token cross-entropy over the labelled positions, softmax over the rows only (None without
            labels).
    """

    logits: torch.Tensor
    rows: torch.Tensor
    loss: torch.Tensor | None = None


def softcap(logits: torch.Tensor, cap: float | None) -> torch.Tensor:
    """Gemma's final logit soft-capping `cap * tanh(logits / cap)` (identity when `cap` is None)."""
    return logits if not cap else torch.tanh(logits / cap) * cap


def restricted_logits(model: Any, hidden: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Head logits `[B, L, N]` of hidden states `[B, L, H]` over `rows` (`[N]` shared, or `[L, N]` per position).

    Per-position rows are grouped by distinct row set, so each group costs one `[B, L_g, H] x [H, N]` product.
    """
    weight = model.get_output_embeddings().weight
    cap = getattr(model.config, "final_logit_softcapping", None)
    rows = rows.to(hidden.device)
    if rows.dim() == 1:
        return softcap(hidden @ weight[rows].T, cap)
    if rows.shape[0] != hidden.shape[1]:
        raise ValueError(f"rows [L, N] has L={rows.shape[0]} but hidden states have L={hidden.shape[1]}")
    groups, which = torch.unique(rows, dim=0, return_inverse=True)
    logits = hidden.new_empty(hidden.shape[0], hidden.shape[1], rows.shape[1])
    for g in range(groups.shape[0]):
        positions = (which == g).nonzero().squeeze(1)
        logits[:, positions] = hidden[:, positions] @ weight[groups[g]].T
    return softcap(logits, cap)


def restricted_loss(logits: torch.Tensor, rows: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy (logits at l predict labels at l + 1, -100 ignored) with the softmax over `rows`.

    Every label must be among its position's rows, otherwise the restriction would not be exact (ValueError).
    """
    logits, labels = logits[:, :-1], labels[:, 1:]
    rows = rows.to(labels.device)
    valid = labels != -100
    if rows.dim() == 1:  # a lookup table id -> column
        table = torch.full((int(max(rows.max(), labels.max())) + 1,), -1, dtype=torch.long, device=labels.device)
        table[rows] = torch.arange(len(rows), device=labels.device)
        target = table[labels.clamp_min(0)]
        found = target >= 0
    else:
        match = labels.unsqueeze(-1) == rows[:-1]  # [B, L-1, N]
        target, found = match.long().argmax(-1), match.any(-1)
    if bool((valid & ~found).any()):
        raise ValueError("a label is not among the rows of its position: the restricted head would not be exact")
    target = torch.where(valid, target, torch.full_like(labels, -100))
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1), ignore_index=-100)


def restricted_forward(
    model: Any,
    input_ids: torch.Tensor,
    rows: torch.Tensor,
    labels: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
) -> RestrictedOutput:
    """Forward `input_ids` `[B, L]` through the body once, then the head only over `rows` (see `restricted_logits`)."""
    hidden = model.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    logits = restricted_logits(model, hidden, rows)
    loss = restricted_loss(logits, rows, labels) if labels is not None else None
    return RestrictedOutput(logits=logits, rows=rows, loss=loss)


# ---- persistence ----------------------------------------------------------------------------------------------------
@dataclass
class BridgeConfig:
    """Everything needed to turn a saved model's tokens back into sound; saved as `bridge.json`.

    Args:
        codec_name: the codec's weights name (`Codec.weights.name`).
        codec_sha256: sha256 of the codec's weights file; loading with other weights is an error.
        num_codebooks: K, codebooks per frame in the training sequences.
        pattern: `flatten` or `delay`.
        vocab: the audio vocabulary (base offset, codebooks with tokens, specials).
        base_model: which Gemma the bridge was built on.
        init: the initialisation of the new rows.
        sample_rate: the codec's sample rate, for readers that do not load the codec.
        frame_rate: the codec's frame rate.
        extra: free-form notes (training recipe, dataset).
    """

    codec_name: str
    codec_sha256: str
    num_codebooks: int
    pattern: str
    vocab: AudioVocab
    base_model: str = ""
    init: str = DEFAULT_INIT
    sample_rate: int | None = None
    frame_rate: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        get_pattern(self.pattern, self.num_codebooks)  # validates the name
        if self.num_codebooks > self.vocab.num_codebooks:
            raise BridgeError(f"{self.num_codebooks} codebooks but the vocabulary has {self.vocab.num_codebooks}")

    @classmethod
    def for_codec(
        cls, codec: Codec, vocab: AudioVocab, bandwidth: float, pattern: str, base_model: str = "", init: str = ""
    ) -> BridgeConfig:
        return cls(
            codec_name=codec.weights.name,
            codec_sha256=codec.weights.sha256,
            num_codebooks=codec.codebooks_for(bandwidth),
            pattern=pattern,
            vocab=vocab,
            base_model=base_model,
            init=init or DEFAULT_INIT,
            sample_rate=codec.sample_rate,
            frame_rate=codec.frame_rate,
        )

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["vocab"] = self.vocab.to_json()
        v = self.vocab
        d["format"] = BRIDGE_FORMAT
        d["token_ids"] = {  # redundant with `vocab`, for readers that do not use this package
            "code": "audio_base + codebook * cardinality + code",
            "audio_base": v.audio_base,
            "cardinality": v.cardinality,
            **{s.strip("<|>"): v.special_id(s) for s in v.specials},
            "vocab_size": v.size,
            "embedding_rows": v.padded_size(PAD_MULTIPLE),
        }
        return d

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BridgeConfig:
        if data.get("format", BRIDGE_FORMAT) > BRIDGE_FORMAT:
            raise BridgeError(f"bridge format {data['format']} is newer than this package reads ({BRIDGE_FORMAT})")
        try:
            return cls(
                codec_name=data["codec_name"],
                codec_sha256=data["codec_sha256"],
                num_codebooks=int(data["num_codebooks"]),
                pattern=data["pattern"],
                vocab=AudioVocab.from_json(data["vocab"]),
                base_model=data.get("base_model", ""),
                init=data.get("init", DEFAULT_INIT),
                sample_rate=data.get("sample_rate"),
                frame_rate=data.get("frame_rate"),
                extra=data.get("extra", {}),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise BridgeError(f"invalid {BRIDGE_FILE}: {e}") from None

    def check_codec(self, codec: Codec) -> None:
        """Raise `BridgeError` unless `codec` has the weights this bridge was made with."""
        if codec.weights.sha256 != self.codec_sha256:
            raise BridgeError(
                f"this model was trained on codes of {self.codec_name} (sha256 {self.codec_sha256[:12]}) but the codec "
                f"given is {codec.weights.name} (sha256 {codec.weights.sha256[:12]}); its codes would be noise"
            )


@dataclass
class Bridge:
    """A loaded audio LM: model, tokenizer (None when loaded without it) and bridge description."""

    model: Any
    tokenizer: Any
    config: BridgeConfig

    def prefix(self, text: str = "") -> list[int]:
        """Token ids before `<|audio_start|>`: `[<bos>] + text tokens`, as training wrote them. Without a tokenizer
        (`load_bridge(..., tokenizer=False)`) only the empty text works, with the model config's bos id."""
        if self.tokenizer is not None:
            from .train import text_prefix

            return text_prefix(self.tokenizer, text)
        if text:
            raise BridgeError("text needs the tokenizer: load the bridge with tokenizer=True")
        bos = getattr(self.model.config, "bos_token_id", None)
        return [bos] if bos is not None else []


def save_bridge(directory: str | Path, model: Any, tokenizer: Any, config: BridgeConfig) -> Path:
    """Save model, tokenizer and `bridge.json` into `directory` (loadable by transformers' `from_pretrained`)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    tmp = directory / (BRIDGE_FILE + ".tmp")
    tmp.write_text(json.dumps(config.to_json(), indent=2) + "\n")
    tmp.replace(directory / BRIDGE_FILE)  # written last: its presence marks a complete save
    return directory


def read_bridge_config(directory: str | Path) -> BridgeConfig:
    """Only `bridge.json` of a saved bridge."""
    path = Path(directory) / BRIDGE_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BridgeError(f"{path} not found: {directory} is not a saved audio LM") from None
    except ValueError as e:
        raise BridgeError(f"{path} is not valid JSON: {e}") from None
    return BridgeConfig.from_json(data)


def load_bridge(directory: str | Path, codec: Codec | None = None, dtype: torch.dtype = torch.float32,
                tokenizer: bool = True) -> Bridge:
    """Load a saved bridge; with `codec`, first check it has the weights the model was trained on.

    `tokenizer=False` skips the tokenizer (Gemma's 33 MB `tokenizer.json` is a large part of the load time), for
    audio-only work: `Bridge.prefix()` then takes the bos id from the model's config.
    """
    from transformers import AutoModelForCausalLM

    config = read_bridge_config(directory)
    if codec is not None:
        config.check_codec(codec)
    text_tokenizer = None
    if tokenizer:
        from transformers import AutoTokenizer

        text_tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(directory), local_files_only=True, dtype=dtype)
    vocab = config.vocab
    if model.get_input_embeddings().weight.shape[0] < vocab.size:
        raise BridgeError(f"{directory}: the model has fewer embedding rows than the {vocab.size} tokens of its bridge")
    if text_tokenizer is not None:
        vocab.extend_tokenizer(text_tokenizer)  # a no-op that checks the ids
        bos = getattr(model.config, "bos_token_id", None)
        if bos is not None and text_tokenizer.bos_token_id not in (None, bos):
            raise BridgeError(f"{directory}: the tokenizer's bos id {text_tokenizer.bos_token_id} is not the model "
                              f"config's {bos}")
    model.eval()
    return Bridge(model=model, tokenizer=text_tokenizer, config=config)
