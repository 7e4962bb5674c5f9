"""Model extension, restricted heads (exactness and arithmetic) and bridge save/load, on a tiny Gemma 3."""

import pytest
import torch
import torch.nn.functional as F

from audiolm.errors import BridgeError
from audiolm.model import (
    BridgeConfig,
    audio_rows,
    codebook_rows,
    codec_codebooks,
    embedding_stats,
    extend_model,
    init_rows,
    load_bridge,
    read_bridge_config,
    restricted_forward,
    save_bridge,
)
from audiolm.patterns import get_pattern
from audiolm.vocab import AudioVocab


def test_extend_keeps_base_rows_ties_head_and_pads_to_64(tiny_gemma, tiny_vocab):
    before = tiny_gemma.get_input_embeddings().weight.detach().clone()
    ext = extend_model(tiny_gemma, tiny_vocab)
    emb = tiny_gemma.get_input_embeddings()
    assert ext.old_rows == 512 and ext.new_rows == emb.weight.shape[0] == 4672  # 512 + 4096 + 3 = 4611 -> 4672
    assert type(emb).__name__ == "Gemma3TextScaledWordEmbedding"  # Gemma's sqrt(hidden) input scale survives
    assert tiny_gemma.config.vocab_size == 4672
    assert torch.equal(emb.weight[:512], before)
    assert tiny_gemma.get_output_embeddings().weight.data_ptr() == emb.weight.data_ptr()
    mu, _ = embedding_stats(before)
    assert torch.allclose(emb.weight[tiny_vocab.size :], mu.float().expand(4672 - tiny_vocab.size, -1))


