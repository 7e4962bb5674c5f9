"""Load EnCodec weights from Meta's `encodec` checkpoints or transformers' format into `EncodecModel`.

Offline only: nothing is downloaded. A registry name (`encodec_24khz`, `encodec_48khz`) is looked up in the torch hub
cache (where Meta's package stores its downloads) and then in the Hugging Face cache (`facebook/encodec_*`); a
Hugging Face id is looked up in the Hugging Face cache and then the torch hub cache; a path may be a Meta checkpoint
file (`.th`, `.pt`, `.pth`, `.bin`, `.safetensors`) or a transformers directory (`config.json` + `model.safetensors`
or `pytorch_model.bin`). Pickled checkpoints are read with `torch.load(weights_only=True)`: one that carries code or
objects other than tensors is refused. Weight norm is folded once after loading, which leaves outputs unchanged.
"""

from __future__ import annotations

import glob
import json
import os
import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import WeightsError
from .interface import WeightsInfo, file_sha256
from .models.encodec import EncodecModel, encodec_24khz, encodec_48khz
from .modules import SEANetConfig, SEANetDecoder, SEANetEncoder
from .quantization import ResidualVectorQuantizer

CHECKPOINT_SUFFIXES = (".th", ".pt", ".pth", ".bin", ".safetensors")


@dataclass(frozen=True)
class ModelInfo:
    """A released EnCodec model the loaders know by name.

    Args:
        name: registry name, also Meta's model name in .ecdc headers.
        sample_rate: Hz.
        channels: audio channels.
        bandwidths: offered kbps.
        frame_rate: frames per second.
        meta_checkpoint: file name of Meta's checkpoint in the torch hub cache.
        hf_id: Hugging Face model id of the transformers conversion.
        factory: builds the architecture with random weights.
    """

    name: str
    sample_rate: int
    channels: int
    bandwidths: tuple[float, ...]
    frame_rate: int
    meta_checkpoint: str
    hf_id: str
    factory: Callable[..., EncodecModel]


KNOWN_MODELS: dict[str, ModelInfo] = {
    "encodec_24khz": ModelInfo("encodec_24khz", 24_000, 1, (1.5, 3.0, 6.0, 12.0, 24.0), 75,
                               "encodec_24khz-d7cc33bc.th", "facebook/encodec_24khz", encodec_24khz),
    "encodec_48khz": ModelInfo("encodec_48khz", 48_000, 2, (3.0, 6.0, 12.0, 24.0), 150,
                               "encodec_48khz-7e698e3e.th", "facebook/encodec_48khz", encodec_48khz),
}
_BY_HF_ID = {info.hf_id: info for info in KNOWN_MODELS.values()}


# -- where weights are looked up --------------------------------------------------------------------------------------


def torch_hub_checkpoints_dir() -> Path:
    """`$TORCH_HOME/hub/checkpoints` (default `~/.cache/torch/hub/checkpoints`), where Meta's package caches files."""
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "torch")
    return Path(home).expanduser() / "hub" / "checkpoints"


def hf_hub_cache_dir() -> Path:
    """The Hugging Face hub cache: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(home).expanduser() / "hub"


def hf_snapshots_pattern(hf_id: str) -> str:
    return str(hf_hub_cache_dir() / ("models--" + hf_id.replace("/", "--")) / "snapshots" / "*")


def lookup_locations(name: str) -> list[str]:
    """Every place `load_encodec(name)` looks for the weights of a registry name or Hugging Face id, in order."""
    info = KNOWN_MODELS.get(name) or _BY_HF_ID.get(name)
    if info is None:
        return [hf_snapshots_pattern(name)] if "/" in name else []
    meta = str(torch_hub_checkpoints_dir() / info.meta_checkpoint)
    hf = hf_snapshots_pattern(info.hf_id)
    return [meta, hf] if name == info.name else [hf, meta]


def _hf_snapshot(pattern: str) -> Path | None:
    """The snapshot the cache's refs/main points at, else the newest one holding a config and weights."""
    snapshots_dir = Path(pattern).parent
    ref = snapshots_dir.parent / "refs" / "main"
    candidates = []
    if ref.is_file():
        candidates.append(snapshots_dir / ref.read_text().strip())
    candidates += sorted((Path(p) for p in glob.glob(pattern)), key=lambda p: p.stat().st_mtime, reverse=True)
    for snapshot in candidates:
        if _hf_weights_file(snapshot) is not None and (snapshot / "config.json").is_file():
            return snapshot
    return None


def _missing(name: str, info: ModelInfo | None) -> WeightsError:
    places = ", ".join(lookup_locations(name))
    if info is None:
        return WeightsError(f"no weights for {name}: looked in {places}; pass --model with a local directory "
                            "holding config.json and model.safetensors")
    hub = torch_hub_checkpoints_dir()
    return WeightsError(
        f"no weights for {name}: looked in {places}; offline, copy {info.meta_checkpoint} into {hub}/ "
        f"(or the {info.hf_id} snapshot into the Hugging Face cache) or pass --model /path/to/{info.meta_checkpoint}"
    )


