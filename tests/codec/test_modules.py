"""SEANet building blocks against Meta's `encodec.modules`, with the same weights: exact equality."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from encodec import modules as meta
from encodec.modules import conv as meta_conv

from codec.modules import (
    SLSTM,
    SConv1d,
    SConvTranspose1d,
    SEANetConfig,
    SEANetDecoder,
    SEANetEncoder,
    conv_transpose1d_time_major,
    extra_padding_for_conv1d,
    fold_weight_norm,
    from_time_major,
    pad1d,
    to_time_major,
)
from codec.modules.seanet import ELU


def is_time_major(x: torch.Tensor) -> bool:
    return x.dim() == 4 and x.shape[2] == 1 and x.is_contiguous(memory_format=torch.channels_last)


def copy_conv(ours: torch.nn.Module, theirs: torch.nn.Module) -> None:
    """Copy Meta's NormConv weights (weight_g/weight_v or weight, bias, norm) into one of our convolutions."""
    inner = theirs.conv if hasattr(theirs, "conv") else theirs.convtr
    layer = inner.conv if hasattr(inner, "conv") else inner.convtr
    with torch.no_grad():
        if hasattr(layer, "weight_g"):
            ours.conv.parametrizations.weight.original0.copy_(layer.weight_g)
            ours.conv.parametrizations.weight.original1.copy_(layer.weight_v)
        else:
            ours.conv.weight.copy_(layer.weight)
        ours.conv.bias.copy_(layer.bias)
        if isinstance(inner.norm, torch.nn.GroupNorm):
            ours.norm.weight.copy_(torch.randn_like(ours.norm.weight))
            ours.norm.bias.copy_(torch.randn_like(ours.norm.bias))
            inner.norm.weight.copy_(ours.norm.weight)
            inner.norm.bias.copy_(ours.norm.bias)


@pytest.mark.parametrize("length", [1, 2, 3, 5, 8, 13])
@pytest.mark.parametrize("paddings", [(0, 0), (3, 0), (2, 1), (0, 4), (6, 3)])
@pytest.mark.parametrize("mode", ["reflect", "zeros"])
def test_pad1d_matches_meta_including_short_reflect(length, paddings, mode):
    x = torch.randn(2, 3, length)
    expected = meta_conv.pad1d(x, paddings, mode="reflect" if mode == "reflect" else "constant")
    assert torch.equal(pad1d(x, paddings, mode), expected)


@pytest.mark.parametrize("length", [1, 7, 8, 9, 100, 101])
@pytest.mark.parametrize("kernel,stride", [(7, 1), (4, 2), (10, 5), (16, 8)])
def test_extra_padding_matches_meta(length, kernel, stride):
    x = torch.zeros(1, 1, length)
    total = kernel - stride
    assert extra_padding_for_conv1d(length, kernel, stride, total) == meta_conv.get_extra_padding_for_conv1d(
        x, kernel, stride, total)


@pytest.mark.parametrize("causal,norm", [(True, "weight_norm"), (False, "weight_norm"), (False, "time_group_norm")])
@pytest.mark.parametrize("kernel,stride,dilation", [(7, 1, 1), (3, 1, 2), (8, 4, 1), (10, 5, 1), (1, 1, 1)])
def test_sconv1d_matches_meta(causal, norm, kernel, stride, dilation):
    torch.manual_seed(0)
    theirs = meta.SConv1d(4, 6, kernel, stride, dilation=dilation, causal=causal, norm=norm)
    ours = SConv1d(4, 6, kernel, stride, dilation, causal=causal, norm=norm)
    copy_conv(ours, theirs)
    for length in (1, 2, 5, 37, 64):
        x = torch.randn(2, 4, length)
        y = ours(x)
        assert y.shape == (2, 6, math.ceil(length / stride))
        assert torch.equal(y, theirs(x))


@pytest.mark.parametrize("causal,norm", [(True, "weight_norm"), (False, "weight_norm"), (False, "time_group_norm")])
@pytest.mark.parametrize("kernel,stride", [(4, 2), (10, 5), (16, 8)])
def test_sconv_transpose1d_matches_meta(causal, norm, kernel, stride):
    torch.manual_seed(0)
    theirs = meta.SConvTranspose1d(6, 4, kernel, stride, causal=causal, norm=norm)
    ours = SConvTranspose1d(6, 4, kernel, stride, causal=causal, norm=norm)
    copy_conv(ours, theirs)
    for length in (1, 3, 20):
        x = torch.randn(2, 6, length)
        y = ours(x)
        assert y.shape == (2, 4, length * stride)
        assert torch.equal(y, theirs(x))


def test_slstm_matches_meta_and_carries_state():
    torch.manual_seed(0)
    theirs = meta.SLSTM(8, num_layers=2)
    ours = SLSTM(8, num_layers=2)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 8, 30)
    whole = ours(x)
    assert torch.equal(whole, theirs(x))
    first, state = ours.step(x[..., :11])
    second, _ = ours.step(x[..., 11:], state)
    assert (torch.cat([first, second], -1) - whole).abs().max() < 1e-6


def test_fold_weight_norm_keeps_outputs_identical():
    torch.manual_seed(0)
    conv = SConv1d(3, 5, 7, causal=True, norm="weight_norm")
    with torch.no_grad():  # g != ||v||, so the fold is not a no-op
        conv.conv.parametrizations.weight.original0.mul_(torch.rand(5, 1, 1) + 0.5)
    x = torch.randn(1, 3, 50)
    before = conv(x)
    fold_weight_norm(conv)
    assert not hasattr(conv.conv, "parametrizations")
    assert torch.equal(conv(x), before)


