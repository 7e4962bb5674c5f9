"""A lean single-token decoding loop for Gemma 3 audio LMs on the CPU: static KV cache, restricted head, no framework.

transformers' `generate` spends a decoding step on (1) the 262k(+audio)-row head, which is most of the weights a step
reads, (2) a growing `DynamicCache` (a `torch.cat` per layer per step) and (3) a few thousand Python calls of
generic machinery (masks, rotary tables, output dataclasses, logits processors). `FastDecoder` keeps the arithmetic
of a Gemma 3 decoder layer (same operations in the same dtypes, regrouped: the matrix products in the weight layout
this CPU reads fastest, the RMS norms in four tensor operations instead of six, the attention's scaling folded
into q's norm), so its values equal transformers' up to float rounding, and drops the rest:

- the prompt is run once through the transformers model itself (so the prefill is bit-identical) and its keys and
  values are copied into a preallocated cache per layer `[B, kv_heads, max_len, head_dim]` (Gemma 3 270M has one KV
  head);
- each step runs the 18 layers by hand: q/k/v as one fused matrix product, rotary tables precomputed for every
  position, attention of the one new query over the cached keys (sliding layers over the last `sliding_window`);
- logits are computed only over the rows the step may emit (`rows[k]`, one codebook's 1024 ids plus specials), from
  head matrices gathered once, so a step reads the body once plus ~2.6 MB of head instead of ~0.75 GB;
- the fused and re-laid-out weights are prepared once per model and batch size (0.2-1.6 s and about 0.4 GB for
  Gemma 3 270M; `scripts/bench_lm.py` prints the time), at one stream in one buffer of transparent huge pages in
  the order a step reads them, and reused by later decoders while the model's weights are unchanged.

Greedy output equals transformers' `generate` with the same constraint as a logits processor (checked by
`scripts/bench_lm.py`, which also prints the memory-bandwidth bound of a step). Batches of B streams share the step.

    decoder = FastDecoder(model, max_len=4096, batch=8)
    ids = decoder.generate(prompt_ids [B, P], rows, codebook_of_step, num_tokens)   # [B, num_tokens]
"""

from __future__ import annotations

import mmap
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F


