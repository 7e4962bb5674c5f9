"""Random-weight EnCodec checkpoints in Meta's and transformers' formats, written by tests into a tmp dir.

Meta's pretrained weights cannot be downloaded here, so tests build Meta's own `encodec.EncodecModel` with random
weights and save it the way the released files are saved. Its codebooks would otherwise be zeros awaiting k-means
(every code 0, a vacuous test), so they are filled with random vectors scaled like the encoder's output and marked
initialised. Group norms get random affine parameters for the same reason.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import torch

ARCHS = ("encodec_24khz", "encodec_48khz")
META_FILES = {"encodec_24khz": "encodec_24khz-d7cc33bc.th", "encodec_48khz": "encodec_48khz-7e698e3e.th"}


def build_meta_model(arch: str = "encodec_24khz", seed: int = 0):
    """Meta's `encodec.EncodecModel` of `arch` with random weights and random, initialised codebooks."""
    from encodec import EncodecModel

    torch.manual_seed(seed)
    if arch == "encodec_24khz":
        model = EncodecModel.encodec_model_24khz(pretrained=False)
    else:
        model = EncodecModel.encodec_model_48khz(pretrained=False)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if re.search(r"\.norm\.(weight|bias)$", name):  # GroupNorm affine: ones/zeros by default
                param.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn_like(param))
        # each codebook ~ a diagonal Gaussian fitted to the residual it quantises (of a noise probe), so codes vary
        probe = torch.randn(1, model.channels, model.sample_rate) * 0.3
        residual = model.encoder(probe).transpose(1, 2).reshape(-1, model.quantizer.dimension)  # [N, D]
        for layer in model.quantizer.vq.layers:
            book = layer._codebook
            mean, std = residual.mean(0), residual.std(0)
            book.embed.copy_(mean + std * torch.randn_like(book.embed))
            book.embed_avg.copy_(book.embed)
            book.cluster_size.fill_(1.0)
            book.inited.fill_(1.0)
            residual = residual - book.embed[book.quantize(residual)]
    return model.eval()


@functools.cache
def meta_model(arch: str = "encodec_24khz", seed: int = 0):
    """`build_meta_model(arch, seed)`, built once per process and shared: do not modify its weights."""
    return build_meta_model(arch, seed)


def write_meta_checkpoint(directory: str | Path, arch: str = "encodec_24khz", seed: int = 0, model=None) -> Path:
    """Save a random `arch` model's state dict (or `model`'s) as Meta names it (`encodec_24khz-d7cc33bc.th`)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / META_FILES[arch]
    torch.save((model or meta_model(arch, seed)).state_dict(), path)
    return path


def meta_state_to_hf(state: dict[str, torch.Tensor], legacy_names: bool = True) -> dict[str, torch.Tensor]:
    """Meta's parameter names -> transformers' (`weight_g`/`weight_v` as on the Hub when `legacy_names`)."""
    out = {}
    for key, value in state.items():
        key = re.sub(r"^(encoder|decoder)\.model\.", r"\1.layers.", key)
        key = key.replace(".conv.conv.", ".conv.").replace(".conv.norm.", ".norm.")
        key = key.replace(".convtr.convtr.", ".conv.").replace(".convtr.norm.", ".norm.")
        key = re.sub(r"^quantizer\.vq\.layers\.(\d+)\._codebook\.", r"quantizer.layers.\1.codebook.", key)
        if not legacy_names:
            key = re.sub(r"\.weight_g$", ".parametrizations.weight.original0", key)
            key = re.sub(r"\.weight_v$", ".parametrizations.weight.original1", key)
        out[key] = value.detach().clone().contiguous()
    return out


def hf_config(arch: str = "encodec_24khz"):
    """`transformers.EncodecConfig` of Meta's `arch`."""
    from transformers import EncodecConfig

    if arch == "encodec_24khz":
        return EncodecConfig()
    return EncodecConfig(
        target_bandwidths=[3.0, 6.0, 12.0, 24.0],
        sampling_rate=48_000,
        audio_channels=2,
        normalize=True,
        chunk_length_s=1.0,
        overlap=0.01,
        norm_type="time_group_norm",
        use_causal_conv=False,
    )


def write_hf_directory(directory: str | Path, arch: str = "encodec_24khz", seed: int = 0, model=None) -> Path:
    """A transformers directory (config.json + model.safetensors, Hub-style `weight_g` names) of the same random
    weights `write_meta_checkpoint(.., arch, seed)` writes (or of Meta's `model`)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = meta_state_to_hf((model or meta_model(arch, seed)).state_dict())
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    config = hf_config(arch).to_dict()
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    return directory


def hf_model(arch: str = "encodec_24khz", seed: int = 0, model=None):
    """transformers' `EncodecModel` holding the same random weights (or Meta's `model`'s), loaded strictly."""
    from transformers import EncodecModel

    hf = EncodecModel(hf_config(arch))
    state = meta_state_to_hf((model or meta_model(arch, seed)).state_dict(), legacy_names=False)
    hf.load_state_dict(state, strict=True)
    return hf.eval()
