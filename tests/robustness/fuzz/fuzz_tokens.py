"""atheris harness for the token-sequence decoders: vocabulary (ids/strings -> codes), flatten/delay patterns
(ids -> codes, strict and `repair="truncate"`), and the `audiolm detokenize` text parser.

Only `BridgeError` (a `CodecError`) may come out; whatever decodes must obey the patterns' exact-inverse properties.
Run: `python fuzz_tokens.py [libFuzzer flags] [CORPUS_DIR]`.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["audiolm.vocab", "audiolm.patterns", "audiolm.cli_tokens"]):
    from audiolm.cli_tokens import parse_tokens
    from audiolm.patterns import get_pattern
    from audiolm.vocab import AudioVocab

import torch

from audiolm.errors import BridgeError

INT64 = 1 << 63


def structured_ids(fdp: atheris.FuzzedDataProvider, vocab: AudioVocab, count: int) -> list[int]:
    """Mostly plausible ids (codes of some codebook, pads, markers), sometimes arbitrary 64-bit integers."""
    ids = []
    for _ in range(count):
        kind = fdp.ConsumeIntInRange(0, 9)
        if kind < 6:
            ids.append(vocab.audio_base + fdp.ConsumeIntInRange(0, vocab.num_code_tokens - 1))
        elif kind < 8:
            ids.append(vocab.pad_id)
        elif kind == 8:
            ids.append(fdp.PickValueInList([vocab.start_id, vocab.end_id, vocab.size, vocab.audio_base - 1, -1]))
        else:
            ids.append(fdp.ConsumeIntInRange(-INT64, INT64 - 1))
    return ids


def check_pattern(fdp: atheris.FuzzedDataProvider, vocab: AudioVocab) -> None:
    K = fdp.ConsumeIntInRange(1, vocab.num_codebooks)
    pattern = get_pattern(fdp.PickValueInList(["flatten", "delay"]), K)
    repair = fdp.PickValueInList([None, "truncate"])
    batch = fdp.ConsumeIntInRange(1, 2)
    length = fdp.ConsumeIntInRange(0, 64)
    ids = torch.tensor([structured_ids(fdp, vocab, length) for _ in range(batch)], dtype=torch.long)
    try:
        codes = pattern.ids_to_codes(ids, vocab, repair=repair)
    except BridgeError:
        assert repair is None, "repair='truncate' must always decode (possibly to zero frames)"
        return
    B, K_out, T = codes.shape
    assert (B, K_out) == (batch, K)
    assert T == 0 or (0 <= int(codes.min()) and int(codes.max()) < vocab.cardinality)
    again = pattern.codes_to_ids(codes, vocab)
    if repair is None:
        assert torch.equal(again, ids), "strict decoding is not the exact inverse of encoding"
    else:
        k, t = torch.meshgrid(torch.arange(K), torch.arange(T), indexing="ij")
        pos = pattern.position_of(k, t).reshape(-1)
        assert torch.equal(again[:, pos], ids[:, pos]), "truncate moved a code"
        if T:
            assert int(pos.max()) < ids.shape[1]


def check_text(fdp: atheris.FuzzedDataProvider, vocab: AudioVocab) -> None:
    if fdp.ConsumeBool():
        text = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 400))
    else:  # token strings and ids, with separators and junk mixed in
        parts = []
        for token_id in structured_ids(fdp, vocab, fdp.ConsumeIntInRange(0, 24)):
            as_string = vocab.audio_base <= token_id < vocab.size and fdp.ConsumeBool()
            parts.append(vocab.token_string(token_id) if as_string else str(token_id))
            parts.append(fdp.PickValueInList([" ", ",", "\n", "", " x ", "<|", "|>", "\u0663"]))
        text = "".join(parts)
    try:
        ids = parse_tokens(text, vocab)
    except BridgeError as error:
        assert str(error) and "\n" not in str(error), repr(str(error))
        return
    assert all(-INT64 <= i < INT64 for i in ids), "an id that no tensor can hold was accepted"
    torch.tensor(ids, dtype=torch.long)  # what `detokenize` does next
    if "<|" in text:
        assert all(vocab.audio_base <= i < vocab.size for i in ids)
        assert parse_tokens(vocab.ids_to_text(ids), vocab) == ids


def check_one(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    vocab = AudioVocab(
        audio_base=fdp.ConsumeIntInRange(0, 300),
        num_codebooks=fdp.ConsumeIntInRange(1, 6),
        cardinality=fdp.ConsumeIntInRange(1, 20),
    )
    if fdp.ConsumeBool():
        check_pattern(fdp, vocab)
    else:
        check_text(fdp, vocab)


def main() -> None:
    atheris.Setup(sys.argv, check_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
