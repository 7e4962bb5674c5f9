"""Block-skipping attention: the key spans it keeps, and the same outputs and gradients as transformers' sdpa."""

import copy

import pytest
import torch

import audiolm.attention as attention
from audiolm.attention import NAME, key_spans, use_blocked_attention
from audiolm.train import AudioLM
from audiolm.vocab import AudioVocab


def band(length: int, window: int | None) -> torch.Tensor:
    i = torch.arange(length)
    mask = i[None, :] <= i[:, None]
    return mask & (i[:, None] - i[None, :] < window) if window else mask


def test_key_spans_keep_only_the_keys_a_block_can_see():
    assert key_spans(band(10, 3), 4) == [(0, 4, 0, 4), (4, 8, 2, 8), (8, 10, 6, 10)]
    assert key_spans(band(10, None), 4) == [(0, 4, 0, 4), (4, 8, 0, 8), (8, 10, 0, 10)]
    mask = band(6, None)[None, None].repeat(2, 1, 1, 1)
    mask[0, :, 4:] = False  # rows that attend to nothing in one batch item; the other item still sees keys 0-5
    assert key_spans(mask, 2)[-1] == (4, 6, 0, 6)
    mask[1, :, 4:] = False  # now nobody in the block sees anything: every key is kept, as without blocks
    assert key_spans(mask, 2)[-1] == (4, 6, 0, 6)
    assert key_spans(torch.zeros(1, 1, 4, 4, dtype=torch.bool), 2) == [(0, 2, 0, 4), (2, 4, 0, 4)]


def gemma(seed: int = 0):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(seed)
    config = Gemma3TextConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=12,
                              layer_types=["sliding_attention", "full_attention"], max_position_embeddings=512,
                              attn_implementation="sdpa", pad_token_id=0)
    return Gemma3ForCausalLM(config).train()


@pytest.fixture
def spans(monkeypatch):
    """Blocks of 8 rows; records the spans of every blocked call."""
    monkeypatch.setattr(attention, "BLOCK", 8)
    seen = []
    real = attention.key_spans
    monkeypatch.setattr(attention, "key_spans", lambda mask, block: seen.append(real(mask, block)) or seen[-1])
    return seen


def forward_backward(model, ids, mask):
    model.zero_grad(set_to_none=True)
    logits = model(input_ids=ids, attention_mask=mask).logits
    keep = mask.bool() if mask is not None else torch.ones(ids.shape, dtype=torch.bool)
    (logits[keep].square().mean()).backward()
    return logits.detach()[keep], {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("padding", ["none", "ones", "right"])
def test_same_outputs_and_gradients_as_sdpa(spans, padding):
    reference = gemma()
    blocked = copy.deepcopy(reference)
    use_blocked_attention(blocked)
    assert blocked.config._attn_implementation == NAME and reference.config._attn_implementation == "sdpa"
    ids = torch.randint(1, 256, (2, 45), generator=torch.Generator().manual_seed(1))
    mask = {"none": None, "ones": torch.ones_like(ids), "right": (torch.arange(45) < torch.tensor([[45], [30]])).long()}
    mask = mask[padding]
    want_logits, want_grads = forward_backward(reference, ids, mask)
    assert not spans  # the reference never goes through the blocks
    got_logits, got_grads = forward_backward(blocked, ids, mask)
    torch.testing.assert_close(got_logits, want_logits, rtol=1e-5, atol=1e-5)
    for name, grad in want_grads.items():
        torch.testing.assert_close(got_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    # the sliding layer always has a mask; the global one only with padding (else the kernel's own `is_causal`)
    assert len(spans) == (2 if padding == "right" else 1)
    sliding = spans[0]
    assert [s[:2] for s in sliding] == [(q0, min(45, q0 + 8)) for q0 in range(0, 45, 8)]
    assert sliding[-1][2] == 40 - 11  # the sliding layer skips keys older than its window
    assert all(k1 == q1 for spans_of_layer in spans for _, q1, _, k1 in spans_of_layer)  # and the keys after a block
    if padding == "right":
        assert spans[1][-1][2] == 0


def test_short_inputs_and_other_implementations_are_left_alone(spans):
    model = gemma()
    use_blocked_attention(model)
    model(input_ids=torch.randint(1, 256, (1, 15)))  # under two blocks: transformers' sdpa
    assert not spans
    eager = gemma()
    eager.set_attn_implementation("eager")
    use_blocked_attention(eager)
    assert eager.config._attn_implementation == "eager"


def test_the_recipe_trains_with_it_and_saves_plain_checkpoints(tmp_path):
    model = gemma()
    AudioLM(model, AudioVocab(audio_base=256, num_codebooks=2), 2)
    assert model.config._attn_implementation == NAME
    model.save_pretrained(tmp_path)
    assert NAME not in (tmp_path / "config.json").read_text()


def test_a_recipe_step_on_padded_windows_matches_sdpa(spans):
    from audiolm.model import extend_model
    from audiolm.patterns import get_pattern
    from audiolm.train import audio_stream, collate, make_window

    vocab = AudioVocab(audio_base=256, num_codebooks=2)
    g = torch.Generator().manual_seed(2)
    pattern = get_pattern("flatten", 2)
    windows = [make_window([2], audio_stream(torch.randint(0, 1024, (2, t), generator=g), pattern, vocab), 0, 60,
                           vocab) for t in (40, 17)]  # 62 and 37 tokens: the second is padded
    batch = collate(windows)
    results = []
    for blocked in (False, True):
        model = gemma()
        extend_model(model, vocab)
        lm = AudioLM(model, vocab, 2)
        if not blocked:
            model.set_attn_implementation("sdpa")
        out = lm(batch.input_ids, batch.attention_mask, batch.books, batch.cols)
        out.loss.backward()
        results.append((out.loss.detach(), lm.audio_embed.grad, model.model.layers[0].self_attn.q_proj.weight.grad))
    assert len(spans) == 2  # the blocked step ran both layers in blocks (the padding gives the global layer a mask)
    for want, got in zip(*results, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
