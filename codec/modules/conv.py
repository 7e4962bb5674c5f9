"""1-d convolutions that pad themselves (causal or centred) and carry their normalisation, as in EnCodec.

Padding follows Meta's `SConv1d`/`SConvTranspose1d` exactly, because codes depend on it: `padding_total =
(kernel - 1) * dilation - (stride - 1)` samples go on the left (causal) or are split with the extra one on the left
(non-causal); then the right is padded just enough that the last window is full, so `ceil(S / stride)` frames come
out. Reflect padding of an input shorter than the pad first appends zeros, as Meta's `pad1d` does.

Two layouts, same modules. Signals are `[B, C, T]` (PyTorch's default, Meta's), or "time-major": `[B, C, 1, T]` in
channels-last memory, i.e. `[B, T, C]` in memory (`to_time_major`). oneDNN convolves time-major signals directly,
while a `[B, C, T]` signal is reordered into a blocked layout and back at every layer; at EnCodec's 24 and 12 kHz
layers (16-64 channels) a time-major convolution is 1.5-3.5x faster (`scripts/bench_codec.py --layers`). Its sums
run in a different order, so outputs move by float rounding (~1e-6 relative): fine for waveforms, but enough to flip
residual VQ choices at near-ties, so an encoder stays in `[B, C, T]` unless asked (see `SEANetEncoder.time_major`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations, parametrize

NORMS = ("none", "weight_norm", "time_group_norm")


def extra_padding_for_conv1d(length: int, kernel_size: int, stride: int, padding_total: int = 0) -> int:
    """Right padding that makes the last window of a strided convolution over `length` samples full."""
    n_frames = (length - kernel_size + padding_total) / stride + 1
    ideal_length = (math.ceil(n_frames) - 1) * stride + (kernel_size - padding_total)
    return ideal_length - length


def to_time_major(x: torch.Tensor) -> torch.Tensor:
    """`[B, C, T]` -> the same signal time-major: `[B, C, 1, T]` stored as `[B, T, C]` (channels-last)."""
    return x.unsqueeze(2).contiguous(memory_format=torch.channels_last)


def from_time_major(x: torch.Tensor) -> torch.Tensor:
    """Time-major `[B, C, 1, T]` -> a contiguous `[B, C, T]`."""
    return x.squeeze(2).contiguous()


def _last_axis(pads: tuple[int, int], x: torch.Tensor) -> tuple[int, ...]:
    """`F.pad` amounts for the last axis of a `[B, C, T]` or time-major `[B, C, 1, T]` signal."""
    return pads if x.dim() == 3 else (*pads, 0, 0)


def pad1d(x: torch.Tensor, paddings: tuple[int, int], mode: str = "zeros", value: float = 0.0) -> torch.Tensor:
    """Pad the last axis of `x` [..., S]; `mode` "reflect" works on inputs shorter than the pad (zeros go first)."""
    left, right = paddings
    if mode != "reflect":
        return F.pad(x, _last_axis((left, right), x), "constant", value)
    length = x.shape[-1]
    widest = max(left, right)
    appended = 0
    if length <= widest:  # reflect needs more samples than the pad: append zeros first, drop them after
        appended = widest - length + 1
        x = F.pad(x, _last_axis((0, appended), x))
    padded = F.pad(x, _last_axis((left, right), x), "reflect")
    return padded[..., : padded.shape[-1] - appended]


def unpad1d(x: torch.Tensor, paddings: tuple[int, int]) -> torch.Tensor:
    """Remove `paddings` (left, right) samples from the last axis of `x` [..., S]."""
    left, right = paddings
    return x[..., left : x.shape[-1] - right]


def _norm_module(norm: str, channels: int, causal: bool) -> nn.Module:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if norm == "time_group_norm":
        if causal:
            raise ValueError("time_group_norm normalises over the whole signal and cannot be causal")
        return nn.GroupNorm(1, channels)
    return nn.Identity()


class SConv1d(nn.Module):
    """Conv1d over `[B, C, S]` that pads its input itself; output `[B, out_channels, ceil(S / stride)]`.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: kernel width.
        stride: hop between windows.
        dilation: kernel dilation.
        bias: add a learned bias.
        causal: put all the padding on the left (output t sees inputs up to its window's end only).
        norm: "none", "weight_norm" (a parametrisation that `fold_weight_norm` removes) or "time_group_norm".
        pad_mode: "reflect" (EnCodec) or "zeros".
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        bias: bool = True,
        causal: bool = False,
        norm: str = "none",
        pad_mode: str = "reflect",
    ):
        super().__init__()
        conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride, dilation=dilation, bias=bias)
        self.conv = parametrizations.weight_norm(conv) if norm == "weight_norm" else conv
        self.norm = _norm_module(norm, out_channels, causal)
        self.causal = causal
        self.pad_mode = pad_mode
        self.kernel_size = kernel_size
        self.stride = stride
        self.dilation = dilation

    @property
    def padding_total(self) -> int:
        return (self.kernel_size - 1) * self.dilation - (self.stride - 1)

    @property
    def effective_kernel_size(self) -> int:
        return (self.kernel_size - 1) * self.dilation + 1

    def paddings(self, length: int) -> tuple[int, int]:
        """(left, right) padding applied to an input of `length` samples."""
        total = self.padding_total
        extra = extra_padding_for_conv1d(length, self.effective_kernel_size, self.stride, total)
        if self.causal:
            return total, extra
        right = total // 2
        return total - right, right + extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x is [B, C, S] or time-major [B, C, 1, S]
        return self.convolve(pad1d(x, self.paddings(x.shape[-1]), self.pad_mode))

    def convolve(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution and norm over an already padded `x` (either layout, kept)."""
        if x.dim() == 3:
            return self.norm(self.conv(x))
        conv = self.conv
        if x.shape[1] == 1:  # oneDNN takes a 1-channel signal for [B, C, T] and would answer in that layout
            windows = x.flatten(1).unfold(-1, self.effective_kernel_size, self.stride)[..., :: self.dilation]
            y = F.linear(windows, conv.weight.flatten(1), conv.bias)  # [B, T, C_out]: time-major already
            return self.norm(y.transpose(1, 2).unsqueeze(2))
        return self.norm(F.conv2d(x, conv.weight.unsqueeze(2), conv.bias, (1, self.stride), 0, (1, self.dilation)))


class SConvTranspose1d(nn.Module):
    """ConvTranspose1d over `[B, C, T]` that trims its own padding; output `[B, out_channels, T * stride]`.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: kernel width.
        stride: upsampling factor.
        causal: trim on the right (by `trim_right_ratio`), else split with the extra sample on the left.
        norm: "none", "weight_norm" or "time_group_norm".
        trim_right_ratio: share of the trimmed padding taken from the right when causal.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        causal: bool = False,
        norm: str = "none",
        trim_right_ratio: float = 1.0,
    ):
        super().__init__()
        if not causal and trim_right_ratio != 1.0:
            raise ValueError("trim_right_ratio != 1 only makes sense for causal convolutions")
        conv = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride)
        self.conv = parametrizations.weight_norm(conv) if norm == "weight_norm" else conv
        self.norm = _norm_module(norm, out_channels, causal)
        self.causal = causal
        self.trim_right_ratio = trim_right_ratio
        self.kernel_size = kernel_size
        self.stride = stride

    def trims(self) -> tuple[int, int]:
        """(left, right) samples trimmed from the raw transposed-convolution output."""
        total = self.kernel_size - self.stride
        right = math.ceil(total * self.trim_right_ratio) if self.causal else total // 2
        return total - right, right

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x is [B, C, T] or time-major [B, C, 1, T]; the raw output is [B, C', (T - 1) * stride + kernel_size]
        if x.dim() == 3:
            y = self.conv(x)
        else:
            y = conv_transpose1d_time_major(x, self.conv.weight, self.stride, self.conv.bias)
        return unpad1d(self.norm(y), self.trims())


def conv_transpose1d_by_matmul(x: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
    """`F.conv_transpose1d(x, weight, None, stride)` as one matrix product and an overlap-add, without bias.

    x is `[B, C_in, T]`, weight `[C_in, C_out, kernel]` with `kernel` a multiple of `stride` (EnCodec: 2 * stride).
    PyTorch's CPU transposed convolution takes a slow path for these shapes; the product `W^T x` gives every frame's
    `kernel` output samples at once, and the `kernel / stride` blocks of each frame are added at their offsets. Same
    values up to float rounding (the sums are ordered differently): about 1e-7 relative. Returns
    `[B, C_out, (T - 1) * stride + kernel]`.
    """
    c_in, c_out, kernel = weight.shape
    if kernel % stride:
        return F.conv_transpose1d(x, weight, None, stride)
    B, _, T = x.shape
    blocks = kernel // stride
    # one `mm` per batch item into a preallocated [B, C_out * kernel, T]: `torch.matmul` of a 2-D by a 3-D tensor
    # folds the batch into the product through a contiguous copy, which cost as much as the product itself here
    product = weight.reshape(c_in, c_out * kernel).t()
    z = x.new_empty(B, c_out * kernel, T)
    for b in range(B):
        torch.mm(product, x[b], out=z[b])
    z = z.view(B, c_out, blocks, stride, T).transpose(-1, -2)  # [B, C_out, blocks, T, stride]
    out = x.new_zeros(B, c_out, T + blocks - 1, stride)
    for j in range(blocks):
        out[:, :, j : j + T] += z[:, :, j]
    return out.view(B, c_out, (T + blocks - 1) * stride)


def conv_transpose1d_time_major(x: torch.Tensor, weight: torch.Tensor, stride: int,
                                bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.conv_transpose1d` of a time-major `x` [B, C_in, 1, T]; returns time-major `[B, C_out, 1, (T - 1) *
    stride + kernel]`.

    With `kernel` a multiple of `stride` (EnCodec: 2 * stride), frame t's `kernel` output samples are `x_t W`, and
    block j of them (`stride` samples) lands on output block t + j. In time-major memory the output is
    `[T + blocks - 1, stride * C_out]` row by row, so block j of every frame is added in place by one
    `addmm_(x [T, C_in], W_j [C_in, stride * C_out])` into rows j..j+T: no frames tensor, no separate overlap-add.
    Values equal `F.conv_transpose1d` up to float rounding (different summation order).
    """
    c_in, c_out, kernel = weight.shape
    if kernel % stride:
        return F.conv_transpose2d(x, weight.unsqueeze(2), bias, (1, stride))
    B, T = x.shape[0], x.shape[-1]
    blocks = kernel // stride
    rows = T + blocks - 1
    product = weight.permute(0, 2, 1).reshape(c_in, blocks, stride * c_out)  # [C_in, blocks, stride * C_out]
    out = x.new_zeros(B, rows, stride * c_out) if bias is None else bias.repeat(stride).expand(B, rows, -1).clone()
    for b in range(B):
        frames = x[b, :, 0].t()  # [T, C_in], rows contiguous in time-major memory
        for j in range(blocks):
            out[b, j : j + T].addmm_(frames, product[:, j])
    return out.view(B, rows * stride, c_out).permute(0, 2, 1).unsqueeze(2)


def fold_weight_norm(module: nn.Module) -> nn.Module:
    """Replace every weight-norm parametrisation under `module` by its value, once (for inference speed).

    The folded weight is computed by the same `torch._weight_norm(v, g, dim)` call the parametrisation (and Meta's
    older `weight_norm` hook) runs at every forward, so outputs are bit-identical. Returns `module`.
    """
    for sub in module.modules():
        if parametrize.is_parametrized(sub, "weight"):
            parametrize.remove_parametrizations(sub, "weight", leave_parametrized=True)
    return module
