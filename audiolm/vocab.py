"""The audio vocabulary: one token per (codebook, code) pair appended to a text LM's vocabulary, plus audio specials.

Layout (ids are pure arithmetic, no model or tokenizer needed):

    0 .. audio_base-1                           the base model's own tokens, untouched
    audio_base + k * cardinality + c            code c (0..cardinality-1) of codebook k (0..num_codebooks-1)
    audio_base + num_codebooks * cardinality + i   the i-th special: <|audio_start|>, <|audio_end|>, <|audio_pad|>

`audio_base` is the base model's embedding size (262,144 for Gemma 3 270M). The specials come *after* the code
tokens so that code ids stay a plain offset from `audio_base`. Token strings are readable: code 517 of codebook 3 is
`<|a3_0517|>` (the code is zero-padded to at least 4 digits).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from codec.interface import Codec

from .errors import BridgeError

AUDIO_START = "<|audio_start|>"
AUDIO_END = "<|audio_end|>"
AUDIO_PAD = "<|audio_pad|>"  # fills the gaps of the delay pattern
SPECIAL_TOKENS = (AUDIO_START, AUDIO_END, AUDIO_PAD)

GEMMA3_VOCAB_SIZE = 262_144  # Gemma 3 270M embedding rows: the default `audio_base`
NOT_AUDIO = -2  # `codebook_of` for ids outside the audio range
SPECIAL = -1  # `codebook_of` for the audio special tokens

_TOKEN_RE = re.compile(r"<\|[^|<>\s]*\|>")
_CODE_RE = re.compile(r"<\|a(\d+)_(\d+)\|>")
_FILLER = "<|audio_unused_{}|>"  # fills a tokenizer that is shorter than `audio_base` (documented in extend_tokenizer)


@dataclass(frozen=True)
class AudioVocab:
    """Where the audio tokens live in an extended text vocabulary.

    Args:
        audio_base: id of the first audio token; the base model's embedding size, so base ids are untouched.
        num_codebooks: codebooks with their own token range (the codec's `max_codebooks`, 32 for EnCodec 24 kHz).
        cardinality: codes per codebook (1024 for EnCodec).
        specials: special token strings, given ids right after the code tokens (start, end and pad must be there).
    """

    audio_base: int
    num_codebooks: int
    cardinality: int = 1024
    specials: tuple[str, ...] = SPECIAL_TOKENS

    def __post_init__(self) -> None:
        if self.audio_base < 0 or self.num_codebooks < 1 or self.cardinality < 1:
            raise BridgeError(f"invalid audio vocabulary: {self}")
        missing = [s for s in SPECIAL_TOKENS if s not in self.specials]
        if missing or len(set(self.specials)) != len(self.specials):
            raise BridgeError(f"audio specials must be distinct and include {', '.join(SPECIAL_TOKENS)}")
        object.__setattr__(self, "specials", tuple(self.specials))

    @classmethod
    def for_codec(cls, codec: Codec, audio_base: int) -> AudioVocab:
        """The vocabulary for every codebook `codec` can emit, starting at `audio_base`."""
        return cls(audio_base=audio_base, num_codebooks=codec.max_codebooks, cardinality=codec.cardinality)

    # ---- sizes and ids -------------------------------------------------------------------------------------------
    @property
    def num_code_tokens(self) -> int:
        return self.num_codebooks * self.cardinality

    @property
    def num_audio_tokens(self) -> int:
        """Code tokens plus specials."""
        return self.num_code_tokens + len(self.specials)

    @property
    def size(self) -> int:
        """Total vocabulary size (base + audio), before padding."""
        return self.audio_base + self.num_audio_tokens

    def padded_size(self, multiple: int = 64) -> int:
        """`size` rounded up to a multiple of `multiple` (the embedding matrix's row count)."""
        return -(-self.size // multiple) * multiple

    def special_id(self, token: str) -> int:
        return self.audio_base + self.num_code_tokens + self.specials.index(token)

    @property
    def start_id(self) -> int:
        return self.special_id(AUDIO_START)

    @property
    def end_id(self) -> int:
        return self.special_id(AUDIO_END)

    @property
    def pad_id(self) -> int:
        return self.special_id(AUDIO_PAD)

    def codebook_ids(self, codebook: int) -> range:
        """The `cardinality` ids of one codebook."""
        if not 0 <= codebook < self.num_codebooks:
            raise BridgeError(f"codebook {codebook} is outside 0..{self.num_codebooks - 1}")
        first = self.audio_base + codebook * self.cardinality
        return range(first, first + self.cardinality)

    @property
    def audio_ids(self) -> range:
        """All audio ids: every code token and every special."""
        return range(self.audio_base, self.size)

    # ---- codes <-> ids -------------------------------------------------------------------------------------------
    def codes_to_ids(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes `[..., K, T]` (codebook along dim -2) -> ids of the same shape."""
        if codes.dim() < 2:
            raise BridgeError(f"codes must be [..., K, T], got shape {list(codes.shape)}")
        K = codes.shape[-2]
        if K > self.num_codebooks:
            raise BridgeError(f"codes have {K} codebooks but the vocabulary only {self.num_codebooks}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.cardinality):
            raise BridgeError(f"codes must lie in 0..{self.cardinality - 1}")
        offsets = self.audio_base + torch.arange(K, device=codes.device) * self.cardinality
        return codes.long() + offsets[:, None]

    def codebook_of(self, ids: torch.Tensor) -> torch.Tensor:
        """Codebook index of each id (same shape); `SPECIAL` (-1) for audio specials, `NOT_AUDIO` (-2) otherwise."""
        ids = torch.as_tensor(ids).long()
        rel = ids - self.audio_base
        out = torch.div(rel, self.cardinality, rounding_mode="floor")
        out = torch.where((rel >= self.num_code_tokens) & (ids < self.size), torch.full_like(out, SPECIAL), out)
        return torch.where((rel < 0) | (ids >= self.size), torch.full_like(out, NOT_AUDIO), out)

    def ids_to_codes(self, ids: torch.Tensor, codebooks: torch.Tensor | int) -> torch.Tensor:
        """Ids -> codes, checking that each id belongs to the expected codebook (`codebooks` broadcasts to `ids`)."""
        ids = torch.as_tensor(ids).long()
        expected = torch.as_tensor(codebooks, device=ids.device).expand_as(ids)
        found = self.codebook_of(ids)
        bad = (found != expected).nonzero()
        if len(bad):
            i = tuple(bad[0].tolist())
            raise BridgeError(
                f"id {int(ids[i])} ({self.describe(int(ids[i]))}) where codebook {int(expected[i])} was expected"
            )
        return (ids - self.audio_base) % self.cardinality

    # ---- strings -------------------------------------------------------------------------------------------------
    @property
    def _code_width(self) -> int:
        return max(4, len(str(self.cardinality - 1)))

    def token_string(self, token_id: int) -> str:
        """The readable string of an audio id, e.g. `<|a3_0517|>`."""
        token_id = int(token_id)
        if not self.audio_base <= token_id < self.size:
            raise BridgeError(f"id {token_id} is not an audio token (audio ids are {self.audio_base}..{self.size - 1})")
        rel = token_id - self.audio_base
        if rel >= self.num_code_tokens:
            return self.specials[rel - self.num_code_tokens]
        k, c = divmod(rel, self.cardinality)
        return f"<|a{k}_{c:0{self._code_width}d}|>"

    def token_id(self, token: str) -> int:
        """Inverse of `token_string`; a `BridgeError` for any other string."""
        if token in self.specials:
            return self.special_id(token)
        m = _CODE_RE.fullmatch(token)
        if m:
            k, c = int(m.group(1)), int(m.group(2))
            if k < self.num_codebooks and c < self.cardinality:
                token_id = self.audio_base + k * self.cardinality + c
                if self.token_string(token_id) == token:
                    return token_id
        raise BridgeError(f"{token!r} is not an audio token of this vocabulary")

    def describe(self, token_id: int) -> str:
        """A short human description of any id (for error messages)."""
        if self.audio_base <= token_id < self.size:
            return self.token_string(token_id)
        return "a text token"

    def tokens(self) -> list[str]:
        """Every audio token string, in id order (codes then specials)."""
        return [self.token_string(i) for i in self.audio_ids]

    def ids_to_text(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Audio ids -> their token strings, concatenated without separators (what the tokenizer decodes to)."""
        return "".join(self.token_string(int(i)) for i in torch.as_tensor(ids).reshape(-1).tolist())

    def text_to_ids(self, text: str) -> list[int]:
        """Parse a text made only of audio token strings (whitespace between them is ignored) back into ids."""
        ids: list[int] = []
        pos = 0
        for m in _TOKEN_RE.finditer(text):
            gap = text[pos : m.start()]
            if gap.strip():
                raise BridgeError(
                    f"unexpected text {gap.strip()[:40]!r} at character {pos} (only audio tokens allowed)"
                )
            ids.append(self.token_id(m.group(0)))
            pos = m.end()
        if text[pos:].strip():
            raise BridgeError(f"unexpected text {text[pos:].strip()[:40]!r} at character {pos}")
        return ids

    # ---- tokenizer -----------------------------------------------------------------------------------------------
    def extend_tokenizer(self, tokenizer: Any) -> Any:
        """Add every audio token to a Hugging Face fast tokenizer, in place, so each string maps to its exact id.

        The tokens are ordinary added tokens (not "special"), matched verbatim and never normalised, so
        `tokenizer.decode(ids)` gives back the token strings and `skip_special_tokens` does not drop audio. If the
        tokenizer has fewer entries than `audio_base` (a model whose embedding has spare rows), the gap is filled with
        `<|audio_unused_N|>` placeholders so that the audio ids line up; a longer tokenizer is an error. Extending an
        already extended tokenizer is a no-op (after checking the ids).
        """
        from tokenizers import AddedToken

        tokens = self.tokens()
        n = len(tokenizer)
        if n >= self.size and tokenizer.convert_tokens_to_ids(tokens[0]) == self.audio_base:
            self._check_tokenizer(tokenizer)
            return tokenizer
        if n > self.audio_base:
            raise BridgeError(f"tokenizer has {n} tokens but audio ids start at {self.audio_base}")
        fill = [_FILLER.format(i) for i in range(self.audio_base - n)]
        new = [AddedToken(t, special=False, normalized=False, single_word=False) for t in fill + tokens]
        tokenizer.add_tokens(new)
        self._check_tokenizer(tokenizer)
        return tokenizer

    def _check_tokenizer(self, tokenizer: Any) -> None:
        probe = [self.audio_base, self.audio_base + self.cardinality - 1, self.size - len(self.specials) - 1]
        probe += [self.special_id(s) for s in self.specials]
        got = tokenizer.convert_tokens_to_ids([self.token_string(i) for i in probe])
        if list(got) != probe or len(tokenizer) != self.size:
            raise BridgeError(f"tokenizer does not map audio tokens to ids {self.audio_base}..{self.size - 1}")

    # ---- persistence ---------------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["specials"] = list(self.specials)
        return d

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AudioVocab:
        try:
            return cls(
                audio_base=int(data["audio_base"]),
                num_codebooks=int(data["num_codebooks"]),
                cardinality=int(data.get("cardinality", 1024)),
                specials=tuple(data.get("specials", SPECIAL_TOKENS)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise BridgeError(f"invalid audio vocabulary description: {e}") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> AudioVocab:
        return cls.from_json(json.loads(Path(path).read_text()))
