"""Weights files of the project's own codec: safetensors with the architecture config in the metadata.

An exported file holds the generator's parameters and the codebooks (`embed`, `cluster_size`) in fp16, which is all
inference needs and enough to resume training (the EMA sums are rebuilt as `embed * cluster_size`). Nothing in it
can execute code.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import WeightsError
from ..interface import WeightsInfo, file_sha256
from .framecodec import FrameCodec, FrameCodecConfig, frame_codec
from .weights_format import FORMAT, read_metadata

__all__ = ["FORMAT", "export_frame_codec", "load_frame_codec", "load_frame_codec_weights", "read_metadata"]


def export_frame_codec(model: FrameCodec, path: str | Path, dtype: torch.dtype = torch.float16,
                       info: dict | None = None) -> str:
    """Writes inference weights of `model` to `path` (atomically); returns the file's sha256."""
    tensors = {}
    for name, tensor in model.state_dict().items():
        if name.endswith("embed_avg") or name.endswith("inited"):
            continue
        tensors[name] = tensor.detach().to("cpu", dtype if tensor.is_floating_point() else tensor.dtype).contiguous()
    metadata = {"format": FORMAT, "config": model.config.to_json(), "info": json.dumps(info or {})}
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)
    return file_sha256(path)


def load_frame_codec_weights(model: FrameCodec, path: str | Path, for_training: bool = False) -> None:
    """Copies the weights of `path` into `model` (same architecture), in float32."""
    try:
        tensors = load_file(str(path))
    except Exception as exc:
        raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from None
    state = model.state_dict()
    missing = [k for k in state if k not in tensors and not k.endswith(("embed_avg", "inited"))]
    if missing:
        raise WeightsError(f"{path}: weights do not match the architecture "
                           f"(missing {missing[0]} and {len(missing) - 1} more)")
    for name, target in state.items():
        if name in tensors:
            if tensors[name].shape != target.shape:
                raise WeightsError(f"{path}: {name} has shape {tuple(tensors[name].shape)}, "
                                   f"expected {tuple(target.shape)}")
            target.copy_(tensors[name].to(target.dtype))
    for layer in model.quantizer.layers:
        layer.inited.fill_(1.0)
        layer.embed_avg.copy_(layer.embed * layer.cluster_size[:, None])
    model.train(for_training)


def load_frame_codec(path: str | Path, name: str | None = None) -> FrameCodec:
    """Builds the codec stored in `path` (config from its metadata), ready for inference."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"no weights file at {path}")
    metadata = read_metadata(path)
    if metadata.get("format") != FORMAT:
        raise WeightsError(f"{path}: not a {FORMAT} weights file (format={metadata.get('format')!r})")
    config = FrameCodecConfig.from_json(metadata["config"])
    weights = WeightsInfo(name=name or path.stem, sha256=file_sha256(path), path=str(path))
    model = frame_codec(config, weights=weights, kmeans_init=False)
    load_frame_codec_weights(model, path)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