# -- reading files ----------------------------------------------------------------------------------------------------


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a `.safetensors` file or a pickled state dict (read with `weights_only=True`)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # the weights-only unpickler met code, a foreign object or a raw pickle
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        detail = next((line for line in lines if "GLOBAL" in line or "Unsupported" in line), lines[0] if lines else "")
        raise WeightsError(f"{path}: refused, not a checkpoint of plain tensors that can be read without running "
                           f"code ({detail[:160]})") from None
    except Exception as e:  # truncated files, foreign formats, ...
        detail = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
        raise WeightsError(f"{path}: cannot read weights ({type(e).__name__}: {detail})") from None
    for key in ("best_state", "state_dict", "model"):  # wrapped checkpoints
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: not a state dict of tensors")
    return state


# -- name mappings ----------------------------------------------------------------------------------------------------

_META_RULES = [
    (re.compile(r"^(encoder|decoder)\.model\."), r"\1.layers."),
    (re.compile(r"\.conv\.conv\."), ".conv."),
    (re.compile(r"\.conv\.norm\."), ".norm."),
    (re.compile(r"\.convtr\.convtr\."), ".conv."),
    (re.compile(r"\.convtr\.norm\."), ".norm."),
    (re.compile(r"^quantizer\.vq\.layers\.(\d+)\._codebook\."), r"quantizer.layers.\1."),
]
_HF_RULES = [(re.compile(r"^quantizer\.layers\.(\d+)\.codebook\."), r"quantizer.layers.\1.")]
_WEIGHT_NORM_RULES = [
    (re.compile(r"\.weight_g$"), ".parametrizations.weight.original0"),
    (re.compile(r"\.weight_v$"), ".parametrizations.weight.original1"),
]


def _rename(state: dict[str, torch.Tensor], rules) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for pattern, replacement in rules:
            key = pattern.sub(replacement, key)
        out[key] = value.float() if value.is_floating_point() else value
    return out


