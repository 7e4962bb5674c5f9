"""Constrained generation: always valid (even from an untrained model), stops only at frame boundaries, KV cache ==
full forward, greedy reproducible, and the CLI writes decodable files."""

from types import SimpleNamespace

import pytest
import torch

import audiolm.cli_tokens as cli_tokens
from audiolm.__main__ import main
from audiolm.generate import Sampling, generate_codes, output_paths, pick
from audiolm.model import BridgeConfig, extend_model, restricted_logits, save_bridge
from audiolm.patterns import get_pattern
from audiolm.vocab import AudioVocab
from codec.audio import load_for_model
from codec.errors import CodecError
from tests.audiolm.lm_helpers import periodic_codes, write_clip

K = 3


@pytest.fixture
def vocab():
    return AudioVocab(audio_base=512, num_codebooks=4)


@pytest.fixture
def untrained(gemma_factory, vocab):
    model = gemma_factory(seed=3)
    extend_model(model, vocab, init="normal")  # random rows: an unconstrained argmax lands anywhere
    return model


def check_valid(result, pattern, vocab, max_frames, prompt=None):
    for codes, ids in zip(result.codes, result.ids, strict=True):
        assert ids[-1] == vocab.end_id and int((ids == vocab.end_id).sum()) == 1
        assert torch.equal(pattern.ids_to_codes(ids[:-1], vocab)[0], codes)  # strict: complete, right codebooks
        assert 1 <= codes.shape[1] <= max_frames and codes.min() >= 0 and codes.max() < 1024
        if prompt is not None:
            assert torch.equal(codes[:, : prompt.shape[1]], prompt)


@pytest.mark.parametrize("pattern_name", ["flatten", "delay"])
@pytest.mark.parametrize("prompt_frames", [0, 2])
def test_untrained_model_still_gives_valid_sequences(untrained, vocab, pattern_name, prompt_frames):
    pattern = get_pattern(pattern_name, K)
    prompt = periodic_codes(prompt_frames, K) if prompt_frames else None
    sampling = Sampling(temperature=2.0, seed=prompt_frames)
    result = generate_codes(untrained, vocab, pattern, [2], 7, prompt, num_samples=4, sampling=sampling)
    check_valid(result, pattern, vocab, 7, prompt)
    # what an unconstrained sampler would have picked is mostly not even a code of the right codebook
    ids = torch.tensor([2, vocab.start_id, *result.ids[0][:-1].tolist()])
    with torch.no_grad():
        argmax = untrained(ids[None]).logits[0, :-1].argmax(-1)
    want = torch.tensor([pattern.codebook_at(p) for p in range(len(ids) - 1)])
    right = (vocab.codebook_of(argmax) == want) & (want >= 0)
    assert float(right.float().mean()) < 0.5


class StubLM:
    """A 'model' whose hidden state is always the same vector; the tied head strongly favours the id `favour`."""

    def __init__(self, vocab, favour=None, H=8):
        self.weight = torch.randn(vocab.padded_size(), H, generator=torch.Generator().manual_seed(0)) * 0.01
        self.h = torch.ones(H)
        if favour is not None:
            self.weight[favour] = 5.0
        self.config = SimpleNamespace(final_logit_softcapping=None)

    def get_input_embeddings(self):
        return SimpleNamespace(weight=self.weight)

    get_output_embeddings = get_input_embeddings

    def get_decoder(self):
        def body(input_ids, past_key_values=None, use_cache=True):
            return SimpleNamespace(last_hidden_state=self.h.expand(*input_ids.shape, -1), past_key_values=None)

        return body


@pytest.mark.parametrize("pattern_name", ["flatten", "delay"])
def test_stop_only_at_frame_boundaries_and_at_the_limit(vocab, pattern_name):
    pattern = get_pattern(pattern_name, K)
    stop = vocab.pad_id if pattern_name == "delay" else vocab.end_id
    prompt = periodic_codes(2, K)
    greedy = Sampling(temperature=0)
    eager = generate_codes(StubLM(vocab, favour=stop), vocab, pattern, [2], 20, prompt, 2, greedy)
    assert [c.shape[1] for c in eager.codes] == [3, 3]  # the first allowed boundary: after one new frame
    later = generate_codes(StubLM(vocab, favour=stop), vocab, pattern, [2], 20, prompt, 1, greedy, min_new_frames=4)
    assert later.codes[0].shape[1] == 6
    never = generate_codes(StubLM(vocab), vocab, pattern, [2], 9, prompt, 2, Sampling(temperature=1.0, seed=1))
    assert [c.shape[1] for c in never.codes] == [9, 9]  # forced to stop at the limit
    for result in (eager, later, never):
        check_valid(result, pattern, vocab, 20, prompt)