def _rope_tables(inv_freq: torch.Tensor, scaling: float, max_len: int, dtype: torch.dtype
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin `[max_len, head_dim]` computed as transformers' `Gemma3RotaryEmbedding` does for each position."""
    positions = torch.arange(max_len, dtype=torch.float32)
    freqs = positions[:, None] * inv_freq.float()[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return (emb.cos() * scaling).to(dtype), (emb.sin() * scaling).to(dtype)


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
    """Gemma3RMSNorm over the last dim, `x * rsqrt(mean(x^2) + eps) * (1 + w)`, in four tensor operations.

    `weight` is `(1 + w) * sqrt(n)` in float32 (it may carry leading dims, e.g. `[heads, head_dim]` for q and k normed
    together) and `floor` is `sqrt(n * eps)`, so that `x / hypot(||x||, floor) * weight` is the same expression:
    `sqrt(n) / sqrt(||x||^2 + n eps) = rsqrt(mean(x^2) + eps)`. Computed in float32 as transformers does; the values
    agree with transformers' norm up to float rounding (tests/audiolm/test_generate.py). On this CPU an operation on
    a 640-float vector costs about 4 us of dispatch and a `mean` 13 us, so the six operations of the written-out
    norm (or `F.rms_norm`, which runs them inside) take 34-50 us against 17-20 us here (`scripts/bench_decode_step.py`
    times them).
    """
    if x.dtype == torch.float32:
        return x / torch.hypot(torch.linalg.vector_norm(x, dim=-1, keepdim=True), floor) * weight
    xf = x.float()
    return (xf / torch.hypot(torch.linalg.vector_norm(xf, dim=-1, keepdim=True), floor) * weight).type_as(x)


def _add_rms_norm(residual: torch.Tensor, h: torch.Tensor, weight: torch.Tensor, floor: torch.Tensor
                  ) -> torch.Tensor:
    """`residual + _rms_norm(h, weight, floor)` with the last product and the sum as one `addcmul`."""
    if h.dtype == torch.float32:
        return torch.addcmul(residual, h / torch.hypot(torch.linalg.vector_norm(h, dim=-1, keepdim=True), floor),
                             weight)
    return residual + _rms_norm(h, weight, floor)


def _swap_halves(x: torch.Tensor) -> torch.Tensor:
    """`[x2, x1]` from `[x1, x2]` along the last dim: with the sine's first half negated (`FastDecoder.rope`),
    `_swap_halves(x) * sin` equals transformers' `rotate_half(x) * sin` bit for bit (`-a * b == a * -b`)."""
    return torch.roll(x, x.shape[-1] // 2, dims=-1)


def _packed_products_available(dtype: torch.dtype) -> bool:
    """Whether oneDNN's prepacked linear (`torch.ops.mkldnn`, what PyTorch's compiler uses for frozen CPU weights) is
    there for this dtype."""
    return (dtype == torch.float32 and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight") and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


class _Projection:
    """`F.linear(x, weight)` for `x` `[B, in]`, with the weight stored in the layout the CPU reads fastest at this B.

    A decoding step is a handful of `[B, in] x [in, out]` products with B = 1..16, which BLAS runs as matrix x vector
    or very skinny matrix products, bound by reading the weight. `scripts/bench_decode_step.py` times the 18 layers'
    products of Gemma 3 270M in four layouts (its table is in the README): on the 2-core development CPU (AVX2,
    MKL) `x @ W^T` with `W^T` stored `[in, out]` was fastest at B = 1, and at B = 8 oneDNN's linear on a weight
    prepacked once for that batch (`torch.ops.mkldnn._reorder_linear_weight`, blocked for its skinny-GEMM kernel),
    ahead of `(W @ x^T)^T` with `W` as stored (the fallback where oneDNN is missing) and of `F.linear`. Same products,
    so the same values up to float rounding. The transposed and the prepacked layouts store each weight once more.
    """

    def __init__(self, weight: torch.Tensor, batch: int):
        weight = weight.detach()
        self.mode = "vector" if batch == 1 else "packed" if _packed_products_available(weight.dtype) else "matrix"
        if self.mode == "vector":
            self.weight = weight.t().contiguous()
        elif self.mode == "packed":
            self.weight = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), batch)
        else:
            self.weight = weight.contiguous()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "vector":
            return x @ self.weight
        if self.mode == "packed":
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, None, "none", [], "")
        return (self.weight @ x.t()).t().contiguous()


class _Layer:
    """One decoder layer's weights, fused where the arithmetic allows (q/k/v, gate/up), norms in `_rms_norm`'s form."""

    def __init__(self, layer: Any, eps: float, batch: int = 1):
        attn, mlp = layer.self_attn, layer.mlp
        self.q_out = attn.q_proj.weight.shape[0]
        self.kv_out = attn.k_proj.weight.shape[0]
        self.qkv = _Projection(torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]), batch)
        self.o = _Projection(attn.o_proj.weight, batch)
        self.gate_up = _Projection(torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]), batch)
        self.inter = mlp.gate_proj.weight.shape[0]
        self.down = _Projection(mlp.down_proj.weight, batch)

        def norm(module, scale: float = 1.0):  # (1 + w) * sqrt(n) [* scale], float32
            weight = module.weight.detach().float()
            return (1.0 + weight) * (weight.shape[-1] ** 0.5 * scale)

        hidden, head_dim = attn.o_proj.weight.shape[0], attn.head_dim
        self.floor = torch.tensor((hidden * eps) ** 0.5, device=attn.o_proj.weight.device)
        self.head_floor = torch.tensor((head_dim * eps) ** 0.5, device=attn.o_proj.weight.device)
        self.input_norm, self.post_attn_norm = norm(layer.input_layernorm), norm(layer.post_attention_layernorm)
        self.pre_ff_norm = norm(layer.pre_feedforward_layernorm)
        self.post_ff_norm = norm(layer.post_feedforward_layernorm)
        heads, kv_heads = self.q_out // head_dim, self.kv_out // head_dim
        # q and k are normed (and rotated) together: `[heads + kv_heads, head_dim]` weights. The attention's scaling
        # is folded into q's (the rotation is linear); Gemma 3's 1/sqrt(256) is a power of two, so that is exact.
        self.qk_norm = torch.cat([norm(attn.q_norm, attn.scaling).expand(heads, -1),
                                  norm(attn.k_norm).expand(kv_heads, -1)])
        self.sliding_window = attn.sliding_window
        self.layer_type = attn.layer_type


