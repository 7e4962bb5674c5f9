"""The training configuration: one dataclass, saved inside every checkpoint so a run can be resumed or rebuilt."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass
class TrainConfig:
    """Everything a codec training run needs besides the data path.

    Loss weights are fractions of the output gradient when `balance` is on (EnCodec's balancer); otherwise plain
    multipliers. `adv_start_step` lets reconstruction losses converge before the discriminator joins (-1: never).
    """

    arch: str = "framecodec"
    model: dict = field(default_factory=dict)  # architecture overrides, e.g. {"dim": 128}
    segment_seconds: float = 1.0
    batch_size: int = 8
    steps: int = 200_000
    lr: float = 3e-4
    betas: tuple[float, float] = (0.5, 0.9)
    warmup_steps: int = 200
    grad_clip: float = 5.0
    balance: bool = True
    weights: dict = field(default_factory=lambda: {"l1": 0.1, "mel": 2.0, "spec": 1.0, "adv": 4.0, "feat": 4.0})
    commitment_weight: float = 1.0
    adv_start_step: int = 3000
    disc_lr: float = 3e-4
    disc_channels: int = 32
    seed: int = 0
    log_every: int = 25
    valid_every: int = 500
    valid_seconds: float = 3.0
    valid_clips: int = 12
    checkpoint_every: int = 250

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        if "betas" in data:
            data["betas"] = tuple(data["betas"])
        return cls(**data)


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warm-up to `lr`, then constant (EnCodec trains at a constant rate)."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    return config.lr
