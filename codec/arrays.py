"""The two kinds of arrays the file pipeline carries, without importing torch to tell them apart.

Torch codecs take and give `torch.Tensor`s; the torch-free runtime (`codec.runtime`) takes and gives numpy arrays,
so that `codec compress` / `decompress` of the default codec never pay for `import torch` (3 s on a 2-core CPU).
Code shared by both (`codec.audio`, `codec.container`, `codec.pipeline`, the chunked encoder) asks these helpers,
which import torch only when they were handed a tensor, that is when torch is loaded already.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def is_tensor(x: Any) -> bool:
    """Whether `x` is a torch tensor (checked by type name: never imports torch)."""
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def to_numpy(x: Any) -> np.ndarray:
    """A numpy view or copy of a tensor (detached, on the CPU) or array."""
    return x.detach().cpu().numpy() if is_tensor(x) else np.asarray(x)


def concat(pieces: Sequence[Any]) -> Any:
    """Concatenate along the last axis, keeping the pieces' kind (all tensors or all arrays)."""
    if is_tensor(pieces[0]):
        import torch

        return torch.cat(list(pieces), dim=-1)
    return np.concatenate(pieces, axis=-1)


def pad_end(x: Any, count: int) -> Any:
    """`x` with `count` zeros appended along its last axis."""
    if count == 0:
        return x
    if is_tensor(x):
        import torch.nn.functional as F

        return F.pad(x, (0, count))
    return np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, count)])


def like(data: np.ndarray, tensors: bool) -> Any:
    """`data` as a torch tensor (sharing memory) when `tensors`, else as it is."""
    if not tensors:
        return data
    import torch

    return torch.from_numpy(data)
