"""Chunked inference for frame codecs whose layers have a finite receptive field: the bookkeeping, shared by the
torch `FrameCodec` and the torch-free runtime (`codec.runtime`), so both cut a signal the same way.

Long inputs run in chunks of `chunk_frames` frames with `context` frames of overlap on each side, so memory is bounded
by the chunk, not the file; the kept frames equal a whole-signal pass up to float rounding. Works on torch tensors and
numpy arrays alike (`codec.arrays`). Shapes: waveform blocks `[B, 1, s]`, codes `[B, K, T]`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..arrays import concat, pad_end
from ..interface import CodesBuffer


def encode_in_chunks(blocks: Iterable[Any], hop: int, chunk_frames: int, context: int,
                     encode_window: Callable[[Any, int, int], Any]) -> tuple[Any | None, int, int]:
    """Encode a waveform that arrives in consecutive blocks `[B, 1, s_i]` (any sizes), holding at most one chunk plus
    its context and one block. `encode_window(window, first, last)` encodes a window of whole hops and returns the
    codes `[B, K, last - first]` of its frames `first:last`. Every chunk sees the same samples (the same zero padding
    at the end) however the input was cut into blocks, so the codes do not depend on the block sizes.

    Returns (codes `[B, K, T]` or None when no sample came, samples encoded, batch size B).
    """
    buffer = None  # samples from frame `offset` * hop on
    offset = 0  # first frame the buffer holds
    length = 0
    start = 0  # next chunk to encode
    batch = 1
    codes = CodesBuffer()

    def encode_chunk(total: int) -> None:
        nonlocal buffer, offset, start
        stop = min(start + chunk_frames, total)
        lo, hi = max(0, start - context), min(total, stop + context)
        window = buffer[..., (lo - offset) * hop: (hi - offset) * hop]
        codes.append(encode_window(window, start - lo, stop - lo))
        start = stop
        keep = max(0, start - context)  # the next chunk's first frame of context
        buffer, offset = buffer[..., (keep - offset) * hop:], keep

    for block in blocks:
        batch = block.shape[0]
        if block.shape[-1] == 0:
            continue
        length += block.shape[-1]
        buffer = block if buffer is None else concat([buffer, block])
        # a chunk is ready once its right context has arrived (frames beyond it may still come)
        while (offset * hop + buffer.shape[-1]) // hop >= start + chunk_frames + context:
            encode_chunk(total=start + chunk_frames + context)
    if buffer is None:
        return None, 0, batch
    buffer = pad_end(buffer, (-length) % hop)
    total = -(-length // hop)
    while start < total:  # the end is known now: the chunks left
        encode_chunk(total)
    return codes.result(), length, batch


def decode_in_chunks(codes: Any, hop: int, chunk_frames: int, context: int, length: int | None,
                     synthesise_window: Callable[[Any], Any]) -> Iterator[Any]:
    """The waveform of codes `[B, K, T]` as consecutive pieces `[B, 1, s_i]`, one per chunk, trimmed to `length`
    samples when given. `synthesise_window(codes)` turns a window of codes into its waveform `[B, 1, t * hop]`."""
    total = codes.shape[-1]
    emitted = 0
    for start in range(0, total, chunk_frames):
        stop = min(start + chunk_frames, total)
        lo, hi = max(0, start - context), min(total, stop + context)
        wav = synthesise_window(codes[..., lo:hi])
        piece = wav[..., (start - lo) * hop: (stop - lo) * hop]
        if length is not None:
            piece = piece[..., : max(0, length - emitted)]
        emitted += piece.shape[-1]
        yield piece
