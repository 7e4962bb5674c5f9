"""The audio-LM demonstration, end to end and reproducible: a few minutes of corpus speech -> codec token shards ->
fine-tuned Gemma 3 270M (restricted head, LoRA + audio rows) -> bits/s against n-gram baselines -> a continuation of a
held-out prompt, saved as audio and as a spectrogram.

    python scripts/lm_demo.py --out runs/lm_demo                 # the CPU run (~20-30 min on 2 cores)
    python scripts/lm_demo.py --out runs/lm_demo_gpu --full --steps 2000 --seq-len 1024 \
        --batch-size 16 --train-minutes 60
    python scripts/lm_demo.py --out /tmp/lm_tiny --tiny           # seconds: tiny random Gemma + tiny random codec

Inputs: `data/corpus/manifest.csv` (made by `scripts/build_corpus.py`); speech of one language (`--language`, French by
default: it has held-out files), train files from the train split and prompts from the valid split, so the prompt was
never trained on. Outputs in `--out`: `corpus/manifest.csv` (the selection), `shards/`, `run/` (the model, log.csv),
`eval.json`, `prompt.wav` (the prompt through the codec), `continuation.wav` (prompt + generated), `spectrogram.png`,
`summary.json`. Every step is resumable: shards and training pick up where they stopped.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from audiolm.data import AUDIO_SUFFIXES, PrepareConfig, load_tokens, prepare  # noqa: E402
from audiolm.evaluate import evaluate  # noqa: E402
from audiolm.train import TrainConfig, train  # noqa: E402
from codec.errors import CodecError  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--corpus", default=str(ROOT / "data" / "corpus"), help="corpus folder (manifest.csv) or audio dir")
    p.add_argument("--language", default="fr", help="speech language of the manifest to use (fr)")
    p.add_argument("--train-minutes", type=float, default=5.0)
    p.add_argument("--valid-minutes", type=float, default=1.0)
    p.add_argument("--bandwidth", type=float, default=1.5, help="codec kbps (1.5: 2 codebooks, 150 tokens/s)")
    p.add_argument("--codec", default=None, help="codec name or path (default: the project's codec)")
    p.add_argument("--base", default=None, help="Gemma (default: the embedded gemma-3-270m)")
    p.add_argument("--pattern", default="flatten", choices=["flatten", "delay"])
    p.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA (GPU)")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--audio-lr", type=float, default=2e-3)
    p.add_argument("--prompt-seconds", type=float, default=3.0)
    p.add_argument("--seconds", type=float, default=3.0, help="seconds to generate after the prompt")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiny", action="store_true", help="tiny random Gemma and codec: checks the pipeline in seconds")
    p.add_argument("--quiet", action="store_true")
    return p


# ---- selection ------------------------------------------------------------------------------------------------------
def _order(path: str) -> str:
    return hashlib.sha1(path.encode()).hexdigest()  # a fixed, well-mixed order of the files


def select(corpus: Path, language: str, train_minutes: float, valid_minutes: float) -> list[dict]:
    """Rows (absolute path, split, text) of about `train_minutes` / `valid_minutes` of speech, deterministically."""
    manifest = corpus / "manifest.csv"
    if manifest.is_file():
        with manifest.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if r["kind"] == "speech" and r["language"] == language]
        items = [(str((corpus / r["path"]).resolve()), r["split"], float(r["duration_s"])) for r in rows]
    else:  # a plain folder of clips (the --tiny check on samples/): the first file by name is held out
        import soundfile as sf

        files = sorted(p for p in corpus.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        items = [(str(p.resolve()), "valid" if i == 0 else "train", sf.info(str(p)).duration)
                 for i, p in enumerate(files)]
    chosen: list[dict] = []
    for split, minutes in (("train", train_minutes), ("valid", valid_minutes)):
        total = 0.0
        for path, _, duration in sorted((i for i in items if i[1] == split), key=lambda i: _order(i[0])):
            if total >= minutes * 60:
                break
            chosen.append({"path": path, "split": split, "text": f"speech {language}"})
            total += duration
    if not any(r["split"] == "train" for r in chosen) or not any(r["split"] == "valid" for r in chosen):
        raise CodecError(f"{corpus}: no {language} speech in both the train and valid splits")
    return chosen


def write_manifest(rows: list[dict], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "manifest.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "split", "text"])
        writer.writeheader()
        writer.writerows(rows)
    return directory


# ---- tiny stand-ins -------------------------------------------------------------------------------------------------
def tiny_codec(path: Path) -> str:
    """A tiny random FrameCodec (75 frames/s, 1.5-24 kbps) exported to `path`; returns the path as a codec name."""
    from codec.models.framecodec import FrameCodecConfig, frame_codec
    from codec.models.weights import export_frame_codec

    if not path.exists():
        torch.manual_seed(0)
        config = FrameCodecConfig(dim=32, intermediate_dim=64, encoder_layers=1, decoder_layers=1, latent_dim=16)
        model = frame_codec(config, kmeans_init=False)
        for layer in model.quantizer.layers:  # random codebooks, marked initialised (a zero codebook gives code 0)
            layer.embed.normal_()
            layer.cluster_size.fill_(1.0)
            layer.inited.fill_(1.0)
        export_frame_codec(model.eval(), path)
    return str(path)


def tiny_gemma(directory: Path) -> str:
    """A 2-layer random Gemma 3 with a 512-word tokenizer, saved as a checkpoint folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, PreTrainedTokenizerFast

    if not (directory / "config.json").exists():
        torch.manual_seed(0)
        config = Gemma3TextConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                  num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                                  max_position_embeddings=4096, sliding_window=64, tie_word_embeddings=True,
                                  pad_token_id=0, eos_token_id=1, bos_token_id=2)
        words = ["<pad>", "<eos>", "<bos>", "<unk>", "speech", "fr", "en"] + [f"w{i}" for i in range(7, 512)]
        backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
        backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        backend.decoder = decoders.WordPiece()
        tok = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>",
                                      bos_token="<bos>", unk_token="<unk>")
        Gemma3ForCausalLM(config).save_pretrained(directory)
        tok.save_pretrained(directory)
    return str(directory)


