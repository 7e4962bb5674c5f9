"""Attention that skips the blocks its mask removes, for training Gemma 3 on the CPU.

PyTorch's CPU flash-attention kernel works through every query x key pair of the `[L, L]` mask it is given, including
the ones the mask removes. At the training recipe's 1024-token windows, Gemma 3's sliding layers (512-token window)
use 37.5 % of those pairs and its global (causal) layers half, and attention is about a quarter of a training step.

`blocked_attention_forward` cuts the queries into blocks of `BLOCK` rows and hands each block to the same kernel
(`torch.nn.functional.scaled_dot_product_attention`) with only the key columns that its mask lets some row of it see
(`key_spans`): every row attends to the same keys as before, so the result is the same up to float rounding
(within 1e-5 in tests/audiolm/test_attention.py), and a sliding layer's forward + backward takes 0.6-0.85x the time
at 1024 tokens (`scripts/bench_lm.py` prints it and times the recipe's step with it). A layer with no mask (causal, no
padding) already gets a kernel that skips the upper triangle (`is_causal`) and is left to it.

`use_blocked_attention(model)` registers it with transformers as `"sdpa_blocked"` (with transformers' own boolean
SDPA masks) and selects it on `model`. Off the CPU, for inputs shorter than two blocks, with dropout, without a mask or
with an additive (float) mask it is transformers' own `sdpa` unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

NAME = "sdpa_blocked"
BLOCK = 256  # query rows per kernel call


def key_spans(mask: torch.Tensor, block: int) -> list[tuple[int, int, int, int]]:
    """`(q0, q1, k0, k1)` per block of query rows `[q0, q1)`: the smallest key range `[k0, k1)` holding every key
    that some row of the block may attend to in the boolean `mask` `[..., Lq, Lk]` (True = attend). A block whose
    rows attend to nothing keeps every key (so its rows come out as the unblocked kernel's would)."""
    lq, lk = mask.shape[-2:]
    seen = mask.reshape(-1, lq, lk).any(0)  # [Lq, Lk]
    spans = []
    for q0 in range(0, lq, block):
        q1 = min(lq, q0 + block)
        cols = seen[q0:q1].any(0).nonzero()
        k0, k1 = (int(cols[0]), int(cols[-1]) + 1) if len(cols) else (0, lk)
        spans.append((q0, q1, k0, k1))
    return spans


def blocked_attention_forward(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                              attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                              is_causal: bool | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: `query` `[B, H, Lq, D]`, `key`/`value` `[B, Hkv, Lk, D]`, a boolean
    `attention_mask` `[B, 1, Lq, Lk]`; returns the output `[B, Lq, H, D]` and no weights.

    Without a mask (causal, no padding: transformers leaves it to the kernel's `is_causal`, which skips the blocks
    above the diagonal itself) it is transformers' `sdpa`."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    lq = query.shape[2]
    plain = (query.device.type != "cpu" or lq < 2 * BLOCK or dropout or kwargs.get("position_bias") is not None
             or kwargs.get("cache") is not None or kwargs.get("softcap") is not None
             or attention_mask is None or attention_mask.dtype != torch.bool)
    if plain:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    heads, kv_heads = query.shape[1], key.shape[1]
    out = []
    for q0, q1, k0, k1 in key_spans(attention_mask, BLOCK):
        shape = (key.shape[0], heads, k1 - k0, key.shape[3])
        k = key[:, :, k0:k1, None].expand(-1, -1, -1, heads // kv_heads, -1).transpose(2, 3).reshape(shape)
        v = value[:, :, k0:k1, None].expand(-1, -1, -1, heads // kv_heads, -1).transpose(2, 3).reshape(shape)
        out.append(F.scaled_dot_product_attention(query[:, :, q0:q1], k, v, attn_mask=attention_mask[..., q0:q1, k0:k1],
                                                  scale=scaling))
    return torch.cat(out, 2).transpose(1, 2).contiguous(), None


def register() -> None:
    """Make `"sdpa_blocked"` known to transformers (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, blocked_attention_forward)
    AttentionMaskInterface.register(NAME, sdpa_mask)


def use_blocked_attention(model: Any) -> None:
    """Select `"sdpa_blocked"` on a transformers model that uses `sdpa` (any other implementation is left alone)."""
    if getattr(model.config, "_attn_implementation", None) not in ("sdpa", NAME):
        return
    register()
    model.set_attn_implementation(NAME)
