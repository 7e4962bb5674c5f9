"""`codec train` and `codec export`: argument parsing only; the work is in `Trainer` and `models.weights`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import CodecError
from .config import TrainConfig


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a codec on a corpus (resumes when RUN has a checkpoint)")
    p.add_argument("corpus", help="corpus folder with manifest.csv (scripts/build_corpus.py), a manifest, or a folder")
    p.add_argument("--out", required=True, help="run directory (checkpoints, log.csv, valid.csv)")
    p.add_argument("--config", help="JSON file with TrainConfig fields")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one TrainConfig field (JSON value), e.g. --set batch_size=16 "
                        "--set model='{\"dim\":128}'")
    p.add_argument("--steps", type=int, help="train until this step")
    p.add_argument("--max-minutes", type=float, help="stop (with a checkpoint) after this much wall time")
    p.add_argument("--init", help="start from these weights (e.g. codec/weights/default.safetensors)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: what accelerate picks")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--export", help="after training, export fp16 inference weights to this .safetensors path")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run_train)

    e = sub.add_parser("export", help="export a run's generator as fp16 safetensors inference weights")
    e.add_argument("run", help="run directory with checkpoint.pt")
    e.add_argument("out", help="output .safetensors")
    e.set_defaults(func=run_export)


def _config(args) -> TrainConfig:
    data = {}
    if args.config:
        data.update(json.loads(Path(args.config).read_text()))
    run_config = Path(args.out) / "config.json"
    if not data and run_config.exists():
        data.update(json.loads(run_config.read_text()))
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            data[key] = json.loads(value)
        except json.JSONDecodeError:
            data[key] = value
    unknown = set(data) - set(TrainConfig().to_dict())
    if unknown:
        raise CodecError(f"unknown training option(s): {', '.join(sorted(unknown))}")
    return TrainConfig.from_dict({**TrainConfig().to_dict(), **data})


def run_train(args) -> int:
    import torch

    from .trainer import Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    config = _config(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=1))
    trainer = Trainer(config, args.corpus, out, device=args.device, init_weights=args.init, quiet=args.quiet)
    print(f"training {config.arch} on {trainer.train_minutes:.1f} min of audio from step {trainer.state.step}",
          flush=True)
    max_seconds = args.max_minutes * 60 if args.max_minutes else None
    state = trainer.fit(steps=args.steps, max_seconds=max_seconds)
    print(f"stopped at step {state.step} after {state.elapsed / 60:.1f} min of training", flush=True)
    if args.export:
        sha = export_run(out, args.export)
        print(f"exported {args.export} sha256 {sha}")
    return 0


def export_run(run: str | Path, out: str | Path) -> str:
    """Exports a run's generator: fp16 safetensors for the frame codec, float32 for EnCodec; returns the sha256."""
    from ..interface import file_sha256
    from ..models.weights import export_frame_codec
    from .checkpoint import load_verified
    from .trainer import build_model

    state = load_verified(Path(run) / "checkpoint.pt")
    config = TrainConfig.from_dict(state["config"])
    model = build_model(config)
    model.load_state_dict(state["model"])
    info = {"steps": state["step"], "train_seconds": round(state["elapsed"]), "arch": config.arch}
    if config.arch == "framecodec":
        return export_frame_codec(model, out, info=info)
    from .encodec_trainable import export_encodec

    export_encodec(model, out, info=info)
    return file_sha256(out)


def run_export(args) -> int:
    sha = export_run(args.run, args.out)
    print(f"exported {args.out} sha256 {sha}")
    return 0
