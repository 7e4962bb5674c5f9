"""Writes what the torch-free runtime needs from a `FrameCodec` (this module needs torch; the runtime does not).

A runtime folder holds `encoder.onnx` (features [B, T, 3F] -> latent [B, T, D]), `decoder.onnx` (latent [B, T, D] ->
log-magnitude and phase [B, T, 2F]): the model's stacks, frame-major at both ends (ONNX Runtime cancels the
transposes; numpy would pay for them), `codebooks.npy` ([K, N, D] float32) and `runtime.json` (the architecture, the
chunking contexts, and the sha256 of the weights file it came from). Folders live under `$CODEC_CACHE` (default
`~/.cache/codectok`) in `runtime/<weights stem>-<sha256[:16]>`, are written under a temporary name and renamed into
place, so an interrupted export leaves nothing half-written; a new weights file gets a new folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

RUNTIME_FORMAT = "codectok-runtime-2"
OPSET = 17


def cache_root() -> Path:
    """Root of the codec's caches: `$CODEC_CACHE`, else `~/.cache/codectok`."""
    env = os.environ.get("CODEC_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "codectok"


def runtime_dir(weights_path: str | Path, sha256: str) -> Path:
    """Where the runtime files of the weights file `weights_path` (with this sha256) live."""
    return cache_root() / "runtime" / f"{Path(weights_path).stem}-{sha256[:16]}"


def _frame_major(stack):
    """`stack` ([B, C, T] -> [B, C', T]) taking and giving frame-major [B, T, C] -> [B, T, C']."""
    from torch import nn

    class FrameMajor(nn.Module):
        def __init__(self):
            super().__init__()
            self.stack = stack

        def forward(self, x):
            return self.stack(x.transpose(1, 2)).transpose(1, 2)

    return FrameMajor().eval()


def export_runtime(model, directory: str | Path, replace: bool = True) -> Path:
    """Exports `model` (a `FrameCodec` in eval mode) into `directory`. A folder already there is replaced when
    `replace`, else kept (another process finished the same export first). Returns `directory`."""
    import torch

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    config = model.config
    bins = config.n_fft // 2 + 1
    with tempfile.TemporaryDirectory(dir=directory.parent, prefix=f".{directory.name}.") as tmp:
        tmp = Path(tmp)
        graphs = [("encoder", model.encoder, 3 * bins, "features", "latent"),
                  ("decoder", model.decoder, config.latent_dim, "latent", "spectrum")]
        for name, stack, channels, input_name, output_name in graphs:
            example = torch.zeros(1, 8, channels)
            with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
                warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
                torch.onnx.export(_frame_major(stack), (example,), str(tmp / f"{name}.onnx"),
                                  input_names=[input_name], output_names=[output_name], opset_version=OPSET,
                                  dynamo=False, dynamic_axes={input_name: {0: "batch", 1: "frames"},
                                                              output_name: {0: "batch", 1: "frames"}})
        np.save(tmp / "codebooks.npy", model.quantizer.codebook_vectors().detach().float().cpu().numpy())
        encoder_context, decoder_context = model._context()
        meta = {"format": RUNTIME_FORMAT, "config": json.loads(config.to_json()),
                "name": model.weights.name, "sha256": model.weights.sha256, "chunk_frames": model.chunk_frames,
                "encoder_context": encoder_context, "decoder_context": decoder_context, "torch": torch.__version__}
        (tmp / "runtime.json").write_text(json.dumps(meta, indent=1))
        os.chmod(tmp, 0o755)
        if directory.exists() and replace:
            shutil.rmtree(directory)
        try:
            tmp.rename(directory)
        except OSError:
            if replace or not (directory / "runtime.json").is_file():
                raise
        else:
            tmp.mkdir()  # TemporaryDirectory removes it on exit
    return directory


def ensure_runtime(weights_path: str | Path, sha256: str, name: str, again: bool = False) -> Path:
    """The runtime folder of `weights_path`, exported first (loading torch once) when it is not in the cache, or
    exported again over it when `again` (a folder that failed to load)."""
    directory = runtime_dir(weights_path, sha256)
    if (directory / "runtime.json").is_file() and not again:
        return directory
    from ..models.weights import load_frame_codec

    return export_runtime(load_frame_codec(weights_path, name=name), directory, replace=again)
