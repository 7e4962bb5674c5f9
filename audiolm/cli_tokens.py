"""`audiolm tokenize` and `audiolm detokenize`: audio <-> the token strings (or ids) of the extended Gemma vocabulary.

No language model is loaded: the vocabulary is pure arithmetic (`AudioVocab` with `audio_base` = Gemma 3's 262,144).
`detokenize` undoes `tokenize` exactly (the codes are equal); it reads token strings or whitespace/comma-separated
ids, with or without the `<|audio_start|>` / `<|audio_end|>` markers, and infers the pattern (pads mean delay) and
the number of codebooks (the highest codebook seen) unless they are given.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from .errors import BridgeError
from .patterns import PATTERNS, get_pattern
from .vocab import AUDIO_PAD, GEMMA3_VOCAB_SIZE, NOT_AUDIO, AudioVocab


def load_codec_by_name(name: str | None):
    """The codec named `name` (None: `CODEC_MODEL` or the default), through `codec.load_codec`."""
    try:
        from codec import load_codec
    except ImportError:
        raise BridgeError("codec.load_codec is not available in this installation") from None
    return load_codec(name)


def _announce(codec, quiet: bool) -> None:
    if not quiet:
        print(f"codec: {codec.weights.name} (sha256 {codec.weights.sha256[:12]})", file=sys.stderr)


# ---- tokenize -------------------------------------------------------------------------------------------------------
def add_tokenize_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="audio file")
    parser.add_argument("-b", "--bandwidth", type=float, required=True, help="codec bandwidth in kbps (e.g. 1.5, 6)")
    parser.add_argument("--pattern", choices=sorted(PATTERNS), default="flatten", help="token layout (flatten)")
    parser.add_argument("--ids", action="store_true", help="print token ids instead of token strings")
    parser.add_argument("--model", default=None, help="codec name or path (default: $CODEC_MODEL or the default)")
    parser.add_argument("--audio-base", type=int, default=GEMMA3_VOCAB_SIZE, help="id of the first audio token")
    parser.add_argument("--no-markers", action="store_true", help="leave out <|audio_start|> and <|audio_end|>")
    parser.add_argument("-o", "--out", default=None, help="write to this file instead of standard output")
    parser.add_argument("--quiet", action="store_true", help="do not print which codec weights were used")


def run_tokenize(args: argparse.Namespace) -> int:
    import torch

    from codec.audio import atomic_output, load_for_model

    codec = load_codec_by_name(args.model)
    _announce(codec, args.quiet)
    K = codec.codebooks_for(args.bandwidth)
    wav, _ = load_for_model(args.input, codec.sample_rate, codec.channels)
    with torch.no_grad():
        encoded = codec.encode(wav, args.bandwidth)
    vocab = AudioVocab.for_codec(codec, args.audio_base)
    ids = get_pattern(args.pattern, K).codes_to_ids(encoded.codes, vocab)[0].tolist()
    if not args.no_markers:
        ids = [vocab.start_id, *ids, vocab.end_id]
    text = " ".join(map(str, ids)) if args.ids else vocab.ids_to_text(ids)
    if args.out:
        with atomic_output(args.out, force=True, inputs=[args.input]) as tmp:
            Path(tmp).write_text(text + "\n")
    else:
        print(text)
    return 0


# ---- detokenize -----------------------------------------------------------------------------------------------------
def add_detokenize_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tokens", help="text file with token strings or ids ('-' reads standard input)")
    parser.add_argument("output", help="audio file to write")
    parser.add_argument("--model", default=None, help="codec name or path (default: $CODEC_MODEL or the default)")
    parser.add_argument(
        "--pattern",
        choices=["auto", *sorted(PATTERNS)],
        default="auto",
        help="token layout; auto: delay if the tokens hold pads, else flatten",
    )
    parser.add_argument(
        "-b",
        "--bandwidth",
        type=float,
        default=None,
        help="codec bandwidth in kbps (default: inferred from the highest codebook present)",
    )
    parser.add_argument("--audio-base", type=int, default=GEMMA3_VOCAB_SIZE, help="id of the first audio token")
    parser.add_argument(
        "--repair",
        choices=["truncate"],
        default=None,
        help="keep the frames before an incomplete or invalid one instead of failing",
    )
    parser.add_argument("--force", action="store_true", help="overwrite the output file")
    parser.add_argument("--quiet", action="store_true", help="do not print which codec weights were used")


def parse_tokens(text: str, vocab: AudioVocab) -> list[int]:
    """Token strings or integer ids -> ids, without the start/end markers around one audio span."""
    if "<|" in text:
        ids = vocab.text_to_ids(text)
    else:
        try:
            ids = [int(x) for x in re.split(r"[\s,]+", text.strip()) if x]
        except ValueError as e:
            raise BridgeError(f"tokens are neither audio token strings nor integer ids ({e})") from None
        huge = next((i for i in ids if not -(1 << 63) <= i < 1 << 63), None)
        if huge is not None:  # no token id is that large; torch.tensor would fail with an overflow
            raise BridgeError(f"id {str(huge)[:30]}... is out of range: not a token id")
    if ids and ids[0] == vocab.start_id:
        ids = ids[1:]
        if vocab.end_id not in ids:
            raise BridgeError("<|audio_start|> without <|audio_end|>: the token sequence is cut short")
    if vocab.end_id in ids:
        end = ids.index(vocab.end_id)
        if end != len(ids) - 1:
            raise BridgeError(f"tokens after <|audio_end|> (at token {end}): give one audio span")
        ids = ids[:end]
    if vocab.start_id in ids:
        raise BridgeError("<|audio_start|> in the middle of the tokens: give one audio span")
    return ids


def run_detokenize(args: argparse.Namespace) -> int:
    import torch

    from codec.audio import write_audio

    try:
        text = sys.stdin.read() if args.tokens == "-" else Path(args.tokens).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise BridgeError(f"cannot read {args.tokens}: {e}") from None
    codec = load_codec_by_name(args.model)
    _announce(codec, args.quiet)
    vocab = AudioVocab.for_codec(codec, args.audio_base)
    ids = torch.tensor(parse_tokens(text, vocab), dtype=torch.long)
    books = vocab.codebook_of(ids)
    if bool((books == NOT_AUDIO).any()):
        first = int(ids[books == NOT_AUDIO][0])
        raise BridgeError(
            f"id {first} is not an audio token of {codec.weights.name} (audio ids start at {vocab.audio_base})"
        )
    if args.bandwidth is not None:
        K = codec.codebooks_for(args.bandwidth)
    elif bool((books >= 0).any()):
        K = int(books.max()) + 1
    else:
        raise BridgeError("no audio code tokens found")
    pattern = args.pattern
    if pattern == "auto":
        pattern = "delay" if bool((ids == vocab.special_id(AUDIO_PAD)).any()) else "flatten"
    codes = get_pattern(pattern, K).ids_to_codes(ids, vocab, repair=args.repair)
    if codes.shape[-1] == 0:
        raise BridgeError("no complete audio frame in the tokens")
    with torch.no_grad():
        wav = codec.decode_codes(codes)
    write_audio(
        args.output, wav[0], codec.sample_rate, force=args.force, inputs=[] if args.tokens == "-" else [args.tokens]
    )
    if not args.quiet:
        seconds = codes.shape[-1] / codec.frame_rate
        print(
            f"wrote {args.output}: {codes.shape[-1]} frames x {K} codebooks ({pattern}), {seconds:.2f} s",
            file=sys.stderr,
        )
    return 0