@pytest.mark.parametrize("pattern_name", ["flatten", "delay"])
def test_kv_cached_greedy_equals_full_forward_argmax(untrained, vocab, pattern_name):
    pattern = get_pattern(pattern_name, K)
    prompt = periodic_codes(2, K)
    result = generate_codes(untrained, vocab, pattern, [2], 6, prompt, 1, Sampling(temperature=0),
                            min_new_frames=99)  # no stop: every free position is a code
    stream = result.ids[0]
    ids = torch.tensor([2, vocab.start_id, *stream.tolist()])
    with torch.no_grad():
        hidden = untrained.model(input_ids=ids[None]).last_hidden_state[0]
    checked = 0
    for p in range(2 * K, len(stream) - 1):  # positions after the prompt, before the end
        k = pattern.codebook_at(p)
        frame = p // K - (k if pattern_name == "delay" else 0)
        if k < 0 or frame < 2 or frame >= 6:
            continue  # forced: pads, prompt codes, the tail
        logits = restricted_logits(untrained, hidden[p + 1][None, None], torch.tensor(vocab.codebook_ids(k)))[0, 0]
        assert int(stream[p]) == vocab.audio_base + k * 1024 + int(logits.argmax()), p
        checked += 1
    assert checked == 4 * K


def test_greedy_and_seeded_sampling_are_reproducible(untrained, vocab):
    pattern = get_pattern("flatten", K)

    def run(sampling, n=2):
        return generate_codes(untrained, vocab, pattern, [2], 6, None, n, sampling).codes

    a, b = run(Sampling(temperature=0)), run(Sampling(temperature=0, seed=7))
    assert all(torch.equal(x, y) for x, y in zip(a + b, a[:1] * 4, strict=True))  # greedy: one answer
    s1, s2 = run(Sampling(temperature=1.5, top_k=50, seed=1)), run(Sampling(temperature=1.5, top_k=50, seed=1))
    assert all(torch.equal(x, y) for x, y in zip(s1, s2, strict=True))
    s3 = run(Sampling(temperature=1.5, top_k=50, seed=2))
    assert not all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(s1, s3, strict=True))


def test_top_k_and_top_p_keep_the_right_tokens():
    logits = torch.tensor([[4.0, 3.0, 0.0, -1.0, float("-inf")]])
    g = torch.Generator().manual_seed(0)
    picks = {int(pick(logits, Sampling(top_k=2), g)) for _ in range(200)}
    assert picks == {0, 1}
    assert {int(pick(logits, Sampling(top_p=0.5), g)) for _ in range(100)} == {0}  # p(0) = 0.70 > 0.5
    assert int(pick(logits, Sampling(temperature=0), None)) == 0
    assert [p.name for p in output_paths("x/out.wav", 2)] == ["out_0.wav", "out_1.wav"]


@pytest.fixture
def run_dir(tmp_path, gemma_factory, tokenizer_factory, fake_codec):
    vocab = AudioVocab.for_codec(fake_codec, 512)
    model, tok = gemma_factory(seed=1), tokenizer_factory()
    extend_model(model, vocab)
    vocab.extend_tokenizer(tok)
    config = BridgeConfig.for_codec(fake_codec, vocab, 3.0, "delay", base_model="tiny")
    config.extra = {"train": {"text_conditioning": False, "seq_len": 64}}
    return save_bridge(tmp_path / "run", model, tok, config)


