"""AudioVocab: id arithmetic, token strings, JSON, and tokenizer extension."""

import pytest
import torch

from audiolm.errors import BridgeError
from audiolm.vocab import GEMMA3_VOCAB_SIZE, NOT_AUDIO, SPECIAL, AudioVocab
from codec.errors import CodecError


def test_gemma_layout_exact_ids(fake_codec):
    v = AudioVocab.for_codec(fake_codec, GEMMA3_VOCAB_SIZE)
    assert v.num_codebooks == 32 and v.cardinality == 1024
    assert v.codebook_ids(3)[517] == 262144 + 3 * 1024 + 517 == 265733
    assert v.token_string(265733) == "<|a3_0517|>"
    assert v.token_id("<|a3_0517|>") == 265733
    assert (v.start_id, v.end_id, v.pad_id) == (262144 + 32768, 262144 + 32769, 262144 + 32770)
    assert v.size == 294915 and v.padded_size() == 294976 and v.padded_size() % 64 == 0


def test_48khz_codec_gets_its_16_codebooks(fake_codec_48k):
    v = AudioVocab.for_codec(fake_codec_48k, GEMMA3_VOCAB_SIZE)
    assert v.num_codebooks == 16 and v.start_id == GEMMA3_VOCAB_SIZE + 16 * 1024


def test_every_token_string_round_trips(fake_codec):
    v = AudioVocab.for_codec(fake_codec, 100)
    tokens = v.tokens()
    assert len(tokens) == len(set(tokens)) == v.num_audio_tokens
    assert [v.token_id(t) for t in tokens] == list(v.audio_ids)


def test_codes_to_ids_and_back(tiny_vocab):
    codes = torch.tensor([[[0, 1023], [5, 6], [7, 8]]])  # [1, 3, 2]
    ids = tiny_vocab.codes_to_ids(codes)
    assert ids.tolist() == [[[512, 1535], [1541, 1542], [2567, 2568]]]
    assert tiny_vocab.codebook_of(ids).tolist() == [[[0, 0], [1, 1], [2, 2]]]
    assert torch.equal(tiny_vocab.ids_to_codes(ids, torch.arange(3)[:, None]), codes)


def test_codebook_of_specials_and_text(tiny_vocab):
    ids = torch.tensor([0, 511, 512, tiny_vocab.start_id, tiny_vocab.pad_id, tiny_vocab.size, 10**6])
    assert tiny_vocab.codebook_of(ids).tolist() == [NOT_AUDIO, NOT_AUDIO, 0, SPECIAL, SPECIAL, NOT_AUDIO, NOT_AUDIO]


def test_ids_to_codes_rejects_wrong_codebook(tiny_vocab):
    with pytest.raises(BridgeError, match="codebook 1 was expected"):
        tiny_vocab.ids_to_codes(torch.tensor([512]), 1)


@pytest.mark.parametrize("codes", [torch.tensor([[[1024]]]), torch.tensor([[[-1]]]), torch.zeros(1, 5, 2).long()])
def test_codes_to_ids_rejects_out_of_range(tiny_vocab, codes):
    with pytest.raises(BridgeError):
        tiny_vocab.codes_to_ids(codes)


def test_text_to_ids(tiny_vocab):
    text = "<|audio_start|><|a0_0001|>\n <|a3_1023|><|audio_end|>"
    assert tiny_vocab.text_to_ids(text) == [tiny_vocab.start_id, 513, 512 + 3 * 1024 + 1023, tiny_vocab.end_id]
    assert tiny_vocab.ids_to_text(tiny_vocab.text_to_ids(text)) == text.replace("\n ", "")


@pytest.mark.parametrize("bad", ["hello <|a0_0001|>", "<|a0_1|>", "<|a4_0000|>", "<|a0_1024|>", "<|a0_0001|> x"])
def test_text_to_ids_rejects_other_text(tiny_vocab, bad):
    with pytest.raises(BridgeError) as info:
        tiny_vocab.text_to_ids(bad)
    assert "\n" not in str(info.value) and isinstance(info.value, CodecError)


def test_json_round_trip(tiny_vocab, tmp_path):
    assert AudioVocab.from_json(tiny_vocab.to_json()) == tiny_vocab
    tiny_vocab.save(tmp_path / "v.json")
    assert AudioVocab.load(tmp_path / "v.json") == tiny_vocab
    with pytest.raises(BridgeError):
        AudioVocab.from_json({"audio_base": 3})


def test_specials_must_include_start_end_pad():
    with pytest.raises(BridgeError):
        AudioVocab(audio_base=0, num_codebooks=1, specials=("<|audio_start|>",))


def test_extend_tokenizer_maps_strings_to_exact_ids(tiny_vocab, tiny_tokenizer):
    tok = tiny_vocab.extend_tokenizer(tiny_tokenizer)
    assert len(tok) == tiny_vocab.size
    text = "w7 w9<|audio_start|><|a0_0005|><|a1_0000|><|a3_1023|><|audio_end|> w11"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids == [7, 9, tiny_vocab.start_id, 517, 1536, 512 + 4095, tiny_vocab.end_id, 11]
    decoded = tok.decode(ids)
    assert tok(decoded, add_special_tokens=False)["input_ids"] == ids
    assert tiny_vocab.extend_tokenizer(tok) is tok and len(tok) == tiny_vocab.size  # idempotent


def test_extend_tokenizer_fills_a_short_tokenizer(tiny_vocab, tokenizer_factory):
    tok = tiny_vocab.extend_tokenizer(tokenizer_factory(500))
    assert tok.convert_tokens_to_ids("<|a0_0000|>") == 512 and tok.convert_tokens_to_ids("<|audio_unused_0|>") == 500


def test_extend_tokenizer_rejects_a_long_tokenizer(tiny_tokenizer):
    with pytest.raises(BridgeError, match="tokenizer has 512 tokens"):
        AudioVocab(audio_base=400, num_codebooks=1).extend_tokenizer(tiny_tokenizer)
