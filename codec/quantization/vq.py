"""Residual vector quantiser (RVQ) as in EnCodec/SoundStream, written for this project.

Inference (`encode`/`decode`) reproduces Meta's EnCodec numerics exactly: the same distance expression and the same
summation order, so codes from Meta's checkpoints are bit-identical to the `encodec` package's. Training
(`forward`) updates each codebook by exponential moving averages (no gradient reaches the codebooks), initialises
them with k-means on the first batch, and replaces dead codes (EMA usage below a threshold) with random vectors of
the current batch. Under `torch.distributed` the statistics are all-reduced, so every rank keeps identical codebooks.

Buffer names (`inited`, `cluster_size`, `embed`, `embed_avg`) match Meta's checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce_(tensor: torch.Tensor) -> torch.Tensor:
    if _distributed():
        dist.all_reduce(tensor)
    return tensor


def _broadcast_(tensor: torch.Tensor) -> torch.Tensor:
    if _distributed():
        dist.broadcast(tensor, src=0)
    return tensor


def _sample_vectors(samples: torch.Tensor, num: int) -> torch.Tensor:
    """`num` rows of `samples` [N, D], without replacement when there are enough."""
    n = samples.shape[0]
    if n >= num:
        index = torch.randperm(n, device=samples.device)[:num]
    else:
        index = torch.randint(0, n, (num,), device=samples.device)
    return samples[index]


def kmeans(samples: torch.Tensor, num_clusters: int, iterations: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on `samples` [N, D]; returns centroids [num_clusters, D] and cluster sizes [num_clusters]."""
    centroids = _sample_vectors(samples, num_clusters)
    sizes = torch.zeros(num_clusters, device=samples.device)
    for _ in range(iterations):
        distances = torch.cdist(samples, centroids)  # [N, num_clusters]
        assignment = distances.argmin(dim=-1)
        sizes = torch.bincount(assignment, minlength=num_clusters).to(samples.dtype)
        sums = torch.zeros_like(centroids).index_add_(0, assignment, samples)
        empty = sizes == 0
        centroids = torch.where(empty[:, None], centroids, sums / sizes.clamp(min=1)[:, None])
    return centroids, sizes


class EuclideanCodebook(nn.Module):
    """One codebook of `codebook_size` vectors of `dim`, updated by EMA.

    Args:
        dim: vector dimension D.
        codebook_size: number of entries (1024 for EnCodec).
        decay: EMA decay of the usage counts and vector sums.
        epsilon: Laplace smoothing of the usage counts.
        kmeans_init: initialise from k-means on the first training batch (else uniform random).
        kmeans_iters: Lloyd iterations for that initialisation.
        threshold_ema_dead_code: entries whose EMA usage falls below this are replaced by batch vectors (0 = never).
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int = 1024,
        decay: float = 0.99,
        epsilon: float = 1e-5,
        kmeans_init: bool = True,
        kmeans_iters: int = 10,
        threshold_ema_dead_code: float = 2.0,
    ):
        super().__init__()
        self.dim = dim
        self.codebook_size = codebook_size
        self.decay = decay
        self.epsilon = epsilon
        self.kmeans_iters = kmeans_iters
        self.threshold_ema_dead_code = threshold_ema_dead_code
        embed = torch.zeros(codebook_size, dim)
        if not kmeans_init:
            embed = nn.init.kaiming_uniform_(torch.empty(codebook_size, dim))
        self.register_buffer("inited", torch.tensor([float(not kmeans_init)]))
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        self.register_buffer("embed", embed)
        self.register_buffer("embed_avg", embed.clone())

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """Nearest entry of each row of `x` [N, D] -> indices [N].

        Written exactly as Meta's EnCodec computes it (including the constant |x|^2 term, which changes float rounding
        and therefore near-ties), so that codes are bit-identical to theirs.
        """
        embed = self.embed.t()
        distance = -(x.pow(2).sum(1, keepdim=True) - 2 * x @ embed + embed.pow(2).sum(0, keepdim=True))
        return distance.max(dim=-1).indices

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """`x` [..., D] -> indices [...]."""
        shape = x.shape[:-1]
        return self.quantize(x.reshape(-1, self.dim)).view(*shape)

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """indices [...] -> vectors [..., D]."""
        return F.embedding(indices, self.embed)

    @torch.no_grad()
    def _init_from(self, x: torch.Tensor) -> None:
        centroids, sizes = kmeans(x, self.codebook_size, self.kmeans_iters)
        _broadcast_(centroids)
        _broadcast_(sizes)
        self.embed.copy_(centroids)
        self.embed_avg.copy_(centroids * sizes[:, None])  # keeps embed == embed_avg / cluster_size
        self.cluster_size.copy_(sizes)
        self.inited.fill_(1.0)

    @torch.no_grad()
    def _replace_dead_codes(self, x: torch.Tensor) -> int:
        if self.threshold_ema_dead_code <= 0:
            return 0
        dead = self.cluster_size < self.threshold_ema_dead_code
        _broadcast_(dead)
        num_dead = int(dead.sum())
        if num_dead == 0:
            return 0
        fresh = _broadcast_(_sample_vectors(x, self.codebook_size))
        self.embed.copy_(torch.where(dead[:, None], fresh, self.embed))
        # restart their statistics as a cluster centred on the new vector, with a count well above the threshold: a
        # restarted code gets a grace period (at decay 0.99, ~70 steps unused for the default threshold) instead of
        # being declared dead, and replaced, again at the very next step
        restart = max(1.0, 2.0 * self.threshold_ema_dead_code)
        self.embed_avg.copy_(torch.where(dead[:, None], fresh * restart, self.embed_avg))
        self.cluster_size.copy_(torch.where(dead, torch.full_like(self.cluster_size, restart), self.cluster_size))
        return num_dead

    @torch.no_grad()
    def update(self, x: torch.Tensor, indices: torch.Tensor) -> None:
        """EMA update from rows `x` [N, D] assigned to `indices` [N]."""
        onehot = F.one_hot(indices, self.codebook_size).to(x.dtype)  # [N, codebook_size]
        counts = _all_reduce_(onehot.sum(0))
        sums = _all_reduce_(onehot.t() @ x)  # [codebook_size, D]
        self.cluster_size.lerp_(counts, 1 - self.decay)
        self.embed_avg.lerp_(sums, 1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.epsilon) / (total + self.codebook_size * self.epsilon) * total
        self.embed.copy_(self.embed_avg / smoothed[:, None])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantise `x` [N, D] (updating the codebook when training) -> (indices [N], vectors [N, D])."""
        x = x.detach().float()
        if self.training and not bool(self.inited.item()):
            self._init_from(x)
        indices = self.quantize(x)
        vectors = self.decode(indices)  # before the update, as EnCodec does
        if self.training:
            # Not re-quantising against the updated codebook matters: restarted codes are vectors of this very batch,
            # so re-quantising would match the batch exactly and hand the next stage a zero residual; its codebook
            # then learns zeros and the deep codebooks die (seen in an early run of the default codec).
            self._replace_dead_codes(x)
            self.update(x, indices)
        return indices, vectors