def test_cli_generate_continues_the_prompt(tmp_path, run_dir, fake_codec, monkeypatch, capsys):
    monkeypatch.setattr(cli_tokens, "load_codec_by_name", lambda name: fake_codec)
    prompt = periodic_codes(6, 4)
    wav = write_clip(tmp_path / "prompt.wav", prompt, fake_codec)
    out = tmp_path / "gen.wav"
    argv = ["generate", str(run_dir), "--prompt", str(wav), "--seconds", "0.1", "--out", str(out),
            "--num-samples", "2", "--temperature", "0", "--quiet"]
    assert main(argv) == 0
    assert capsys.readouterr().out.count("6 from the prompt") == 2
    codes = [fake_codec.encode(load_for_model(p, 24000, 1)[0], 3.0).codes[0] for p in output_paths(out, 2)]
    assert torch.equal(codes[0], codes[1]) and torch.equal(codes[0][:, :6], prompt)
    assert 7 <= codes[0].shape[1] <= 6 + 8  # 0.1 s = 8 frames at most
    assert main(argv) == 1 and "already exists" in capsys.readouterr().err
    assert main([*argv, "--force", "--text", "w5"]) == 1
    assert "trained without text conditioning" in capsys.readouterr().err
    other = type(fake_codec)(sha256="0" * 64)
    monkeypatch.setattr(cli_tokens, "load_codec_by_name", lambda name: other)
    assert main([*argv, "--force"]) == 1
    err = capsys.readouterr().err
    assert "its codes would be noise" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("pattern_name", ["flatten", "delay"])
@pytest.mark.parametrize("sampling", [Sampling(temperature=0), Sampling(temperature=1.3, top_k=40, top_p=0.95, seed=5)])
def test_fast_engine_gives_the_same_tokens_as_transformers(untrained, vocab, pattern_name, sampling):
    from audiolm.fastgen import FastDecoder

    assert FastDecoder.supports(untrained) and not FastDecoder.supports(StubLM(vocab))
    pattern = get_pattern(pattern_name, K)
    prompt = periodic_codes(3, K)
    # 20 frames x 3 codebooks run well past the tiny model's sliding window (32 positions)
    runs = [generate_codes(untrained, vocab, pattern, [2], 20, prompt, 3, sampling, min_new_frames=12, engine=e)
            for e in ("fast", "transformers")]
    for fast, slow in zip(runs[0].ids, runs[1].ids, strict=True):
        assert torch.equal(fast, slow)
    assert max(ids.numel() for ids in runs[0].ids) > 32
    check_valid(runs[0], pattern, vocab, 20, prompt)


def test_engine_choice_is_checked(untrained, vocab):
    pattern = get_pattern("flatten", K)
    with pytest.raises(CodecError, match="needs a plain Gemma 3"):
        generate_codes(StubLM(vocab), vocab, pattern, [2], 4, None, 1, Sampling(temperature=0), engine="fast")
    with pytest.raises(CodecError, match="unknown engine"):
        generate_codes(untrained, vocab, pattern, [2], 4, None, 1, Sampling(temperature=0), engine="warp")
    auto = generate_codes(StubLM(vocab), vocab, pattern, [2], 4, None, 1, Sampling(temperature=0))  # falls back
    check_valid(auto, pattern, vocab, 4)