@pytest.mark.parametrize("causal,norm", [(True, "weight_norm"), (False, "time_group_norm")])
def test_seanet_matches_meta_layer_for_layer(causal, norm):
    torch.manual_seed(0)
    config = SEANetConfig(channels=2, dimension=16, n_filters=4, ratios=(4, 2), norm=norm, causal=causal)
    encoder, decoder = SEANetEncoder(config), SEANetDecoder(config)
    their_encoder = meta.SEANetEncoder(channels=2, dimension=16, n_filters=4, ratios=[4, 2], norm=norm, causal=causal)
    their_decoder = meta.SEANetDecoder(channels=2, dimension=16, n_filters=4, ratios=[4, 2], norm=norm, causal=causal)
    from codec.loaders import meta_to_ours

    for ours, theirs, prefix in ((encoder, their_encoder, "encoder."), (decoder, their_decoder, "decoder.")):
        state = meta_to_ours({prefix + k: v for k, v in theirs.state_dict().items()})
        ours.load_state_dict({k[len(prefix):]: v for k, v in state.items()}, strict=True)
    x = torch.randn(1, 2, 203)
    z = encoder(x)
    assert z.shape == (1, 16, math.ceil(203 / 8))
    assert torch.equal(z, their_encoder(x))
    y = decoder(z)
    assert y.shape == (1, 2, z.shape[-1] * 8)
    assert torch.equal(y, their_decoder(z))


def test_time_group_norm_cannot_be_causal():
    with pytest.raises(ValueError, match="causal"):
        SConv1d(2, 2, 3, causal=True, norm="time_group_norm")


# -- the time-major layout: same functions, float rounding apart ------------------------------------------------------


@pytest.mark.parametrize("causal,norm", [(True, "weight_norm"), (False, "time_group_norm")])
@pytest.mark.parametrize("channels_in,kernel,stride,dilation", [(4, 7, 1, 1), (4, 3, 1, 2), (4, 8, 4, 1),
                                                                 (1, 7, 1, 1), (1, 4, 2, 1), (1, 3, 1, 3)])
def test_time_major_sconv1d_equals_the_default_layout(causal, norm, channels_in, kernel, stride, dilation):
    torch.manual_seed(0)
    conv = SConv1d(channels_in, 6, kernel, stride, dilation, causal=causal, norm=norm)
    with torch.inference_mode():
        for length in (1, 5, 37, 64):
            x = torch.randn(2, channels_in, length)
            expected = conv(x)
            y = conv(to_time_major(x))
            assert is_time_major(y)  # the layout survives every layer, 1-channel inputs included
            assert torch.allclose(from_time_major(y), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kernel,stride", [(4, 2), (10, 5), (16, 8), (3, 1), (5, 2)])
@pytest.mark.parametrize("bias", [True, False])
def test_conv_transpose1d_time_major_matches_torch(kernel, stride, bias):
    torch.manual_seed(0)
    x = torch.randn(2, 6, 13)
    weight = torch.randn(6, 4, kernel)
    b = torch.randn(4) if bias else None
    y = conv_transpose1d_time_major(to_time_major(x), weight, stride, b)
    assert is_time_major(y) and y.shape == (2, 4, 1, 12 * stride + kernel)
    assert torch.allclose(from_time_major(y), F.conv_transpose1d(x, weight, b, stride), atol=1e-5, rtol=1e-5)


def test_elu_on_time_major_signals_is_elu_within_float_rounding():
    x = torch.cat([torch.linspace(-30, 30, 10_001), torch.tensor([0.0, -0.0, 1e-30, -1e-30, -1e-7, float("-inf")])])
    signal = x.view(1, 1, -1).expand(1, 3, -1).contiguous()
    expected = F.elu(signal)
    assert torch.equal(ELU()(signal), expected)  # [B, C, T]: PyTorch's own, bit for bit
    y = from_time_major(ELU()(to_time_major(signal)))
    assert (y - expected).abs().max() <= 6e-8
    assert torch.equal(y[..., -1], torch.full((1, 3), -1.0))
    assert torch.isnan(ELU()(to_time_major(torch.full((1, 2, 3), float("nan"))))).all()


def test_slstm_time_major_equals_default_layout_and_state():
    torch.manual_seed(0)
    lstm = SLSTM(8, num_layers=2)
    x = torch.randn(2, 8, 30)
    with torch.inference_mode():
        whole, state = lstm.step(x)
        y, state_tm = lstm.step(to_time_major(x))
    assert is_time_major(y)
    assert torch.allclose(from_time_major(y), whole, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(state, state_tm, strict=True))


def test_seanet_runs_time_major_only_where_asked_and_only_without_gradients():
    torch.manual_seed(0)
    config = SEANetConfig(channels=1, dimension=16, n_filters=4, ratios=(4, 2), causal=True)
    encoder, decoder = SEANetEncoder(config), SEANetDecoder(config)
    assert not encoder.time_major and decoder.time_major  # the defaults: codes as Meta's, fast waveforms
    x = torch.randn(1, 1, 403)
    z = encoder(x)
    y = decoder(z)  # gradients on: [B, C, T] everywhere, whatever the flags say
    decoder.time_major = False
    assert torch.equal(decoder(z), y)
    with torch.inference_mode():
        reference_z, reference_y = encoder(x), decoder(z)
        decoder.time_major = encoder.time_major = True
        y, fast_z = decoder(z), encoder(x)
    assert y.is_contiguous() and fast_z.is_contiguous()
    assert not torch.equal(y, reference_y)  # the time-major path did run ...
    assert torch.allclose(y, reference_y, atol=1e-5)  # ... and computes the same function
    assert torch.allclose(fast_z, reference_z, atol=1e-5)
