"""The codec training loop: reads top to bottom, resumable, single process or `accelerate launch` on many GPUs.

One step: random crops [B, 1, S] -> codec with a random number of codebooks (quantizer dropout over the offered
bandwidths, so one model serves them all) -> reconstruction losses (time L1, multi-scale mel, compressed complex
spectrum) + (after `adv_start_step`) MS-STFT discriminator hinge + feature matching -> the balancer combines their
gradients at the output -> one Adam step; the discriminator takes its own step on the same batch.
"""

from __future__ import annotations

import csv
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from .. import metrics
from ..errors import CodecError
from ..models.framecodec import FrameCodecConfig, FrameSTFT, frame_codec
from . import losses as L
from .balancer import Balancer
from .checkpoint import load_verified, save_atomic
from .config import TrainConfig, lr_at
from .data import RandomCrops, fixed_validation_batch, list_corpus, load_clips
from .discriminator import MultiScaleSTFTDiscriminator

ARCHITECTURES = ("framecodec", "encodec_24khz")


def build_model(config: TrainConfig):
    """The generator named by `config.arch`, with fresh weights: the project's frame codec, or Meta's EnCodec 24 kHz
    architecture (SEANet + LSTM + RVQ, `encodec_trainable`)."""
    if config.arch == "framecodec":
        return frame_codec(FrameCodecConfig(**config.model))
    if config.arch == "encodec_24khz":
        if config.model:
            raise CodecError("encodec_24khz is Meta's fixed architecture: it takes no model overrides")
        from .encodec_trainable import trainable_encodec_24khz

        return trainable_encodec_24khz()
    raise CodecError(f"unknown architecture {config.arch!r}; known: {', '.join(ARCHITECTURES)}")


def hop_length(model) -> int:
    return model.config.hop_length if hasattr(model, "config") else model.hop_length


@dataclass
class TrainState:
    """What a checkpoint restores besides the weights."""

    step: int = 0
    elapsed: float = 0.0