def _signature(model: Any) -> tuple:
    """Where each parameter lives and how often it was modified in place: changes when training updates a weight."""
    return tuple((p.data_ptr(), p._version) for p in model.parameters())


# model -> {layout: (signature, layers)}: a decoder's weights are prepared once per model and layout and reused by
# every later FastDecoder on the same, unchanged weights (weakly keyed: they go with the model)
_PREPARED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _prepared_layers(model: Any, batch: int) -> list[_Layer]:
    layout = "vector" if batch == 1 else f"batch {batch}"  # _Projection's layouts (packed for its batch size)
    signature = _signature(model)
    per_model = _PREPARED.setdefault(model, {})
    cached = per_model.get(layout)
    if cached is None or cached[0] != signature:
        body = model.model
        eps = model.config.rms_norm_eps
        layers = [_Layer(layer, eps, batch) for layer in body.layers[: model.config.num_hidden_layers]]
        _into_one_buffer([p for layer in layers for p in (layer.qkv, layer.o, layer.gate_up, layer.down)])
        per_model[layout] = cached = (signature, layers)
    return cached[1]


HUGE_PAGE = 2 << 20


def _huge_page_buffer(nbytes: int, device: torch.device) -> torch.Tensor:
    """`nbytes` of uninitialised memory `[nbytes]` uint8, on a CPU from a private anonymous mapping advised for
    transparent huge pages and aligned to 2 MB (elsewhere, or where that is not available, `torch.empty`)."""
    if device.type != "cpu" or not hasattr(mmap, "MADV_HUGEPAGE"):
        return torch.empty(nbytes, dtype=torch.uint8, device=device)
    try:
        region = mmap.mmap(-1, nbytes + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        region.madvise(mmap.MADV_HUGEPAGE)
    except (OSError, ValueError):
        return torch.empty(nbytes, dtype=torch.uint8)
    whole = torch.frombuffer(region, dtype=torch.uint8)  # the tensor keeps the mapping alive
    start = -whole.data_ptr() % HUGE_PAGE
    return whole[start : start + nbytes]


def _into_one_buffer(projections: list[_Projection], align: int = 4096) -> None:
    """Move the projections' dense weights into one buffer (`_huge_page_buffer`), in the order a step reads them.

    A step at B = 1 is bound by reading 0.4 GB of weights through 72 products of 2.6-10.5 MB each. On the 2-core
    development CPU they took 30.8 ms from one buffer of transparent huge pages against 37.0 ms from separate tensors
    in 4 kB pages (`scripts/bench_decode_step.py`: fewer TLB misses, one sequential stream). Same values, same
    kernels, so the same results. oneDNN's prepacked weights (B > 1) are opaque tensors and stay where they are."""
    dense = [p for p in projections if p.weight.layout == torch.strided]
    if not dense:
        return
    offsets, total = [], 0
    for p in dense:
        offsets.append(total)
        total += -(-p.weight.numel() * p.weight.element_size() // align) * align
    buffer = _huge_page_buffer(total, dense[0].weight.device)
    for p, offset in zip(dense, offsets, strict=True):
        weight = p.weight
        view = buffer[offset : offset + weight.numel() * weight.element_size()].view(weight.dtype).view(weight.shape)
        view.copy_(weight)
        p.weight = view


class FastDecoder:
    """Greedy/constrained decoding of a (possibly extended) `Gemma3ForCausalLM`, B streams at once.

    Args:
        model: the transformers model (embedding and head shared; the layers' weights prepared once, see above).
        max_len: longest sequence (prompt + generated) the static cache holds.
        batch: number of streams B decoded together.
    """

    def __init__(self, model: Any, max_len: int, batch: int = 1):
        config = model.config
        self.model = model
        self.config = config
        self.max_len = max_len
        self.batch = batch
        body = model.model
        self.dtype = body.embed_tokens.weight.dtype
        self.embed = body.embed_tokens.weight.detach()
        self.embed_scale = body.embed_tokens.embed_scale.to(self.dtype)
        self.head = model.get_output_embeddings().weight.detach()
        self.softcap = getattr(config, "final_logit_softcapping", None)
        self.eps = config.rms_norm_eps
        self.layers = _prepared_layers(model, batch)
        hidden = self.embed.shape[1]
        self.final_norm = (1.0 + body.norm.weight.detach().float()) * hidden ** 0.5  # `_rms_norm`'s form
        self.final_floor = torch.tensor((hidden * self.eps) ** 0.5, device=self.embed.device)
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        rotary = body.rotary_emb
        self.rope = {}
        for layer_type in set(config.layer_types):
            inv_freq = getattr(rotary, f"{layer_type}_inv_freq")
            scaling = getattr(rotary, f"{layer_type}_attention_scaling")
            cos, sin = _rope_tables(inv_freq.cpu(), scaling, max_len, self.dtype)
            sin[:, : self.head_dim // 2] *= -1  # see _swap_halves
            self.rope[layer_type] = (cos.to(self.embed.device), sin.to(self.embed.device))
        # one cache per layer, `[B, kv_heads, max_len, head_dim]` (a list: indexing a Python list costs no tensor op)
        shape = (batch, self.num_kv_heads, max_len, self.head_dim)
        self.keys = [torch.zeros(shape, dtype=self.dtype, device=self.embed.device) for _ in self.layers]
        self.values = [torch.zeros(shape, dtype=self.dtype, device=self.embed.device) for _ in self.layers]
        self.length = 0
        self._heads: dict[int, torch.Tensor] = {}

    @staticmethod
    def supports(model: Any) -> bool:
        """True for a plain transformers Gemma 3 causal LM (what `audiolm train` exports: LoRA merged). Models with
        adapters or other wrappers (their layers would not be plain Linear weights) and stand-ins are not."""
        body = getattr(model, "model", None)
        layers = getattr(body, "layers", None)
        if layers is None or not hasattr(body, "rotary_emb") or not hasattr(model.config, "layer_types"):
            return False
        if any("lora" in type(m).__name__.lower() for m in model.modules()):
            return False
        needed = ("q_proj", "k_proj", "v_proj", "o_proj", "q_norm", "k_norm")
        return all(isinstance(getattr(layer.self_attn, name, None), torch.nn.Module) for layer in layers
                   for name in needed)

    # -- prefill ------------------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def prefill(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Run the prompt `[B, P]` through the transformers model; fill the cache; returns the last hidden `[B, H]`."""
        if input_ids.shape[0] != self.batch:
            raise ValueError(f"the decoder was built for {self.batch} streams, got {input_ids.shape[0]}")
        if input_ids.shape[1] >= self.max_len:
            raise ValueError(f"the prompt ({input_ids.shape[1]} tokens) does not fit max_len={self.max_len}")
        out = self.model.model(input_ids=input_ids, use_cache=True)
        cache = out.past_key_values
        P = input_ids.shape[1]
        for i in range(len(self.layers)):
            keys, values = cache.layers[i].keys, cache.layers[i].values  # [B, kv_heads, P', D]
            n = keys.shape[2]  # sliding layers may keep only the window
            self.keys[i][:, :, P - n: P] = keys
            self.values[i][:, :, P - n: P] = values
        self.length = P
        return out.last_hidden_state[:, -1]

    # -- one step -----------------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def step(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Feed one token per stream `[B]`; returns the final-normed hidden state `[B, H]` of that position.

        A step is about 50 tensor operations per layer, the four matrix products included; on a CPU each costs a few
        microseconds of dispatch, so the code below is written to dispatch few (see `_rms_norm`).
        """
        pos = self.length
        if pos >= self.max_len:
            raise ValueError(f"the static cache is full ({self.max_len} positions)")
        B, nh, nkv, hd = self.batch, self.num_heads, self.num_kv_heads, self.head_dim
        groups = nh // nkv
        rope = {name: (cos[pos], sin[pos]) for name, (cos, sin) in self.rope.items()}
        x = F.embedding(token_ids, self.embed) * self.embed_scale  # [B, H]
        h = _rms_norm(x, self.layers[0].input_norm, self.layers[0].floor)
        for i, layer in enumerate(self.layers):
            qkv = layer.qkv(h)  # [B, (nh + 2 nkv) * hd]
            qk = qkv[:, : layer.q_out + layer.kv_out].view(B, nh + nkv, hd)
            v = qkv[:, layer.q_out + layer.kv_out:].view(B, nkv, hd)
            qk = _rms_norm(qk, layer.qk_norm, layer.head_floor)  # q also carries the attention's scaling
            cos, sin = rope[layer.layer_type]
            qk = torch.addcmul(qk * cos, _swap_halves(qk), sin)
            keys, values = self.keys[i], self.values[i]  # [B, nkv, max_len, hd]
            keys.select(2, pos).copy_(qk[:, nh:])
            values.select(2, pos).copy_(v)
            start = 0 if layer.sliding_window is None else max(0, pos + 1 - layer.sliding_window)
            keys = keys.narrow(2, start, pos + 1 - start).view(B * nkv, pos + 1 - start, hd)
            values = values.narrow(2, start, pos + 1 - start).view(B * nkv, pos + 1 - start, hd)
            # [B nkv, groups, hd] x [B nkv, hd, T] -> [B nkv, groups, T]
            scores = torch.bmm(qk[:, :nh].reshape(B * nkv, groups, hd), keys.transpose(1, 2))
            if scores.dtype == torch.float32:
                weights = torch.softmax(scores, dim=-1)
            else:
                weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(scores.dtype)
            attn = torch.bmm(weights, values).view(B, nh * hd)
            x = _add_rms_norm(x, layer.o(attn), layer.post_attn_norm, layer.floor)
            gate_up = layer.gate_up(_rms_norm(x, layer.pre_ff_norm, layer.floor))
            h = F.gelu(gate_up[:, : layer.inter], approximate="tanh") * gate_up[:, layer.inter:]
            x = _add_rms_norm(x, layer.down(h), layer.post_ff_norm, layer.floor)
            following = self.layers[i + 1] if i + 1 < len(self.layers) else None
            h = _rms_norm(x, following.input_norm if following else self.final_norm,
                          following.floor if following else self.final_floor)
        self.length = pos + 1
        return h

    # -- head ---------------------------------------------------------------------------------------------------------
    def head_rows(self, key: int, rows: torch.Tensor) -> torch.Tensor:
        """The head matrix `[N, H]` of `rows`, gathered once per `key` (e.g. the codebook)."""
        matrix = self._heads.get(key)
        if matrix is None:
            matrix = self._heads[key] = self.head[rows].contiguous()
        return matrix

    def logits(self, hidden: torch.Tensor, key: int, rows: torch.Tensor) -> torch.Tensor:
        """Logits `[B, N]` over `rows` (equal to the full head's logits at those ids, soft-capping included)."""
        logits = F.linear(hidden, self.head_rows(key, rows))
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    # -- greedy loop ----------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, input_ids: torch.Tensor, rows: Sequence[torch.Tensor], key_of_step: Callable[[int], int],
                 num_tokens: int, pick: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Generate `num_tokens` tokens after `input_ids` `[B, P]`; returns their ids `[B, num_tokens]`.

        Args:
            input_ids: the prompt, one row per stream.
            rows: per key, the ids `[N_k]` a step with that key may emit.
            key_of_step: step index (0 = the first generated token) -> which `rows` apply.
            num_tokens: tokens to generate.
            pick: logits `[B, N]` -> chosen columns `[B]` (default: argmax, greedy).
        """
        pick = pick or (lambda logits: logits.argmax(-1))
        if input_ids.shape[1] + num_tokens > self.max_len:
            raise ValueError(f"{input_ids.shape[1]} + {num_tokens} tokens exceed max_len={self.max_len}")
        out = torch.empty(self.batch, num_tokens, dtype=torch.long, device=self.embed.device)
        hidden = self.prefill(input_ids)
        for i in range(num_tokens):
            key = key_of_step(i)
            token = rows[key][pick(self.logits(hidden, key, rows[key]))]
            out[:, i] = token
            if i + 1 < num_tokens:
                hidden = self.step(token)
        return out
