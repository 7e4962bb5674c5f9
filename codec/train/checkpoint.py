"""Atomic, verified checkpoints: a crash mid-write never leaves a file that a resume would trust.

A checkpoint is written to a temporary file, fsynced, then renamed over the old one (the previous one is kept as
`.prev`). Loading uses `torch.load(weights_only=True)`, so a checkpoint can hold tensors, numbers, strings and
containers but never code; a file that fails to load falls back to the previous one.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import WeightsError


def save_atomic(state: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    if path.exists():
        os.replace(path, path.with_name(path.name + ".prev"))
    os.replace(tmp, path)


def load_verified(path: str | Path) -> dict:
    """Loads `path`, or its `.prev` if `path` is missing or damaged; raises WeightsError if neither loads."""
    path = Path(path)
    errors = []
    for candidate in (path, path.with_name(path.name + ".prev")):
        if not candidate.exists():
            continue
        try:
            state = torch.load(candidate, map_location="cpu", weights_only=True)
        except Exception as exc:  # damaged, truncated or unsafe: never trusted
            errors.append(f"{candidate.name}: {type(exc).__name__}")
            continue
        if isinstance(state, dict) and "step" in state and "model" in state:
            return state
        errors.append(f"{candidate.name}: not a training checkpoint")
    detail = "; ".join(errors) if errors else "no checkpoint file"
    raise WeightsError(f"cannot resume from {path}: {detail}")
