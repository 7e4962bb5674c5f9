"""Which codec a name means: the embedded default, Meta's EnCodec (two loaders), or a weights file/directory.

Resolution: an explicit name > the `CODEC_MODEL` environment variable > the embedded default (`default`, the
project's own codec trained offline, `codec/weights/default.safetensors`).

Runtimes: "torch" (every model) or "onnxruntime" (the project's frame codec only: `codec.runtime`, no torch in the
process). "auto", what the command line asks for, is "onnxruntime" where it can be and "torch" elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from .container import CodecLayout
from .errors import WeightsError
from .interface import Codec

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "default.safetensors"
DEFAULT_NAME = "default"
RUNTIMES = ("auto", "torch", "onnxruntime")


def resolve_name(name: str | None) -> str:
    return name or os.environ.get("CODEC_MODEL") or DEFAULT_NAME


def _frame_codec_weights(name: str) -> tuple[Path, str | None] | None:
    """(weights file, name to report) when `name` means a frame-codec weights file, else None."""
    if name == DEFAULT_NAME:
        if not DEFAULT_WEIGHTS.is_file():
            raise WeightsError(f"the embedded default codec is missing ({DEFAULT_WEIGHTS}); train it with "
                               "`codec train` and export it there, or pass --model")
        return DEFAULT_WEIGHTS, DEFAULT_NAME
    path = Path(name).expanduser()
    if path.suffix == ".safetensors" and path.is_file():
        from .models.weights_format import FORMAT, read_metadata

        if read_metadata(path).get("format") == FORMAT:
            return path, None
    return None


def load_codec(name: str | None = None, runtime: str = "torch") -> Codec:
    """Loads a codec by registry name (`default`, `encodec_24khz`, `encodec_48khz`), Hugging Face id (from the local
    cache), or path (our `.safetensors`, Meta's `.th`, a transformers directory). Never downloads anything.

    `runtime`: "torch" (the default), "onnxruntime" (the frame codec without torch, `codec.runtime`; its graphs are
    exported into the cache on first use) or "auto" (onnxruntime where it applies, else torch)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    name = resolve_name(name)
    frame = _frame_codec_weights(name)
    if frame is not None:
        path, shown = frame
        if runtime != "torch":
            try:
                from .runtime import load_runtime_codec

                return load_runtime_codec(path, name=shown)
            except (ImportError, OSError):
                if runtime == "onnxruntime":
                    raise
                # auto: no onnxruntime here, or no writable cache for the export: the torch model does the same job
        from .models.weights import load_frame_codec

        return load_frame_codec(path, name=shown)
    if runtime == "onnxruntime":
        raise WeightsError(f"{name}: the onnxruntime runtime runs this project's frame codec only; use --runtime torch")
    from .loaders import load_encodec

    return load_encodec(name)


def container_name(codec: Codec) -> str:
    """The model name written into .ecdc headers: Meta's architecture name for EnCodec, else the weights name."""
    return getattr(codec, "arch", None) or codec.weights.name


def layout_of(codec: Codec) -> CodecLayout:
    """The .ecdc layout (segmenting, scales) of `codec`."""
    segment_length = getattr(codec, "segment_length", None)
    segment_stride = getattr(codec, "segment_stride", None)
    return CodecLayout(
        sample_rate=codec.sample_rate,
        frame_rate=codec.frame_rate,
        segment_length=segment_length,
        segment_stride=segment_stride,
        normalize=bool(getattr(codec, "normalize", False)),
        bits=codec.bits_per_code,
        max_codebooks=codec.max_codebooks,
    )
