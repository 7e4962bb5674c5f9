"""The LSTM at the bottleneck of SEANet, applied to convolutional layout with a skip connection."""

from __future__ import annotations

import torch
from torch import nn


class SLSTM(nn.Module):
    """Unidirectional LSTM over `[B, C, T]` returning `[B, C, T]` (plus the input when `skip`).

    Args:
        dim: channels C (input and hidden size).
        num_layers: stacked LSTM layers.
        skip: add the input to the LSTM output.
    """

    def __init__(self, dim: int, num_layers: int = 2, skip: bool = True):
        super().__init__()
        self.skip = skip
        self.lstm = nn.LSTM(dim, dim, num_layers)

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        return self.step(x, state)[0]

    def step(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Run from `state` (h, c), each [num_layers, B, C]; returns the output [B, C, T] and the new state.

        A time-major `x` [B, C, 1, T] (see `codec.modules.conv`) gives a time-major output; for B = 1 its memory
        already is the LSTM's `[T, B, C]`, so no transposition is copied either way."""
        time_major = x.dim() == 4
        x = (x.squeeze(2) if time_major else x).permute(2, 0, 1)  # [T, B, C], the LSTM's layout
        y, state = self.lstm(x, state)
        if self.skip:
            y = y + x
        y = y.permute(1, 2, 0)
        if time_major:
            y = y.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        return y, state