def test_text_logits_unchanged_by_extension(tiny_gemma, tiny_vocab):
    ids = torch.randint(0, 512, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = tiny_gemma(ids).logits
        extend_model(tiny_gemma, tiny_vocab)
        after = tiny_gemma(ids).logits
    assert after.shape[-1] == 4672
    torch.testing.assert_close(after[..., :512], before, rtol=0, atol=1e-5)


@pytest.mark.parametrize("init", ["mean", "normal", "codebook"])
def test_init_rows_match_text_statistics(tiny_vocab, init, fake_codec):
    torch.manual_seed(0)
    text = torch.randn(2000, 16) * torch.linspace(0.5, 2, 16) + 3
    mu, sigma = embedding_stats(text)
    rows = init_rows(tiny_vocab, mu, sigma, init=init, codebooks=codec_codebooks(fake_codec))
    assert rows.shape == (tiny_vocab.num_audio_tokens, 16)
    torch.testing.assert_close(rows.double().mean(0), mu, atol=0.15 * float(sigma.max()), rtol=0)
    spread = rows[: tiny_vocab.num_code_tokens].double().std(0) / sigma
    expected = 0.1 if init == "mean" else 1.0
    assert torch.all((spread > 0.5 * expected) & (spread < 1.5 * expected)), spread
    again = init_rows(tiny_vocab, mu, sigma, init=init, codebooks=codec_codebooks(fake_codec))
    assert torch.equal(rows, again)  # deterministic


def test_codebook_init_keeps_neighbouring_codes_close(tiny_vocab, fake_codec):
    mu, sigma = torch.zeros(32, dtype=torch.float64), torch.ones(32, dtype=torch.float64)
    rows = init_rows(tiny_vocab, mu, sigma, init="codebook", codebooks=fake_codec.codebook_vectors())
    book0 = rows[:1024]
    near = (book0[1:] - book0[:-1]).norm(dim=1).mean()
    far = (book0 - book0.roll(512, 0)).norm(dim=1).mean()
    assert near < 0.2 * far


def test_codebook_init_needs_codebooks(tiny_vocab):
    with pytest.raises(BridgeError, match="codebook vectors"):
        init_rows(tiny_vocab, torch.zeros(4), torch.ones(4), init="codebook")
    with pytest.raises(BridgeError, match="unknown init"):
        init_rows(tiny_vocab, torch.zeros(4), torch.ones(4), init="zeros")


@pytest.mark.parametrize("softcap", [None, 5.0])
def test_restricted_head_equals_full_head(tiny_vocab, softcap, gemma_factory):
    model = gemma_factory(softcap=softcap)
    extend_model(model, tiny_vocab)
    K, T = 3, 6
    pattern = get_pattern("flatten", K)
    codes = torch.randint(0, 1024, (2, K, T), generator=torch.Generator().manual_seed(3))
    audio = pattern.codes_to_ids(codes, tiny_vocab)
    ids = torch.cat([torch.full((2, 1), tiny_vocab.start_id), audio, torch.full((2, 1), tiny_vocab.end_id)], 1)
    with torch.no_grad():
        full = model(ids).logits  # [B, L, V]
        # one shared row set: every audio id
        rows = audio_rows(tiny_vocab)
        out = restricted_forward(model, ids, rows, labels=ids)
        torch.testing.assert_close(out.logits, full[..., rows], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            out.loss,
            F.cross_entropy(
                full[0:, :-1, rows].reshape(-1, len(rows)), (ids[:, 1:] - tiny_vocab.audio_base).reshape(-1)
            ),
        )
        # per position: the logits at position l predict audio token l (position 0 is <|audio_start|>)
        per_pos = codebook_rows(tiny_vocab, "flatten", K, ids.shape[1])
        out = restricted_forward(model, ids, per_pos, labels=ids)
        gathered = torch.gather(full, 2, per_pos.expand(2, -1, -1))
        torch.testing.assert_close(out.logits, gathered, rtol=1e-5, atol=1e-5)
        labels = ids.clone()
        labels[:, -1] = -100  # <|audio_end|> is among the specials anyway; ignored here to exercise -100
        target = (per_pos[None, :-1] == labels[:, 1:, None]).float().argmax(-1)
        target[:, -1] = -100
        expected = F.cross_entropy(gathered[:, :-1].reshape(-1, per_pos.shape[1]), target.reshape(-1))
        torch.testing.assert_close(restricted_forward(model, ids, per_pos, labels=labels).loss, expected)
    assert softcap is None or float(out.logits.abs().max()) <= softcap


def test_restricted_loss_refuses_labels_outside_rows(tiny_gemma, tiny_vocab):
    extend_model(tiny_gemma, tiny_vocab)
    ids = torch.tensor([[tiny_vocab.start_id, 5, 6]])
    with pytest.raises(ValueError, match="not among the rows"):
        restricted_forward(tiny_gemma, ids, audio_rows(tiny_vocab), labels=ids)


def test_one_codebook_head_does_a_fraction_of_the_full_heads_arithmetic(fake_codec, gemma_factory):
    """Counted, not timed (speed is `scripts/bench_lm.py`'s job): forward + backward with one codebook's rows does
    the body's work plus a 1,027-row head, the full head the body's plus all 33k rows'."""
    from torch.utils.flop_counter import FlopCounterMode

    vocab = AudioVocab.for_codec(fake_codec, 512)  # 32 codebooks: 33k rows, the head dominates a tiny body
    model = gemma_factory()
    extend_model(model, vocab)
    K = 8
    codes = torch.randint(0, 1024, (1, K, 16), generator=torch.Generator().manual_seed(0))
    ids = get_pattern("flatten", K).codes_to_ids(codes, vocab)
    rows = codebook_rows(vocab, "flatten", K, ids.shape[1] + 1)[1:]  # logits at l predict token l + 1

    def flops(step) -> int:
        with FlopCounterMode(display=False) as counter:
            step()
        model.zero_grad(set_to_none=True)
        return counter.get_total_flops()

    full = flops(lambda: model(ids, labels=ids).loss.backward())
    restricted = flops(lambda: restricted_forward(model, ids, rows, labels=ids).loss.backward())
    L, H, V, N = ids.shape[1], model.config.hidden_size, model.get_output_embeddings().weight.shape[0], rows.shape[1]
    # the head: forward, input gradient and weight gradient, each 2 L H x rows
    assert full - restricted == 3 * 2 * L * H * (V - N)
    assert full > 5 * restricted


def _bridge_config(codec, vocab):
    return BridgeConfig.for_codec(codec, vocab, bandwidth=3.0, pattern="delay", base_model="tiny")


def test_save_and_load_round_trip(tmp_path, tiny_gemma, tiny_tokenizer, tiny_vocab, fake_codec):
    extend_model(tiny_gemma, tiny_vocab)
    tiny_vocab.extend_tokenizer(tiny_tokenizer)
    config = _bridge_config(fake_codec, tiny_vocab)
    save_bridge(tmp_path / "run", tiny_gemma, tiny_tokenizer, config)
    bridge = load_bridge(tmp_path / "run", codec=fake_codec)
    assert bridge.config == config and bridge.config.num_codebooks == 4
    ids = torch.tensor([[3, tiny_vocab.start_id, 600, 2000]])
    with torch.no_grad():
        torch.testing.assert_close(bridge.model(ids).logits, tiny_gemma(ids).logits)
    assert bridge.tokenizer("<|a1_0002|>", add_special_tokens=False)["input_ids"] == [512 + 1024 + 2]
    emb = bridge.model.get_input_embeddings()
    assert bridge.model.get_output_embeddings().weight.data_ptr() == emb.weight.data_ptr()
    data = read_bridge_config(tmp_path / "run").to_json()
    assert data["token_ids"]["audio_start"] == tiny_vocab.start_id and data["codec_sha256"] == "f" * 64
    # without the tokenizer (faster start-up for audio-only generation) the audio prefix is the same
    lean = load_bridge(tmp_path / "run", codec=fake_codec, tokenizer=False)
    assert lean.tokenizer is None and lean.prefix() == bridge.prefix() == [tiny_tokenizer.bos_token_id]
    assert bridge.prefix("speech") == bridge.prefix() + tiny_tokenizer("speech", add_special_tokens=False)["input_ids"]
    with pytest.raises(BridgeError, match="needs the tokenizer"):
        lean.prefix("speech")


def test_load_with_other_codec_weights_is_a_clear_error(tmp_path, tiny_gemma, tiny_tokenizer, tiny_vocab, fake_codec):
    extend_model(tiny_gemma, tiny_vocab)
    tiny_vocab.extend_tokenizer(tiny_tokenizer)
    save_bridge(tmp_path, tiny_gemma, tiny_tokenizer, _bridge_config(fake_codec, tiny_vocab))
    with pytest.raises(BridgeError, match="trained on codes of fake_24khz \\(sha256 ffffffffffff\\)") as info:
        load_bridge(tmp_path, codec=type(fake_codec)(sha256="0" * 64))
    assert "\n" not in str(info.value)


def test_missing_bridge_json_is_a_clear_error(tmp_path):
    with pytest.raises(BridgeError, match="not a saved audio LM"):
        load_bridge(tmp_path)
