"""Patterns: exact layouts, exact inverses (property tests), explicit errors and the truncate repair."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from audiolm.errors import BridgeError
from audiolm.patterns import PAD, DelayPattern, FlattenPattern, get_pattern
from audiolm.vocab import AudioVocab

VOCAB = AudioVocab(audio_base=1000, num_codebooks=32)
BANDWIDTH_BOOKS = {1.5: 2, 3.0: 4, 6.0: 8, 12.0: 16, 24.0: 32}  # EnCodec 24 kHz


def random_codes(B, K, T, seed):
    return torch.randint(0, 1024, (B, K, T), generator=torch.Generator().manual_seed(seed))


def test_flatten_exact_layout():
    codes = torch.tensor([[[1, 2, 3], [4, 5, 6]]])  # [1, K=2, T=3]
    ids = FlattenPattern(2).codes_to_ids(codes, VOCAB)
    assert (ids - 1000).tolist() == [[1, 1024 + 4, 2, 1024 + 5, 3, 1024 + 6]]


def test_delay_exact_layout():
    codes = torch.tensor([[[1, 2], [3, 4], [5, 6]]])  # [1, K=3, T=2]
    ids = DelayPattern(3).codes_to_ids(codes, VOCAB)
    p = VOCAB.pad_id
    a, b, c = 1000, 1000 + 1024, 1000 + 2048
    # step s holds (k=0, t=s), (k=1, t=s-1), (k=2, t=s-2)
    assert ids.tolist() == [[a + 1, p, p, a + 2, b + 3, p, p, b + 4, c + 5, p, p, c + 6]]
    assert DelayPattern(3).layout(2).tolist() == [0, PAD, PAD, 0, 1, PAD, PAD, 1, 2, PAD, PAD, 2]


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(["flatten", "delay"]),
    bandwidth=st.sampled_from(sorted(BANDWIDTH_BOOKS)),
    T=st.integers(0, 12),
    B=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_round_trip_over_bandwidths(name, bandwidth, T, B, seed):
    K = BANDWIDTH_BOOKS[bandwidth]
    pattern = get_pattern(name, K)
    codes = random_codes(B, K, T, seed)
    ids = pattern.codes_to_ids(codes, VOCAB)
    assert ids.shape == (B, pattern.sequence_length(T))
    assert pattern.num_frames(ids.shape[1]) == T
    assert torch.equal(pattern.ids_to_codes(ids, VOCAB), codes)
    layout = pattern.layout(T)
    assert layout.tolist() == [pattern.codebook_at(p, T) for p in range(len(layout))]
    for p in range(ids.shape[1]):
        assert int(ids[0, p]) in pattern.allowed_ids(p, VOCAB, T)


@settings(max_examples=80, deadline=None)
@given(name=st.sampled_from(["flatten", "delay"]), K=st.integers(1, 6), T=st.integers(1, 8), cut=st.integers(0, 80))
def test_truncate_repair_keeps_exactly_the_complete_frames(name, K, T, cut):
    pattern = get_pattern(name, K)
    codes = random_codes(1, K, T, seed=K * 100 + T)
    ids = pattern.codes_to_ids(codes, VOCAB)
    n = min(cut, ids.shape[1])
    if name == "flatten":
        expected = n // K
    else:
        expected = min(T, max(0, n // K - K + 1))  # frame t is complete once step t + K - 1 is
    repaired = pattern.ids_to_codes(ids[:, :n], VOCAB, repair="truncate")
    assert torch.equal(repaired, codes[..., :expected])
    if n < ids.shape[1] and pattern.num_frames(n) is None:
        with pytest.raises(BridgeError, match="truncated mid-frame"):
            pattern.ids_to_codes(ids[:, :n], VOCAB)


@pytest.mark.parametrize("name", ["flatten", "delay"])
def test_wrong_codebook_is_an_error_naming_the_position(name):
    pattern = get_pattern(name, 3)
    codes = random_codes(1, 3, 4, seed=1)
    ids = pattern.codes_to_ids(codes, VOCAB)
    position = 7  # codebook 1 in both layouts
    assert pattern.codebook_at(position) == 1
    ids[0, position] = VOCAB.codebook_ids(2)[0]
    with pytest.raises(
        BridgeError, match=f"position {position} holds <\\|a2_0000\\|> but {name} puts a code of codebook 1"
    ):
        pattern.ids_to_codes(ids, VOCAB)
    repaired = pattern.ids_to_codes(ids, VOCAB, repair="truncate")
    frames_before = 2 if name == "flatten" else 0  # delay: frame 0's last token (position 8) comes after position 7
    assert torch.equal(repaired, codes[..., :frames_before])


def test_delay_pad_in_the_wrong_place_and_text_tokens_are_errors():
    pattern = DelayPattern(2)
    ids = pattern.codes_to_ids(random_codes(1, 2, 3, seed=2), VOCAB)
    bad = ids.clone()
    bad[0, 1] = VOCAB.codebook_ids(1)[5]  # position 1 must be a pad
    with pytest.raises(BridgeError, match="position 1 holds <\\|a1_0005\\|> but delay puts <\\|audio_pad\\|>"):
        pattern.ids_to_codes(bad, VOCAB)
    bad = ids.clone()
    bad[0, 2] = 7
    with pytest.raises(BridgeError, match="a text token"):
        pattern.ids_to_codes(bad, VOCAB)


def test_codebook_at_while_generating():
    delay = DelayPattern(3)
    assert [delay.codebook_at(p) for p in range(9)] == [0, PAD, PAD, 0, 1, PAD, 0, 1, 2]
    assert delay.codebook_at(9 * 3 + 2, num_frames=3) == PAD  # step 9 would hold frame 7 of codebook 2: past the end
    assert list(delay.allowed_ids(1, VOCAB)) == [VOCAB.pad_id]
    assert FlattenPattern(4).codebook_at(4 * 1000 + 3) == 3


def test_unknown_pattern_and_repair():
    with pytest.raises(BridgeError, match="unknown pattern"):
        get_pattern("parallel", 2)
    with pytest.raises(BridgeError, match="unknown repair"):
        FlattenPattern(2).ids_to_codes(torch.zeros(1, 2).long(), VOCAB, repair="shift")
