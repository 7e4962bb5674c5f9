"""The frame codec's weights-file format: its name, and its metadata read without torch (the torch-free runtime and
the registry only need to recognise a file; `codec.models.weights` loads and writes the tensors)."""

from __future__ import annotations

from pathlib import Path

from ..errors import WeightsError

FORMAT = "codectok-framecodec-1"


def read_metadata(path: str | Path) -> dict:
    """The metadata strings of a safetensors file (`format`, `config`, `info` in ours)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            return dict(f.metadata() or {})
    except Exception as exc:
        raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from None
