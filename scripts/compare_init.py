"""Compare initialisations of the new audio embedding rows by the held-out loss after a short training run.

For each init in `audiolm.model.INITS`: load Gemma (optionally keeping only its first `--layers` layers, to fit a CPU
budget), extend it with the codec's audio vocabulary, train on flattened codes of the training clips with the
one-codebook restricted head for `--steps` steps, and report the held-out loss (nats per audio token, softmax over
the position's codebook rows plus the audio specials) before training and after. Everything but the init is
identical across runs (same seed, data, order).

    python scripts/compare_init.py samples/ --bandwidth 1.5 --steps 30 --layers 4 --json reports/compare_init.json

The codec comes from `codec.load_codec(--codec)`. Until trained codec weights exist, `--kmeans-codec` stands in: a
residual k-means quantiser of log-mel frames (75 frames/s, 1024 codes per stage) fitted on the clips themselves, whose
codes and codebooks have the same residual structure as EnCodec's (an untrained neural codec emits near-constant
codes, which makes every init look alike).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from audiolm.gemma import load_gemma
from audiolm.model import INITS, codebook_rows, codec_codebooks, extend_model, restricted_forward
from audiolm.patterns import get_pattern
from audiolm.vocab import AudioVocab
from codec.audio import load_for_model


class KMeansCodec:
    """Residual k-means over log-mel frames: a stand-in tokenizer with codes `[B, K, T]` and codebooks `[K, 1024, D]`.

    Args:
        files: clips to fit the codebooks on.
        num_codebooks: residual stages K.
        iterations: k-means (Lloyd) iterations per stage.
    """

    sample_rate, channels, frame_rate, cardinality = 24000, 1, 75.0, 1024

    def __init__(self, files: list[Path], num_codebooks: int = 2, iterations: int = 15):
        from codec.interface import WeightsInfo

        self.max_codebooks = num_codebooks
        self.weights = WeightsInfo(name=f"kmeans-logmel-{num_codebooks}x1024", sha256="0" * 64)
        feats = torch.cat([self.features(load_for_model(f, 24000, 1)[0]) for f in files])  # [N, D]
        gen = torch.Generator().manual_seed(0)
        self.books = []
        residual = feats
        for _ in range(num_codebooks):
            centroids = residual[torch.randperm(len(residual), generator=gen)[: self.cardinality]].clone()
            for _ in range(iterations):
                assign = torch.cdist(residual, centroids).argmin(1)
                sums = torch.zeros_like(centroids).index_add_(0, assign, residual)
                counts = torch.bincount(assign, minlength=self.cardinality)[:, None]
                centroids = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)
            self.books.append(centroids)
            residual = residual - centroids[torch.cdist(residual, centroids).argmin(1)]

    @staticmethod
    def features(wav: torch.Tensor) -> torch.Tensor:
        import torchaudio

        mel = torchaudio.transforms.MelSpectrogram(24000, n_fft=1280, hop_length=320, n_mels=64)(wav[0, 0])
        return (mel + 1e-5).log().T  # [T, 64]

    def codebooks_for(self, bandwidth: float) -> int:
        return self.max_codebooks

    def encode(self, wav: torch.Tensor, bandwidth: float):
        from codec.interface import EncodedAudio

        residual, codes = self.features(wav), []
        for book in self.books:
            c = torch.cdist(residual, book).argmin(1)
            codes.append(c)
            residual = residual - book[c]
        return EncodedAudio(codes=torch.stack(codes)[None], length=wav.shape[-1])

    def codebook_vectors(self) -> torch.Tensor:
        return torch.stack(self.books)


def get_codec(name: str | None, kmeans_files: list[Path] | None):
    if kmeans_files:
        return KMeansCodec(kmeans_files)
    from codec import load_codec

    return load_codec(name)


def token_windows(ids: torch.Tensor, length: int) -> list[torch.Tensor]:
    """Non-overlapping windows of `length` tokens (whole frames) of a flat sequence `[L]`."""
    return [ids[i : i + length] for i in range(0, ids.shape[0] - length + 1, length)]


def held_loss(model, ids: torch.Tensor, rows: torch.Tensor) -> float:
    """Mean restricted-head loss (nats per audio token) of held-out sequences `[N, L]`."""
    model.eval()
    with torch.no_grad():
        return float(restricted_forward(model, ids, rows, labels=ids).loss)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("audio", help="directory of clips; the last one (sorted) is held out")
    p.add_argument("--bandwidth", type=float, default=1.5)
    p.add_argument("--codec", default=None)
    p.add_argument("--kmeans-codec", action="store_true", help="use the k-means stand-in (see the docstring)")
    p.add_argument("--gemma", default=None)
    p.add_argument("--layers", type=int, default=None, help="keep only the first N transformer layers")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--seq-len", type=int, default=256, help="audio tokens per training sequence")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--held-out", type=int, default=4, help="held-out sequences to evaluate")
    p.add_argument("--inits", default=",".join(INITS))
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    files = sorted(f for f in Path(args.audio).iterdir() if f.suffix in (".wav", ".flac", ".ogg", ".mp3"))
    codec = get_codec(args.codec, files[:-1] if args.kmeans_codec else None)
    K = codec.codebooks_for(args.bandwidth)
    pattern = get_pattern("flatten", K)
    streams = []
    with torch.no_grad():
        for f in files:
            wav, _ = load_for_model(f, codec.sample_rate, codec.channels)
            codes = codec.encode(wav, args.bandwidth).codes
            streams.append(codes)
    seq_len = args.seq_len - args.seq_len % K
    base = AudioVocab.for_codec(codec, 0)
    train = [w for c in streams[:-1] for w in token_windows(pattern.codes_to_ids(c, base)[0], seq_len)]
    held = token_windows(pattern.codes_to_ids(streams[-1], base)[0], seq_len)[: args.held_out]
    print(
        f"codec {codec.weights.name} ({codec.weights.sha256[:12]}), K={K}, {len(train)} train / {len(held)} "
        f"held-out sequences of {seq_len} tokens ({files[-1].name} held out)",
        file=sys.stderr,
    )

    results = {}
    for init in args.inits.split(","):
        g = load_gemma(args.gemma, log=False)
        model = g.model
        if args.layers:
            model.model.layers = model.model.layers[: args.layers]
            model.config.num_hidden_layers = args.layers
            model.config.layer_types = model.config.layer_types[: args.layers]
        vocab = AudioVocab.for_codec(codec, model.get_input_embeddings().weight.shape[0])
        extend_model(model, vocab, init=init, codebooks=codec_codebooks(codec) if init == "codebook" else None)
        shift = vocab.audio_base
        tr = [w + shift for w in train]
        ho = torch.stack([torch.cat([torch.tensor([vocab.start_id]), w + shift]) for w in held])
        # sequences are [start, a_0 .. a_{n-1}]: the logits at l predict a_l, whose ids are row l
        logit_rows = codebook_rows(vocab, "flatten", K, seq_len + 1)

        curve = [(0, held_loss(model, ho, logit_rows))]
        print(f"{init:9s} step    0 held-out {curve[0][1]:.3f}", file=sys.stderr)
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
        gen = torch.Generator().manual_seed(0)
        start = time.perf_counter()
        for step in range(1, args.steps + 1):
            model.train()
            x = tr[int(torch.randint(len(tr), (1,), generator=gen))]
            x = torch.cat([torch.tensor([vocab.start_id]), x])[None]
            loss = restricted_forward(model, x, logit_rows, labels=x).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if step % max(1, args.steps // 3) == 0 or step == args.steps:
                curve.append((step, held_loss(model, ho, logit_rows)))
                print(f"{init:9s} step {step:4d} train {loss.item():.3f} held-out {curve[-1][1]:.3f}", file=sys.stderr)
        results[init] = {"held_out_loss": curve, "seconds": round(time.perf_counter() - start, 1)}
        del model, g, opt

    print(f"{'init':10s} {'step 0':>8s} {'final':>8s}   (held-out nats/token, restricted head)")
    for init, r in results.items():
        print(f"{init:10s} {r['held_out_loss'][0][1]:8.3f} {r['held_out_loss'][-1][1]:8.3f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        meta = {k: v for k, v in vars(args).items()}
        meta.update(codec=codec.weights.name, codec_sha256=codec.weights.sha256, num_codebooks=K)
        Path(args.json).write_text(json.dumps({"args": meta, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
