import torch

from codec.quantization import ResidualVectorQuantizer
from codec.quantization.vq import EuclideanCodebook, kmeans


def _trained_rvq(num_codebooks=4, dim=8, size=32, steps=5, seed=0):
    torch.manual_seed(seed)
    rvq = ResidualVectorQuantizer(dim, num_codebooks, size, threshold_ema_dead_code=0)
    data = torch.randn(4, dim, 200)
    rvq.train()
    for _ in range(steps):
        rvq(data, num_codebooks)
    return rvq.eval(), data


def test_codes_are_nearest_neighbours():
    torch.manual_seed(1)
    book = EuclideanCodebook(6, 50, kmeans_init=False)
    x = torch.randn(300, 6)
    expected = torch.cdist(x, book.embed).argmin(dim=-1)
    assert torch.equal(book.encode(x), expected)


def test_encode_decode_shapes_and_error_falls_with_more_codebooks():
    rvq, data = _trained_rvq()
    errors = []
    for k in range(1, 5):
        codes = rvq.encode(data, k)
        assert codes.shape == (4, k, 200) and codes.dtype == torch.long
        assert int(codes.min()) >= 0 and int(codes.max()) < 32
        errors.append((rvq.decode(codes) - data).pow(2).mean().item())
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False)), errors


def test_forward_matches_encode_decode_in_eval():
    rvq, data = _trained_rvq()
    out = rvq(data, 3)
    assert torch.equal(out.codes, rvq.encode(data, 3))
    assert torch.allclose(out.quantized, rvq.decode(out.codes), atol=1e-5)


def test_kmeans_init_and_ema_invariant():
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(4, 2, 16)
    assert rvq.layers[0].inited.item() == 0
    rvq.train()
    rvq(torch.randn(2, 4, 100), 2)
    for layer in rvq.layers:
        assert layer.inited.item() == 1
        total = layer.cluster_size.sum()
        smoothed = (layer.cluster_size + layer.epsilon) / (total + 16 * layer.epsilon) * total
        assert torch.allclose(layer.embed, layer.embed_avg / smoothed[:, None], atol=1e-5)


def test_dead_codes_are_replaced_by_batch_vectors():
    torch.manual_seed(0)
    book = EuclideanCodebook(3, 8, kmeans_init=False, threshold_ema_dead_code=1.0)
    book.embed.fill_(100.0)  # far from the data: every entry is dead
    book.train()
    x = torch.randn(64, 3)
    book(x)
    assert book.embed.abs().max() < 10  # all replaced by (EMA-updated) vectors of the batch


def test_straight_through_gradient_is_identity():
    rvq, data = _trained_rvq()
    rvq.train()
    x = data.clone().requires_grad_(True)
    out = rvq(x, 4)
    out.quantized.sum().backward()
    assert torch.allclose(x.grad, torch.ones_like(x))
    assert out.commitment_loss.item() > 0


def test_kmeans_finds_separated_clusters():
    torch.manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    samples = torch.cat([c + 0.1 * torch.randn(50, 2) for c in centres])
    found, sizes = kmeans(samples, 3, iterations=20)
    assert sorted(sizes.tolist()) == [50.0, 50.0, 50.0]
    assert torch.cdist(centres, found).min(dim=1).values.max() < 0.1


def test_training_pass_does_not_zero_the_next_stage():
    """Dead codes are restarted from batch vectors; the stage must still pass on the residual of its codes from
    before the restart, or the next stage sees zeros and learns a dead codebook."""
    torch.manual_seed(0)
    # more codes than vectors per batch and EnCodec's threshold: nearly every code is restarted at every step
    rvq = ResidualVectorQuantizer(8, 3, 1024, kmeans_init=False, threshold_ema_dead_code=2.0)
    rvq.train()
    for _ in range(5):
        rvq(torch.randn(2, 8, 100), 3)
    deep = rvq.layers[2].embed
    assert deep.pow(2).mean().sqrt() > 0.1  # learnt from a non-zero residual
    assert (rvq.layers[0].cluster_size >= 0.5).all()  # restarted codes got a grace period, not a second death