class Trainer:
    """Args:
    config: the run's configuration (saved in every checkpoint).
    corpus: corpus folder / manifest (see `data.list_corpus`).
    run_dir: where checkpoints, `log.csv` and `valid.csv` go.
    device: 'cpu', 'cuda', or None for what accelerate picks.
    init_weights: optional weights file (safetensors export) to start from, e.g. the committed default codec.
    quiet: no progress bar.
    """

    def __init__(self, config: TrainConfig, corpus: str | Path, run_dir: str | Path, device: str | None = None,
                 init_weights: str | Path | None = None, quiet: bool = False):
        from accelerate import Accelerator

        self.config = config
        self.run_dir = Path(run_dir)
        self.quiet = quiet
        self.accelerator = Accelerator(cpu=device == "cpu")
        self.device = self.accelerator.device
        if self.device.type == "cuda":  # TF32 matmuls/convs and tuned conv kernels (crops have a fixed size)
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        self.model = build_model(config)
        self.state = TrainState()
        if init_weights:
            import json

            from ..models.weights import load_frame_codec_weights, read_metadata

            load_frame_codec_weights(self.model, init_weights, for_training=True)
            info = json.loads(read_metadata(init_weights).get("info") or "{}")
            # continue the step count (and so the schedule, e.g. when the discriminator joins) of the weights' run
            self.state = TrainState(step=int(info.get("steps", 0)), elapsed=float(info.get("train_seconds", 0)))
        self.disc = MultiScaleSTFTDiscriminator(channels=config.disc_channels)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=config.lr, betas=config.betas)
        self.opt_disc = torch.optim.Adam(self.disc.parameters(), lr=config.disc_lr, betas=config.betas)
        self.balancer = Balancer({k: v for k, v in config.weights.items()})
        self.generator = torch.Generator().manual_seed(config.seed + self.accelerator.process_index)
        sr = self.model.sample_rate
        self.mel_loss = L.MultiScaleMelLoss(sr).to(self.device)
        # the phase-aware loss compares spectra at the codec's frame rate (hop 320 at 24 kHz), 75 % overlap
        frame_hop = int(round(sr / 75))
        self.spec_stft = FrameSTFT(4 * frame_hop, frame_hop).to(self.device)
        self.checkpoint_path = self.run_dir / "checkpoint.pt"
        if self.checkpoint_path.exists() or self.checkpoint_path.with_name("checkpoint.pt.prev").exists():
            self._restore(load_verified(self.checkpoint_path))
        self.model, self.disc, self.opt, self.opt_disc = self.accelerator.prepare(
            self.model, self.disc, self.opt, self.opt_disc)
        train_clips = load_clips(list_corpus(corpus, "train"), sr)
        valid_paths = list_corpus(corpus, "valid", kind="speech") or list_corpus(corpus, "valid")
        valid_clips = load_clips(valid_paths, sr) if valid_paths else train_clips[: config.valid_clips]
        hop = hop_length(self.raw_model)
        segment = int(round(config.segment_seconds * sr / hop)) * hop
        self.data = RandomCrops(train_clips, segment, config.batch_size, self.generator)
        self.valid = fixed_validation_batch(valid_clips, int(config.valid_seconds * sr), config.valid_clips)
        self.train_minutes = sum(len(c.samples) for c in train_clips) / sr / 60

    @property
    def raw_model(self):
        return self.accelerator.unwrap_model(self.model)

    def codebook_choices(self) -> list[int]:
        m = self.raw_model
        return [m.codebooks_for(b) for b in m.bandwidths]

    # -- checkpoints ----------------------------------------------------------------------------------------------
    def _restore(self, state: dict) -> None:
        saved = TrainConfig.from_dict(state["config"])
        if saved.arch != self.config.arch or saved.model != self.config.model:
            raise CodecError(f"{self.checkpoint_path} holds another architecture ({saved.arch} {saved.model})")
        self.model.load_state_dict(state["model"])
        self.disc.load_state_dict(state["disc"])
        self.opt.load_state_dict(state["opt"])
        self.opt_disc.load_state_dict(state["opt_disc"])
        self.balancer.load_state_dict(state["balancer"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        version, internal, gauss = state["python_rng"]
        random.setstate((version, tuple(internal), gauss))
        self.state = TrainState(step=int(state["step"]), elapsed=float(state["elapsed"]))
        for name in ("log.csv", "valid.csv"):  # rows written after this checkpoint (a crash) would be logged twice
            self._drop_rows_after(name, self.state.step)

    def _drop_rows_after(self, name: str, step: int) -> None:
        path = self.run_dir / name
        if not path.exists() or not self.accelerator.is_main_process:
            return
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        kept = rows[:1] + [row for row in rows[1:] if row and row[0].isdigit() and int(row[0]) <= step]
        if len(kept) == len(rows):
            return
        tmp = path.with_name(name + ".tmp")
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows(kept)
        os.replace(tmp, path)

    def save_checkpoint(self) -> None:
        if not self.accelerator.is_main_process:
            return
        py = random.getstate()
        state = {
            "config": self.config.to_dict(),
            "step": self.state.step,
            "elapsed": self.state.elapsed,
            "model": self.raw_model.state_dict(),
            "disc": self.accelerator.unwrap_model(self.disc).state_dict(),
            "opt": self.opt.state_dict(),
            "opt_disc": self.opt_disc.state_dict(),
            "balancer": self.balancer.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "python_rng": [py[0], list(py[1]), py[2]],
        }
        save_atomic(state, self.checkpoint_path)

    @torch.no_grad()
    def init_codebooks(self, batches: int = 8) -> None:
        """k-means initialisation of every codebook from the latents of several batches (a single batch of 1 s
        crops has fewer vectors than a codebook has entries). Under several processes each rank contributes and
        rank 0's centroids are broadcast (see `quantization.vq`)."""
        model = self.raw_model
        if all(bool(layer.inited.item()) for layer in model.quantizer.layers):
            return
        latents = torch.cat([model.analyse(self.data.batch().to(self.device)) for _ in range(batches)], dim=0)
        model.quantizer.train()
        model.quantizer(latents, model.max_codebooks)

    # -- one step -------------------------------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        config = self.config
        step = self.state.step
        for group in self.opt.param_groups:
            group["lr"] = lr_at(step, config)
        x = self.data.batch().to(self.device)
        choices = self.codebook_choices()
        num_codebooks = choices[int(torch.randint(len(choices), (1,), generator=self.generator))]
        self.model.train()
        out = self.model(x, num_codebooks)
        y = out.wav
        stft = self.spec_stft
        losses = {
            "l1": L.time_l1_loss(y, x),
            "mel": self.mel_loss(y, x),
            "spec": L.compressed_spectrum_loss(stft.stft(y[:, 0]), stft.stft(x[:, 0])),
        }
        adversarial = 0 <= config.adv_start_step <= step
        log = {}
        if adversarial:
            real_logits, _ = self.disc(x)
            fake_logits, _ = self.disc(y.detach())
            d_loss = L.hinge_discriminator_loss(real_logits, fake_logits)
            self.opt_disc.zero_grad(set_to_none=True)
            self.accelerator.backward(d_loss)
            self.opt_disc.step()
            log["disc"] = d_loss.item()
            fake_logits, fake_features = self.disc(y)
            with torch.no_grad():
                _, real_features = self.disc(x)
            losses["adv"] = L.hinge_generator_loss(fake_logits)
            losses["feat"] = L.feature_matching_loss(real_features, fake_features)
        commitment = out.quantized.commitment_loss * config.commitment_weight
        self.opt.zero_grad(set_to_none=True)
        if config.balance:
            self.balancer.backward(losses, y, direct=commitment)
        else:
            total = sum(config.weights.get(k, 0.0) * v for k, v in losses.items()) + commitment
            self.accelerator.backward(total)
        if self.disc is not None:
            for p in self.disc.parameters():  # generator losses must not move the discriminator
                p.grad = None
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        self.opt.step()
        self.state.step += 1
        log.update({k: v.item() for k, v in losses.items()})
        log.update({"commit": out.quantized.commitment_loss.item(), "codebooks": num_codebooks,
                    "usage": out.quantized.usage.mean().item(), "grad_norm": grad_norm.item()})
        return log

    # -- validation -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        model = self.raw_model
        model.eval()
        results = {}
        sr = model.sample_rate
        for bandwidth in (1.5, 6.0, 24.0):
            if bandwidth not in model.bandwidths:
                continue
            scores = {"mel": [], "sisdr": [], "stoi": []}
            for clip in self.valid:
                wav = clip[None].to(self.device)
                decoded = model.decode(model.encode(wav, bandwidth))[0, 0].cpu().numpy()
                ref = clip[0].numpy()
                scores["mel"].append(metrics.mel_distance(ref, decoded, sr))
                scores["sisdr"].append(metrics.si_sdr(ref, decoded))
                value = metrics.stoi(ref, decoded, sr)
                if value is not None and math.isfinite(value):
                    scores["stoi"].append(value)
            for name, values in scores.items():
                if values:
                    results[f"{name}@{bandwidth:g}"] = sum(values) / len(values)
        return results

    # -- the loop -------------------------------------------------------------------------------------------------
    def _append_csv(self, name: str, row: dict) -> None:
        """Appends `row`; when it brings new columns (the discriminator's losses join mid-run), the file is rewritten
        once with the union of the columns, so every row stays aligned with the header."""
        path = self.run_dir / name
        header = None
        if path.exists():
            with open(path, newline="") as f:
                header = next(csv.reader(f), None)
        if header is not None and set(row) <= set(header):
            with open(path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=header, restval="").writerow(row)
            return
        rows = []
        if header is not None:
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
        fieldnames = list(header or []) + [k for k in row if k not in (header or [])]
        tmp = path.with_name(name + ".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fieldnames, restval="")
            writer.writeheader()
            writer.writerows(rows + [row])
        os.replace(tmp, path)

    def fit(self, steps: int | None = None, max_seconds: float | None = None) -> TrainState:
        """Trains until `steps` (default: config.steps) or `max_seconds` of wall time, checkpointing as it goes."""
        config = self.config
        target = steps if steps is not None else config.steps
        self.run_dir.mkdir(parents=True, exist_ok=True)
        start_time = time.time()
        start_step = self.state.step
        bar = tqdm(total=target, initial=start_step, disable=self.quiet or not self.accelerator.is_main_process,
                   desc="codec train", dynamic_ncols=True)
        running: dict[str, float] = {}
        counts: dict[str, int] = {}  # per key: a run resumed mid-interval, or the discriminator joining, logs fewer
        self.init_codebooks()
        last_tick = time.time()
        while self.state.step < target:
            try:
                log = self.train_step()
            except KeyboardInterrupt:  # Ctrl-C: keep what the completed steps learnt
                self.save_checkpoint()
                raise
            now = time.time()
            self.state.elapsed += now - last_tick
            last_tick = now
            for k, v in log.items():
                running[k] = running.get(k, 0.0) + v
                counts[k] = counts.get(k, 0) + 1
            step = self.state.step
            bar.update(1)
            if step % config.log_every == 0 and self.accelerator.is_main_process:
                row = {"step": step, "elapsed_s": round(self.state.elapsed, 1)}
                row.update({k: round(v / counts[k], 5) for k, v in sorted(running.items())})
                running, counts = {}, {}
                self._append_csv("log.csv", row)
                bar.set_postfix(mel=row.get("mel"), spec=row.get("spec"))
            if step % config.valid_every == 0 and self.accelerator.is_main_process:
                row = {"step": step, "elapsed_s": round(self.state.elapsed, 1)}
                row.update({k: round(v, 4) for k, v in self.validate().items()})
                self._append_csv("valid.csv", row)
                if not self.quiet:
                    tqdm.write(f"valid {row}")
            if step % config.checkpoint_every == 0:
                self.save_checkpoint()
            if max_seconds is not None and time.time() - start_time > max_seconds:
                break
        if self.state.step != start_step:
            self.save_checkpoint()
        bar.close()
        return self.state
