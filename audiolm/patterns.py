"""Token patterns: exact, invertible layouts between codec codes `[B, K, T]` and flat token ids `[B, L]`.

- **flatten** (frame-major): frame 0's codebooks 0..K-1, then frame 1's, ... ; `L = T * K`.
  Code (k, t) sits at position `t * K + k`.
- **delay** (MusicGen): codebook k is shifted right by k steps; each step holds K tokens (codebooks 0..K-1), so
  `L = (T + K - 1) * K` (0 when T = 0). Code (k, t) sits at position `(t + k) * K + k`. The `K * (K - 1)` positions that
  hold no code (the triangle before codebook k starts and after it ends) are filled with `<|audio_pad|>`.

In both patterns the position of code (k, t) does not depend on T, so a growing sequence never moves earlier tokens.
Decoding checks every position: a sequence cut mid-frame or holding a token of the wrong codebook is a `BridgeError`
naming the position, unless `repair="truncate"` is given, which keeps the frames before the first incomplete or invalid
frame and drops the rest (nothing is ever shifted).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

import torch

from .errors import BridgeError
from .vocab import SPECIAL, AudioVocab

PAD = SPECIAL  # `codebook_at` for a position that must hold <|audio_pad|>
Repair = Literal["truncate"] | None


class Pattern(ABC):
    """A layout of K codebooks into one token stream.

    Args:
        num_codebooks: K, the codebooks in each frame (the codec's `codebooks_for(bandwidth)`).
    """

    name: str

    def __init__(self, num_codebooks: int):
        if num_codebooks < 1:
            raise BridgeError(f"a pattern needs at least one codebook, got {num_codebooks}")
        self.num_codebooks = num_codebooks

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_codebooks={self.num_codebooks})"

    @abstractmethod
    def position_of(self, codebook: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        """Sequence position of code (k, t); independent of the total number of frames."""

    @abstractmethod
    def sequence_length(self, num_frames: int) -> int:
        """L for a complete sequence of `num_frames` frames."""

    @abstractmethod
    def num_frames(self, length: int) -> int | None:
        """T of a complete sequence of `length` tokens, or None when no whole number of frames has that length."""

    @abstractmethod
    def codebook_at(self, position: int, num_frames: int | None = None) -> int:
        """Codebook whose code may occur at `position` (or `PAD`, -1, where only <|audio_pad|> may occur).

        Without `num_frames` the sequence is taken to go on (what a sampler needs while generating).
        """

    def allowed_ids(self, position: int, vocab: AudioVocab, num_frames: int | None = None) -> range:
        """The ids that may occur at `position`: one codebook's `cardinality` ids, or just the pad id."""
        k = self.codebook_at(position, num_frames)
        return range(vocab.pad_id, vocab.pad_id + 1) if k == PAD else vocab.codebook_ids(k)

    def layout(self, num_frames: int) -> torch.Tensor:
        """Codebook at each position of a complete sequence of `num_frames` frames: `[L]`, PAD where a pad goes."""
        out = torch.full((self.sequence_length(num_frames),), PAD, dtype=torch.long)
        k, t = self._grid(num_frames)
        out[self.position_of(k, t)] = k
        return out

    def _grid(self, num_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Codebook and frame index of every code, each `[K, T]`."""
        k = torch.arange(self.num_codebooks)[:, None].expand(-1, num_frames)
        t = torch.arange(num_frames)[None, :].expand(self.num_codebooks, -1)
        return k, t

    def codes_to_ids(self, codes: torch.Tensor, vocab: AudioVocab) -> torch.Tensor:
        """Codes `[B, K, T]` -> ids `[B, L]` in `vocab`."""
        if codes.dim() != 3 or codes.shape[1] != self.num_codebooks:
            raise BridgeError(f"codes must be [B, {self.num_codebooks}, T], got shape {list(codes.shape)}")
        B, K, T = codes.shape
        ids = torch.full((B, self.sequence_length(T)), vocab.pad_id, dtype=torch.long, device=codes.device)
        pos = self.position_of(*self._grid(T)).to(codes.device)
        ids[:, pos.reshape(-1)] = vocab.codes_to_ids(codes).reshape(B, K * T)
        return ids

    def ids_to_codes(self, ids: torch.Tensor, vocab: AudioVocab, repair: Repair = None) -> torch.Tensor:
        """Ids `[B, L]` (or `[L]`) -> codes `[B, K, T]`; the exact inverse of `codes_to_ids`.

        `repair=None` rejects any sequence that is not complete and valid; `repair="truncate"` keeps the frames before
        the first incomplete or invalid one (possibly zero frames).
        """
        ids = torch.as_tensor(ids).long()
        if ids.dim() == 1:
            ids = ids[None]
        if ids.dim() != 2:
            raise BridgeError(f"ids must be [B, L], got shape {list(ids.shape)}")
        if repair not in (None, "truncate"):
            raise BridgeError(f"unknown repair {repair!r}; use None or 'truncate'")
        B, L = ids.shape
        K = self.num_codebooks
        if repair is None:
            T = self.num_frames(L)
            if T is None:
                raise BridgeError(
                    f"{L} tokens are not a whole number of {self.name} frames with {K} codebooks "
                    "(truncated mid-frame? repair='truncate' drops the incomplete last frame)"
                )
            self._check(ids, vocab, T)
        else:
            T = self._complete_frames(ids, vocab)
        pos = self.position_of(*self._grid(T)).to(ids.device)  # [K, T]
        picked = ids[:, pos]  # [B, K, T]
        k = torch.arange(K, device=ids.device)[None, :, None]
        return vocab.ids_to_codes(picked, k)

    def _check(self, ids: torch.Tensor, vocab: AudioVocab, num_frames: int) -> None:
        lay = self.layout(num_frames).to(ids.device)  # [L]
        found = vocab.codebook_of(ids)  # [B, L]
        ok = torch.where(lay == PAD, ids == vocab.pad_id, found == lay)
        bad = (~ok).nonzero()
        if len(bad):
            b, p = bad[0].tolist()
            want = "<|audio_pad|>" if lay[p] == PAD else f"a code of codebook {int(lay[p])}"
            where = f"sequence {b}, position {p}" if ids.shape[0] > 1 else f"position {p}"
            raise BridgeError(
                f"{where} holds {vocab.describe(int(ids[b, p]))} but {self.name} puts {want} there "
                "(repair='truncate' keeps the frames before it)"
            )

    def _complete_frames(self, ids: torch.Tensor, vocab: AudioVocab) -> int:
        """Leading frames whose tokens are all present and valid in every sequence, and preceded only by valid ones."""
        B, L = ids.shape
        K = self.num_codebooks
        if L == 0:
            return 0
        open_layout = torch.tensor([self.codebook_at(p) for p in range(L)], device=ids.device)  # [L]
        found = vocab.codebook_of(ids)  # [B, L]
        is_pad = ids == vocab.pad_id
        # Invalid whatever the length: a forced-pad position not holding the pad, or a code position holding neither
        # its codebook's code nor the pad (the pad is legal there in the tail of a delayed sequence).
        ok = torch.where(open_layout == PAD, is_pad, (found == open_layout) | is_pad).all(0)  # [L]
        limit = int((~ok).nonzero()[0]) if not bool(ok.all()) else L
        # The last codebook holds a frame's last position in both patterns; positions grow with t.
        last = self.position_of(torch.tensor(K - 1), torch.arange(L + 1))
        max_frames = int((last < limit).sum())
        pos = self.position_of(*self._grid(max_frames)).to(ids.device)  # [K, T]
        good = (found[:, pos] == torch.arange(K, device=ids.device)[None, :, None]).all(0).all(0)  # [T]
        return max_frames if bool(good.all()) else int((~good).nonzero()[0])


class FlattenPattern(Pattern):
    """Frame-major: `[c(0,0), c(1,0), ..., c(K-1,0), c(0,1), ...]`, position of (k, t) = t * K + k."""

    name = "flatten"

    def position_of(self, codebook: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        return frame * self.num_codebooks + codebook

    def sequence_length(self, num_frames: int) -> int:
        return num_frames * self.num_codebooks

    def num_frames(self, length: int) -> int | None:
        return length // self.num_codebooks if length % self.num_codebooks == 0 else None

    def codebook_at(self, position: int, num_frames: int | None = None) -> int:
        return position % self.num_codebooks


class DelayPattern(Pattern):
    """MusicGen delay: codebook k lags k steps; step s holds (k, s - k) for k = 0..K-1, pads where s - k is no frame."""

    name = "delay"

    def position_of(self, codebook: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        return (frame + codebook) * self.num_codebooks + codebook

    def sequence_length(self, num_frames: int) -> int:
        return (num_frames + self.num_codebooks - 1) * self.num_codebooks if num_frames > 0 else 0

    def num_frames(self, length: int) -> int | None:
        K = self.num_codebooks
        if length == 0:
            return 0
        if length % K or length // K < K:
            return None
        return length // K - K + 1

    def codebook_at(self, position: int, num_frames: int | None = None) -> int:
        step, k = divmod(position, self.num_codebooks)
        if step < k or (num_frames is not None and step - k >= num_frames):
            return PAD
        return k


PATTERNS: dict[str, type[Pattern]] = {"flatten": FlattenPattern, "delay": DelayPattern}


def get_pattern(name: str, num_codebooks: int) -> Pattern:
    """A pattern by name (`flatten` or `delay`) for `num_codebooks` codebooks."""
    if name not in PATTERNS:
        raise BridgeError(f"unknown pattern {name!r}; choose one of: {', '.join(PATTERNS)}")
    return PATTERNS[name](num_codebooks)