def meta_to_ours(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Meta's `encodec` state-dict names (`encoder.model.0.conv.conv.weight_g`, ...) -> `EncodecModel` names."""
    return _rename(state, _META_RULES + _WEIGHT_NORM_RULES)


def hf_to_ours(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers' `EncodecModel` names (`encoder.layers.0.conv.weight_g` or `...parametrizations...`) -> ours."""
    return _rename(state, _HF_RULES + _WEIGHT_NORM_RULES)


def _is_meta_naming(state: dict[str, torch.Tensor]) -> bool:
    return any(k.startswith(("encoder.model.", "quantizer.vq.")) for k in state)


def _detect_arch(state: dict[str, torch.Tensor], path: Path) -> ModelInfo:
    """Which known architecture a state dict (our names) belongs to."""
    first = state.get("encoder.layers.0.conv.parametrizations.weight.original1")
    if first is None:
        first = state.get("encoder.layers.0.conv.weight")
    num_codebooks = sum(1 for k in state if re.fullmatch(r"quantizer\.layers\.\d+\.embed", k))
    group_norm = "encoder.layers.0.norm.weight" in state
    if first is not None:
        for info in KNOWN_MODELS.values():
            stereo = info.channels == 2  # the 48 kHz model: stereo, time group norm, 16 codebooks
            if first.shape[1] == info.channels and group_norm == stereo and num_codebooks == (16 if stereo else 32):
                return info
    raise WeightsError(f"{path}: not an EnCodec 24 kHz or 48 kHz checkpoint (unrecognised parameter names or shapes)")


def _fill(model: EncodecModel, state: dict[str, torch.Tensor], path: Path) -> EncodecModel:
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        missing, unexpected = result.missing_keys, result.unexpected_keys
        raise WeightsError(f"{path}: weights do not match {model.arch}: {len(missing)} missing "
                           f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})")
    return model.fold_weight_norm().eval()


# -- loaders ----------------------------------------------------------------------------------------------------------


def load_meta_checkpoint(path: str | Path, name: str | None = None) -> EncodecModel:
    """A checkpoint of Meta's `encodec` package (e.g. `encodec_24khz-d7cc33bc.th`) -> `EncodecModel`.

    The architecture (24 kHz or 48 kHz) is read from the parameter shapes; `name` overrides the recorded name.
    Files in transformers' naming are accepted too.
    """
    path = Path(path)
    raw = read_state_dict(path)
    state = meta_to_ours(raw) if _is_meta_naming(raw) else hf_to_ours(raw)
    info = _detect_arch(state, path)
    model = _fill(info.factory(weights=WeightsInfo(info.name, "")), state, path)
    model.weights = WeightsInfo(name or info.name, file_sha256(path), str(path))
    return model


def _hf_weights_file(directory: Path) -> Path | None:
    for candidate in ("model.safetensors", "pytorch_model.bin"):
        if (directory / candidate).is_file():
            return directory / candidate
    return None


def _config_from_hf(config: dict, path: Path) -> tuple[SEANetConfig, dict]:
    try:
        seanet = SEANetConfig(
            channels=config.get("audio_channels", 1),
            dimension=config.get("hidden_size", 128),
            n_filters=config.get("num_filters", 32),
            n_residual_layers=config.get("num_residual_layers", 1),
            ratios=tuple(config.get("upsampling_ratios", (8, 5, 4, 2))),
            norm=config.get("norm_type", "weight_norm"),
            causal=config.get("use_causal_conv", True),
            pad_mode=config.get("pad_mode", "reflect"),
            kernel_size=config.get("kernel_size", 7),
            last_kernel_size=config.get("last_kernel_size", 7),
            residual_kernel_size=config.get("residual_kernel_size", 3),
            dilation_base=config.get("dilation_growth_rate", 2),
            true_skip=not config.get("use_conv_shortcut", True),
            compress=config.get("compress", 2),
            lstm_layers=config.get("num_lstm_layers", 2),
            trim_right_ratio=config.get("trim_right_ratio", 1.0),
        )
        sample_rate = int(config.get("sampling_rate", 24_000))
        bandwidths = tuple(float(b) for b in config.get("target_bandwidths", (1.5, 3.0, 6.0, 12.0, 24.0)))
        codebook_size = int(config.get("codebook_size", 1024))
        frame_rate = -(-sample_rate // seanet.hop_length)
        bits = (codebook_size - 1).bit_length()
        model_kwargs = dict(
            sample_rate=sample_rate,
            channels=seanet.channels,
            bandwidths=bandwidths,
            normalize=bool(config.get("normalize", False)),
            segment=config.get("chunk_length_s"),
            overlap=config.get("overlap") or 0.01,
            num_codebooks=int(1000 * bandwidths[-1] // (frame_rate * bits)),
            codebook_size=codebook_size,
        )
    except (TypeError, ValueError) as e:
        raise WeightsError(f"{path}: config.json is not an EnCodec configuration ({e})") from None
    return seanet, model_kwargs


def load_hf_directory(path: str | Path, name: str | None = None) -> EncodecModel:
    """A transformers EnCodec directory (`config.json` + `model.safetensors` or `pytorch_model.bin`) -> model."""
    path = Path(path)
    weights_file = _hf_weights_file(path)
    if weights_file is None or not (path / "config.json").is_file():
        raise WeightsError(f"{path}: expected config.json and model.safetensors (or pytorch_model.bin) in it")
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise WeightsError(f"{path / 'config.json'}: unreadable ({e})") from None
    if config.get("model_type", "encodec") != "encodec":
        raise WeightsError(f"{path}: config.json describes a {config.get('model_type')!r} model, not EnCodec")
    seanet, kwargs = _config_from_hf(config, path)
    num_codebooks, codebook_size = kwargs.pop("num_codebooks"), kwargs.pop("codebook_size")
    state = hf_to_ours(read_state_dict(weights_file))
    arch = next((info.name for info in KNOWN_MODELS.values() if kwargs["sample_rate"] == info.sample_rate
                 and seanet.channels == info.channels), f"encodec_{path.name}")
    quantizer = ResidualVectorQuantizer(seanet.dimension, num_codebooks, codebook_size)
    model = EncodecModel(SEANetEncoder(seanet), SEANetDecoder(seanet), quantizer, name=arch,
                         weights=WeightsInfo(arch, "", None), **kwargs)
    model = _fill(model, state, path)
    model.weights = WeightsInfo(name or arch, file_sha256(weights_file), str(weights_file))
    return model


def load_encodec(name_or_path: str | os.PathLike) -> EncodecModel:
    """Load EnCodec from a registry name, a Hugging Face id (from the local cache), a checkpoint file or directory.

    Raises `WeightsError` (one line) when nothing is found, naming every place searched and how to provide weights.
    """
    text = str(name_or_path)
    info = KNOWN_MODELS.get(text) or _BY_HF_ID.get(text)
    if info is not None or ("/" in text and not os.path.exists(text) and text.count("/") == 1
                            and not text.startswith((".", "/", "~"))):
        for place in lookup_locations(text):
            if "*" in place:
                snapshot = _hf_snapshot(place)
                if snapshot is not None:
                    return load_hf_directory(snapshot, name=info.name if info else text)
            elif os.path.isfile(place):
                return load_meta_checkpoint(place, name=info.name if info else text)
        raise _missing(text, info)
    path = Path(text).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return load_hf_directory(path)
        raise WeightsError(f"{path}: a model directory needs config.json and model.safetensors (transformers format)")
    if path.is_file():
        if path.suffix not in CHECKPOINT_SUFFIXES:
            raise WeightsError(f"{path}: unknown weights file type (expected one of {', '.join(CHECKPOINT_SUFFIXES)})")
        return load_meta_checkpoint(path)
    known = ", ".join(list(KNOWN_MODELS) + list(_BY_HF_ID))
    raise WeightsError(f"{text}: no such file or directory, and not a known model ({known})")