def test_fast_rms_norm_matches_transformers_and_the_swap_is_exact():
    """FastDecoder's four-op RMS norm equals transformers' Gemma3RMSNorm up to float rounding, also when its sum is
    fused with the residual's; its halves swap with a sign-folded sine gives transformers' `rotate_half` bits."""
    from transformers.models.gemma3.modeling_gemma3 import Gemma3RMSNorm, rotate_half

    from audiolm.fastgen import _add_rms_norm, _rms_norm, _swap_halves

    g = torch.Generator().manual_seed(0)
    n, eps = 64, 1e-6
    norm = Gemma3RMSNorm(n, eps=eps)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(n, generator=g) * 0.1)
    weight, floor = (1.0 + norm.weight.detach()) * n**0.5, torch.tensor((n * eps) ** 0.5)
    for shape in [(1, n), (8, n), (3, 5, n)]:
        for scale in (7.0, 1e-4):  # 1e-4: mean(x^2) near eps, where the eps term matters
            x = torch.randn(*shape, generator=g) * scale
            expected = norm(x).detach()
            torch.testing.assert_close(_rms_norm(x, weight, floor), expected, rtol=2e-6, atol=0)
            stacked = weight.expand(shape[-2] if len(shape) > 2 else 1, -1)
            torch.testing.assert_close(_rms_norm(x, stacked, floor), expected, rtol=2e-6, atol=0)
            residual = torch.randn(*shape, generator=g)
            torch.testing.assert_close(_add_rms_norm(residual, x, weight, floor), residual + expected,
                                       rtol=2e-6, atol=1e-6)
            bf16 = _rms_norm(x.bfloat16(), weight, floor)
            assert bf16.dtype == torch.bfloat16  # within one bf16 rounding step
            torch.testing.assert_close(bf16.float(), norm(x.bfloat16()).detach().float(), rtol=8e-3, atol=0)
        sin = torch.randn(n, generator=g)
        signed = sin.clone()
        signed[: n // 2] *= -1
        assert torch.equal(_swap_halves(x) * signed, rotate_half(x) * sin)


def test_fast_decoder_prepares_weights_once_per_model_and_layout(untrained, vocab):
    """A second decoder on the same weights reuses the prepared layers; an in-place weight update (a training step)
    makes the next decoder prepare them again, so it never decodes with stale weights."""
    from audiolm.fastgen import FastDecoder

    first, again = FastDecoder(untrained, max_len=16, batch=1), FastDecoder(untrained, max_len=32, batch=1)
    assert again.layers is first.layers
    batched = FastDecoder(untrained, max_len=16, batch=2)  # another weight layout, prepared separately
    assert batched.layers is not first.layers and FastDecoder(untrained, max_len=8, batch=2).layers is batched.layers
    assert FastDecoder(untrained, max_len=16, batch=3).layers is not batched.layers  # packed for its own batch size
    with torch.no_grad():
        untrained.model.layers[0].mlp.down_proj.weight.mul_(2.0)
    updated = FastDecoder(untrained, max_len=16, batch=1)
    assert updated.layers is not first.layers
    ids = torch.tensor([[2, vocab.start_id, vocab.start_id + 1]])
    with torch.inference_mode():
        expected = untrained.model(input_ids=ids).last_hidden_state[:, -1]
    for decoder in (first, updated):
        decoder.prefill(ids[:, :2])
    torch.testing.assert_close(updated.step(ids[:, 2]), expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(first.step(ids[:, 2]), expected, rtol=1e-4, atol=1e-4)  # the stale one is off


@pytest.mark.parametrize("batch", [1, 2, 8])
def test_fast_projection_layouts_compute_the_linear_map(batch):
    """Each of `_Projection`'s layouts (transposed copy at B = 1, oneDNN-prepacked otherwise) is `F.linear` up to
    float rounding, for its own batch size and, prepacked, for another one too."""
    from audiolm.fastgen import _packed_products_available, _Projection

    g = torch.Generator().manual_seed(batch)
    weight = torch.randn(96, 40, generator=g)
    projection = _Projection(weight, batch)
    expected_mode = "vector" if batch == 1 else "packed" if _packed_products_available(torch.float32) else "matrix"
    assert projection.mode == expected_mode
    for rows in {batch, 3}:
        x = torch.randn(rows, 40, generator=g)
        torch.testing.assert_close(projection(x), torch.nn.functional.linear(x, weight), rtol=1e-5, atol=1e-5)


def test_one_stream_weights_live_in_one_aligned_buffer_in_step_order(untrained):
    """At B = 1 the layers' product weights are moved (same values) into one buffer, 4 kB-aligned pieces in the order
    a step reads them; the buffer is 2 MB-aligned (huge pages) on a CPU."""
    import sys

    from audiolm.fastgen import HUGE_PAGE, FastDecoder, _huge_page_buffer

    decoder = FastDecoder(untrained, max_len=8, batch=1)
    weights = [p.weight for layer in decoder.layers for p in (layer.qkv, layer.o, layer.gate_up, layer.down)]
    storages = {w.untyped_storage().data_ptr() for w in weights}
    assert len(storages) == 1
    pointers = [w.data_ptr() for w in weights]
    assert pointers == sorted(pointers) and all(p % 4096 == 0 for p in pointers)
    down = untrained.model.layers[1].mlp.down_proj.weight
    assert torch.equal(decoder.layers[1].down.weight, down.t())  # the `[in, out]` copy, values unchanged
    buffer = _huge_page_buffer(3 * HUGE_PAGE + 5, torch.device("cpu"))
    assert buffer.shape == (3 * HUGE_PAGE + 5,) and buffer.dtype == torch.uint8
    if sys.platform == "linux":
        assert buffer.data_ptr() % HUGE_PAGE == 0
    buffer.fill_(7)  # writable
    assert int(buffer[-1]) == 7