# ---- outputs --------------------------------------------------------------------------------------------------------
def spectrogram_png(wav: torch.Tensor, sample_rate: int, prompt_seconds: float, path: Path, title: str) -> Path:
    """Log-magnitude spectrogram of `wav` `[S]` with a line where the prompt ends."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_fft, hop = 1024, 256
    spec = torch.stft(wav.float(), n_fft, hop, window=torch.hann_window(n_fft), return_complex=True).abs()
    db = 20 * torch.log10(spec.clamp_min(1e-5))
    fig, ax = plt.subplots(figsize=(10, 4))
    extent = (0, wav.shape[-1] / sample_rate, 0, sample_rate / 2000)
    ax.imshow(db.numpy(), origin="lower", aspect="auto", extent=extent, vmin=float(db.max()) - 80, cmap="magma")
    ax.axvline(prompt_seconds, color="cyan", linestyle="--", label="end of prompt")
    ax.set(xlabel="seconds", ylabel="kHz", title=title)
    ax.legend(loc="upper right")
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.part.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    progress = not args.quiet
    if args.tiny:
        codec_name = tiny_codec(out / "tiny_codec.safetensors")
        base = tiny_gemma(out / "tiny_gemma")
        steps, seq_len, batch = min(args.steps, 6), min(args.seq_len, 96), min(args.batch_size, 2)
    else:
        codec_name, base = args.codec, args.base
        steps, seq_len, batch = args.steps, args.seq_len, args.batch_size
    from audiolm.cli_tokens import load_codec_by_name
    from audiolm.gemma import resolve_name

    codec = load_codec_by_name(codec_name)
    print(f"codec: {codec.weights.name} (sha256 {codec.weights.sha256[:12]}), {args.bandwidth:g} kbps, "
          f"K={codec.codebooks_for(args.bandwidth)}")

    # 1. shards
    rows = select(Path(args.corpus), args.language, args.train_minutes, args.valid_minutes)
    corpus = write_manifest(rows, out / "corpus")
    report = prepare(corpus, out / "shards", codec, PrepareConfig(bandwidth=args.bandwidth, chunk_seconds=30.0),
                     progress=progress)
    print(f"shards: {len(report.written)} written, {len(report.skipped)} reused; {len(rows)} files")

    # 2. training
    config = TrainConfig(base=resolve_name(base), pattern=args.pattern, lora=not args.full, lora_rank=16,
                         lora_alpha=32.0, steps=steps, seq_len=seq_len, batch_size=batch, grad_accum=args.grad_accum,
                         lr=args.lr, audio_lr=args.audio_lr, warmup=max(1, steps // 10), eval_every=max(1, steps // 5),
                         save_every=max(1, steps // 10), log_every=max(1, steps // 30), eval_windows=16,
                         seed=args.seed)
    t0 = time.perf_counter()
    result = train(out / "shards", out / "run", config, progress=progress)
    train_seconds = time.perf_counter() - t0

    # 3. evaluation
    ev = evaluate(out / "run", out / "shards", batch_size=batch)
    (out / "eval.json").write_text(json.dumps(ev.to_json(), indent=2) + "\n")

    # 4. a continuation of a held-out prompt
    from audiolm.generate import Sampling, generate_codes
    from audiolm.model import load_bridge
    from audiolm.patterns import get_pattern
    from audiolm.train import text_prefix
    from codec.audio import load_for_model, write_audio

    bridge = load_bridge(out / "run", codec=codec)
    K = bridge.config.num_codebooks
    prompt_file = next(r["path"] for r in rows if r["split"] == "valid")
    wav, _ = load_for_model(prompt_file, codec.sample_rate, codec.channels)
    wav = wav[..., : int(args.prompt_seconds * codec.sample_rate)]
    with torch.inference_mode():
        prompt = codec.encode(wav, args.bandwidth).codes[0]  # [K, T_p]
        write_audio(out / "prompt.wav", codec.decode_codes(prompt[None])[0], codec.sample_rate)
    Tp = prompt.shape[1]
    t0 = time.perf_counter()
    gen = generate_codes(bridge.model, bridge.config.vocab, get_pattern(args.pattern, K), text_prefix(bridge.tokenizer),
                         Tp + round(args.seconds * codec.frame_rate), prompt, 1,
                         Sampling(temperature=args.temperature, top_k=args.top_k, seed=args.seed), progress=progress)
    gen_seconds = time.perf_counter() - t0
    codes = gen.codes[0]
    with torch.inference_mode():
        audio = codec.decode_codes(codes[None])[0]
    write_audio(out / "continuation.wav", audio, codec.sample_rate)
    spectrogram_png(audio[0], codec.sample_rate, Tp / codec.frame_rate, out / "spectrogram.png",
                    f"prompt ({Tp / codec.frame_rate:.1f} s, held out) + continuation by the audio LM")

    new_tokens = len(gen.ids[0]) - Tp * K
    data = load_tokens(out / "shards")
    summary = {
        "codec": codec.weights.name, "codec_sha256": codec.weights.sha256, "bandwidth": args.bandwidth,
        "base": config.base, "tiny": args.tiny, "train_minutes": round(data.split("train").seconds / 60, 2),
        "valid_minutes": round(data.split("valid").seconds / 60, 2),
        "steps": result.step, "seq_len": seq_len, "batch_size": batch, "lora": config.lora,
        "train_seconds": round(train_seconds, 1), "generation_tokens_per_second": round(new_tokens / gen_seconds, 1),
        "generated_frames": int(codes.shape[1] - Tp), "prompt_file": prompt_file,
        "eval": ev.to_json(), "total_seconds": round(time.perf_counter() - began, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(ev.table())
    print(f"training: {result.step} steps in {train_seconds / 60:.1f} min; generation: "
          f"{summary['generation_tokens_per_second']} tokens/s; wrote {out}/continuation.wav, {out}/spectrogram.png")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CodecError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