@dataclass
class QuantizedResult:
    """The output of `ResidualVectorQuantizer.forward`.

    Args:
        quantized: `[B, D, T]` sum of the selected vectors, with straight-through gradients to the input.
        codes: `[B, K, T]` indices.
        commitment_loss: mean squared distance between each stage's input residual and its vector (scalar).
        usage: `[K]` fraction of each codebook's entries used in this batch.
    """

    quantized: torch.Tensor
    codes: torch.Tensor
    commitment_loss: torch.Tensor
    usage: torch.Tensor


class ResidualVectorQuantizer(nn.Module):
    """K codebooks applied in sequence, each quantising what the previous ones left.

    Args:
        dim: latent dimension D of the encoder output.
        num_codebooks: maximum number of codebooks K.
        codebook_size: entries per codebook.
        decay, epsilon, kmeans_init, kmeans_iters, threshold_ema_dead_code: see `EuclideanCodebook`.
    """

    def __init__(
        self,
        dim: int = 128,
        num_codebooks: int = 32,
        codebook_size: int = 1024,
        decay: float = 0.99,
        epsilon: float = 1e-5,
        kmeans_init: bool = True,
        kmeans_iters: int = 10,
        threshold_ema_dead_code: float = 2.0,
    ):
        super().__init__()
        self.dim = dim
        self.num_codebooks = num_codebooks
        self.codebook_size = codebook_size
        self.layers = nn.ModuleList(
            EuclideanCodebook(dim, codebook_size, decay, epsilon, kmeans_init, kmeans_iters, threshold_ema_dead_code)
            for _ in range(num_codebooks)
        )

    def _check(self, num_codebooks: int) -> None:
        if not 1 <= num_codebooks <= self.num_codebooks:
            raise ValueError(f"num_codebooks must be in 1..{self.num_codebooks}, got {num_codebooks}")

    @torch.no_grad()
    def encode(self, x: torch.Tensor, num_codebooks: int) -> torch.Tensor:
        """Latent `x` [B, D, T] -> codes [B, K, T] with K = num_codebooks."""
        self._check(num_codebooks)
        residual = x.transpose(1, 2)  # [B, T, D]
        codes = []
        for layer in self.layers[:num_codebooks]:
            indices = layer.encode(residual)
            residual = residual - layer.decode(indices)
            codes.append(indices)
        return torch.stack(codes, dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [B, K, T] -> latent [B, D, T] (sum of the K selected vectors, summed in codebook order)."""
        self._check(codes.shape[1])
        out = torch.tensor(0.0, device=codes.device)
        for k, layer in enumerate(self.layers[: codes.shape[1]]):
            out = out + layer.decode(codes[:, k])
        return out.transpose(1, 2)

    def forward(self, x: torch.Tensor, num_codebooks: int) -> QuantizedResult:
        """Training/eval pass over latent `x` [B, D, T] with `num_codebooks` stages (quantizer dropout picks it)."""
        self._check(num_codebooks)
        B, D, T = x.shape
        residual = x.transpose(1, 2).reshape(-1, D)  # [B*T, D]
        quantized = torch.zeros_like(residual)
        commitment = x.new_zeros(())
        codes, usage = [], []
        for layer in self.layers[:num_codebooks]:
            indices, vectors = layer(residual)
            commitment = commitment + F.mse_loss(residual, vectors)  # vectors carry no gradient (EMA codebooks)
            quantized = quantized + vectors
            residual = residual - vectors
            codes.append(indices)
            usage.append(torch.unique(indices).numel() / layer.codebook_size)
        codes_bkt = torch.stack(codes, dim=0).view(num_codebooks, B, T).transpose(0, 1)
        flat = x.transpose(1, 2).reshape(-1, D)
        quantized = flat + (quantized - flat).detach()  # one straight-through estimator for the whole stack
        return QuantizedResult(
            quantized=quantized.view(B, T, D).transpose(1, 2),
            codes=codes_bkt,
            commitment_loss=commitment / num_codebooks,
            usage=torch.tensor(usage),
        )

    def codebook_vectors(self) -> torch.Tensor:
        """All codebooks as one tensor [K, codebook_size, D] (used e.g. to initialise LM embeddings)."""
        return torch.stack([layer.embed for layer in self.layers])
