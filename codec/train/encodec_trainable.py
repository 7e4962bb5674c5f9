"""Meta's EnCodec architecture (SEANet + RVQ) as a training generator for the recipe.

EnCodec's authors released weights but no training code; this wraps our re-implementation of the architecture
(`codec.models.encodec`, whose inference is bit-identical to Meta's) with the training pass the trainer expects.
A trained run exports to a state dict in our parameter names, which `codec.load_codec(path)` loads like a Meta
checkpoint.
"""

from __future__ import annotations

import torch
from safetensors.torch import save_file
from torch import nn

from ..models.encodec import EncodecModel, encodec_24khz
from ..models.framecodec import FrameCodecOutput


class TrainableEncodec(nn.Module):
    """Args:
    codec: an `EncodecModel` with weight-norm parametrisations still in place (a factory's fresh model).
    """

    def __init__(self, codec: EncodecModel):
        super().__init__()
        self.codec = codec
        self.sample_rate = codec.sample_rate
        self.bandwidths = codec.bandwidths
        self.max_codebooks = codec.max_codebooks
        self.hop_length = codec.hop_length
        self.quantizer = codec.quantizer

    def codebooks_for(self, bandwidth: float) -> int:
        return self.codec.codebooks_for(bandwidth)

    def analyse(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, C, S] -> latent [B, D, T]."""
        return self.codec.encoder(wav)

    def forward(self, wav: torch.Tensor, num_codebooks: int) -> FrameCodecOutput:
        quantized = self.quantizer(self.analyse(wav), num_codebooks)
        out = self.codec.decoder(quantized.quantized)[..., : wav.shape[-1]]
        return FrameCodecOutput(wav=out, spec=None, quantized=quantized)  # type: ignore[arg-type]

    def encode(self, wav, bandwidth):
        return self.codec.encode(wav, bandwidth)

    def decode(self, encoded):
        return self.codec.decode(encoded)


def trainable_encodec_24khz() -> TrainableEncodec:
    return TrainableEncodec(encodec_24khz(name="encodec_24khz"))


def export_encodec(model: TrainableEncodec, path, info: dict | None = None) -> None:
    """Writes the generator's state dict (our names, float32) as safetensors; `load_codec(path)` reads it."""
    import json

    state = {k: v.detach().cpu().float().contiguous() if v.is_floating_point() else v.detach().cpu().contiguous()
             for k, v in model.codec.state_dict().items()}
    save_file(state, str(path), metadata={"format": "codectok-encodec-1", "info": json.dumps(info or {})})
