"""Encode and decode long signals chunk by chunk, in bounded memory, with the same result as the whole-file call.

The causal 24 kHz model streams layer by layer: every causal convolution keeps the samples its next window needs
(including Meta's reflect padding on the left at the start, and on the right at the end: `flush` supplies it), the
transposed convolutions keep their overlapping tails, the LSTM keeps (h, c), and residual blocks align their two
branches. So `StreamingEncoder` emits exactly the frames of `model.encode` whatever the chunk sizes, and
`StreamingDecoder` the samples of `model.decode`. The 48 kHz model is segmented by design (1 s segments, each
normalised on its own) and is processed segment by segment, with the overlap-add done incrementally.

    encode_stream(model, chunks [B, C, s_i], bandwidth) -> EncodedAudio pieces (codes [B, K, t_i], scales [B, n_i])
    decode_stream(model, pieces or codes [B, K, t_i], length) -> waveform chunks [B, C, s_i]

Numerics: each output is computed by the same operations on the same values as in the whole-signal call; only the
blocking of the underlying matrix products can differ with the chunk length, which may move a value by one float
rounding (see the measurements in tests/codec/test_streaming.py). The layers run in the layout the model's encoder
and decoder are set to (`time_major`, see `codec.modules.conv`), as `model.encode` / `model.decode` run them; chunks
in and out are `[B, C, s]` either way.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .errors import CodecError
from .interface import EncodedAudio
from .models.encodec import EncodecModel, overlap_weight
from .modules import (
    SLSTM,
    SConv1d,
    SConvTranspose1d,
    SEANetDecoder,
    SEANetEncoder,
    SEANetResnetBlock,
    conv_transpose1d_by_matmul,
    conv_transpose1d_time_major,
    from_time_major,
    pad1d,
    to_time_major,
)
from .modules.conv import extra_padding_for_conv1d


def _cat(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    if a is None or a.shape[-1] == 0:
        return b
    if b is None or b.shape[-1] == 0:
        return a
    return torch.cat([a, b], dim=-1)


def _per_channel(bias: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """`bias` [C] shaped to broadcast over the channels of `x` [B, C, T] or time-major [B, C, 1, T]."""
    return bias.view(-1, *([1] * (x.dim() - 2)))


class _Stream:
    """A layer run on consecutive chunks `[B, C, t]`; `None` stands for "no samples"."""

    def push(self, x: torch.Tensor | None) -> torch.Tensor | None:
        raise NotImplementedError

    def flush(self) -> torch.Tensor | None:
        return None


class _Pointwise(_Stream):
    def __init__(self, module: nn.Module):
        self.module = module

    def push(self, x):
        return None if x is None else self.module(x)


class _ConvStream(_Stream):
    """A causal `SConv1d`: keeps the samples its next window needs, in padded coordinates."""

    def __init__(self, conv: SConv1d):
        if not conv.causal:
            raise CodecError("only causal convolutions can be streamed; use the segment-by-segment path")
        self.conv = conv
        self.kernel = conv.effective_kernel_size
        self.stride = conv.stride
        self.left = conv.padding_total
        self.raw: torch.Tensor | None = None  # input before the left padding could be applied
        self.buffer: torch.Tensor | None = None  # padded input not yet consumed
        self.length = 0  # raw samples seen

    def push(self, x):
        if x is None or x.shape[-1] == 0:
            return None
        self.length += x.shape[-1]
        if self.buffer is None:
            self.raw = _cat(self.raw, x)
            if self.raw.shape[-1] <= self.left:  # reflect padding needs left + 1 samples
                return None
            self.buffer, self.raw = pad1d(self.raw, (self.left, 0), self.conv.pad_mode), None
        else:
            self.buffer = _cat(self.buffer, x)  # no copy when nothing is left over (1x1 convolutions)
        return self._emit()

    def _emit(self):
        size = self.buffer.shape[-1]
        if size < self.kernel:
            return None
        n = (size - self.kernel) // self.stride + 1
        y = self.conv.convolve(self.buffer[..., : (n - 1) * self.stride + self.kernel])
        self.buffer = self.buffer[..., n * self.stride :]
        return y

    def flush(self):
        if self.buffer is None:  # the whole input was shorter than the padding: run it as one signal
            return None if self.raw is None else self.conv(self.raw)
        extra = extra_padding_for_conv1d(self.length, self.kernel, self.stride, self.left)
        if extra:
            if self.buffer.shape[-1] <= extra:
                raise RuntimeError("streaming buffer too short for the right reflect padding")
            self.buffer = pad1d(self.buffer, (0, extra), self.conv.pad_mode)
        return self._emit()


class _ConvTransposeStream(_Stream):
    """A causal `SConvTranspose1d`: overlap-adds each chunk's output onto the previous chunk's tail."""

    def __init__(self, conv: SConvTranspose1d):
        if not conv.causal:
            raise CodecError("only causal transposed convolutions can be streamed")
        self.conv = conv
        self.stride = conv.stride
        self.trim_left, _ = conv.trims()
        self.tail: torch.Tensor | None = None  # raw output beyond the last final sample, without bias
        self.skip = self.trim_left  # raw samples still to drop at the start

    def push(self, x):
        if x is None or x.shape[-1] == 0:
            return None
        weight, bias = self.conv.conv.weight, self.conv.conv.bias
        biased = x.dim() == 4  # time-major: the product starts from the bias (no extra pass over the output)
        if biased:
            y = conv_transpose1d_time_major(x, weight, self.stride, bias)
        else:
            y = conv_transpose1d_by_matmul(x, weight, self.stride)  # [B, C, (t - 1) * stride + kernel]
        if self.tail is not None:
            y[..., : self.tail.shape[-1]] += self.tail  # y is this chunk's own new tensor
        final = x.shape[-1] * self.stride  # no later frame reaches before this sample
        out, tail = y[..., :final], y[..., final:]
        self.tail = tail - _per_channel(bias, tail) if biased and bias is not None else tail
        return self._finish(out, biased)

    def _finish(self, out, biased: bool = False):
        bias = self.conv.conv.bias
        if bias is not None and not biased:
            out = out + _per_channel(bias, out)
        if self.skip:
            dropped = min(self.skip, out.shape[-1])
            out, self.skip = out[..., dropped:], self.skip - dropped
        return self.conv.norm(out) if out.shape[-1] else None

    def flush(self):
        if self.tail is None or self.trim_left == 0:
            return None
        return self._finish(self.tail[..., : self.trim_left])  # the right part beyond it is trimmed padding


class _LSTMStream(_Stream):
    def __init__(self, lstm: SLSTM):
        self.lstm = lstm
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None

    def push(self, x):
        if x is None or x.shape[-1] == 0:
            return None
        y, self.state = self.lstm.step(x, self.state)
        return y


class _Sequence(_Stream):
    def __init__(self, layers: list[_Stream]):
        self.layers = layers

    def push(self, x):
        for layer in self.layers:
            x = layer.push(x)
        return x

    def flush(self):
        x = None
        for layer in self.layers:
            x = _cat(layer.push(x), layer.flush())
        return x


class _Residual(_Stream):
    """`shortcut(x) + block(x)` where the branches may emit at different times."""

    def __init__(self, block: _Stream, shortcut: _Stream):
        self.block, self.shortcut = block, shortcut
        self.pending_block: torch.Tensor | None = None
        self.pending_shortcut: torch.Tensor | None = None

    def _combine(self, block, shortcut):
        self.pending_block = _cat(self.pending_block, block)
        self.pending_shortcut = _cat(self.pending_shortcut, shortcut)
        if self.pending_block is None or self.pending_shortcut is None:
            return None
        n = min(self.pending_block.shape[-1], self.pending_shortcut.shape[-1])
        if n == 0:
            return None
        out = self.pending_shortcut[..., :n] + self.pending_block[..., :n]
        self.pending_block, self.pending_shortcut = self.pending_block[..., n:], self.pending_shortcut[..., n:]
        return out

    def push(self, x):
        return self._combine(self.block.push(x), self.shortcut.push(x))

    def flush(self):
        return self._combine(self.block.flush(), self.shortcut.flush())


def _stream_of(module: nn.Module) -> _Stream:
    if isinstance(module, SConv1d):
        return _ConvStream(module)
    if isinstance(module, SConvTranspose1d):
        return _ConvTransposeStream(module)
    if isinstance(module, SLSTM):
        return _LSTMStream(module)
    if isinstance(module, SEANetResnetBlock):
        return _Residual(_Sequence([_stream_of(m) for m in module.block]), _stream_of(module.shortcut))
    if isinstance(module, (SEANetEncoder, SEANetDecoder)):
        return _Sequence([_stream_of(m) for m in module.layers])
    if isinstance(module, (nn.ELU, nn.Identity)):
        return _Pointwise(module)
    raise TypeError(f"no streaming version of {type(module).__name__}")


def _check_streamable(model: EncodecModel) -> None:
    if not model.causal or model.segment_length is not None or model.normalize:
        raise CodecError(f"{model.arch} is not causal and unsegmented; stream it with iter_encode_segments")


class StreamingEncoder:
    """Encode a causal, unsegmented model's input chunk by chunk; codes equal `model.encode` of the whole signal.

    Args:
        model: a causal EnCodec model (the 24 kHz one).
        bandwidth: kbps, one of `model.bandwidths`.
    """

    def __init__(self, model: EncodecModel, bandwidth: float):
        _check_streamable(model)
        self.model = model
        self.num_codebooks = model.codebooks_for(bandwidth)
        self.length = 0  # samples pushed
        self._encoder = _stream_of(model.encoder)
        self._time_major = model.encoder.time_major  # the layout the layers run in, as in `model.encode`
        self._batch: int | None = None

    def _codes(self, latent: torch.Tensor | None) -> torch.Tensor:
        if latent is None:
            return torch.zeros(self._batch or 1, self.num_codebooks, 0, dtype=torch.long)
        if latent.dim() == 4:
            latent = latent.squeeze(2)  # [B, D, T] viewing [B, T, D] memory: what the quantizer reads anyway
        return self.model.quantizer.encode(latent, self.num_codebooks)

    def push(self, chunk: torch.Tensor) -> torch.Tensor:
        """Next samples `[B, C, s]` (any s) -> the codes `[B, K, t]` that became final (t may be 0)."""
        if chunk.shape[-1]:
            self.model.check_audio(chunk)
        self._batch = chunk.shape[0]
        self.length += chunk.shape[-1]
        with torch.inference_mode():
            return self._codes(self._encoder.push(to_time_major(chunk) if self._time_major else chunk))

    def flush(self) -> torch.Tensor:
        """End of input: the remaining codes `[B, K, t]` (the last frames see Meta's right padding)."""
        with torch.inference_mode():
            return self._codes(self._encoder.flush())


class StreamingDecoder:
    """Decode a causal, unsegmented model's codes chunk by chunk; equals `model.decode` within float rounding.

    Args:
        model: a causal EnCodec model (the 24 kHz one).
    """

    def __init__(self, model: EncodecModel):
        _check_streamable(model)
        self.model = model
        self._decoder = _stream_of(model.decoder)
        self._time_major = model.decoder.time_major  # the layout the layers run in, as in `model.decode`
        self._shape: tuple[int, int] | None = None

    def _wav(self, wav: torch.Tensor | None) -> torch.Tensor:
        if wav is None:
            batch = self._shape[0] if self._shape else 1
            return torch.zeros(batch, self.model.channels, 0)
        return from_time_major(wav) if wav.dim() == 4 else wav

    def push(self, codes: torch.Tensor) -> torch.Tensor:
        """Next frames `[B, K, t]` -> the samples `[B, C, s]` that became final (hop_length per frame, after a lag)."""
        self._shape = (codes.shape[0], codes.shape[1])
        with torch.inference_mode():
            latent = self.model.quantizer.decode(codes) if codes.shape[-1] else None
            if latent is not None and self._time_major:
                latent = to_time_major(latent)
            return self._wav(self._decoder.push(latent))

    def flush(self) -> torch.Tensor:
        """End of codes: the remaining samples."""
        with torch.inference_mode():
            return self._wav(self._decoder.flush())


# -- segmented models (48 kHz) ----------------------------------------------------------------------------------------


def iter_encode_segments(model: EncodecModel, chunks: Iterable[torch.Tensor], bandwidth: float
                         ) -> Iterator[EncodedAudio]:
    """Encode a segmented model's input, given in chunks `[B, C, s_i]`, one segment at a time.

    Yields one `EncodedAudio` per segment (codes `[B, K, t]`, scales `[B, 1]` or None, segment_frames), the same
    as slicing `model.encode(whole)`. Holds at most one segment plus one chunk of samples.
    """
    if model.segment_length is None:
        raise CodecError(f"{model.arch} is not segmented; use StreamingEncoder")
    num_codebooks = model.codebooks_for(bandwidth)
    seg_len, stride = model.segment_length, model.segment_stride
    buffer: torch.Tensor | None = None  # samples from the current segment's start on

    def encode(segment):
        with torch.inference_mode():
            codes, scale = model.encode_segment(segment, num_codebooks)
        return EncodedAudio(codes=codes, scales=scale, segment_frames=model.segment_frames)

    for chunk in chunks:
        if chunk.shape[-1] == 0:
            continue
        model.check_audio(chunk)
        buffer = _cat(buffer, chunk)
        while buffer.shape[-1] >= seg_len:
            yield encode(buffer[..., :seg_len])
            buffer = buffer[..., stride:]
    # the remaining segments start before the end of the input (range(offset, length, stride) in the whole call)
    if buffer is not None:
        for offset in range(0, buffer.shape[-1], stride):
            yield encode(buffer[..., offset : offset + seg_len])


def _segments(model: EncodecModel, pieces: Iterable[EncodedAudio | torch.Tensor]
              ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Regroup pieces of codes (and scales) into whole segments (codes `[B, K, t]`, scale `[B, 1]` or None)."""
    frames = model.segment_frames
    codes: torch.Tensor | None = None
    scales: torch.Tensor | None = None
    for piece in pieces:
        if isinstance(piece, torch.Tensor):
            piece = EncodedAudio(codes=piece)
        codes = _cat(codes, piece.codes)
        if piece.scales is not None:
            scales = piece.scales if scales is None else torch.cat([scales, piece.scales], dim=-1)
        while codes is not None and codes.shape[-1] >= frames:  # only the last segment may be shorter
            yield codes[..., :frames], _take_scale(model, scales)
            codes, scales = codes[..., frames:], None if scales is None else scales[:, 1:]
    while codes is not None and codes.shape[-1] > 0:
        yield codes[..., :frames], _take_scale(model, scales)
        codes, scales = codes[..., frames:], None if scales is None else scales[:, 1:]


def _take_scale(model: EncodecModel, scales: torch.Tensor | None) -> torch.Tensor | None:
    if scales is None or scales.shape[-1] == 0:
        if model.normalize:
            raise CodecError(f"{model.arch} needs one scale per segment to decode, and one is missing")
        return None
    return scales[:, :1]


def iter_decode_segments(model: EncodecModel, pieces: Iterable[EncodedAudio | torch.Tensor],
                         length: int | None = None) -> Iterator[torch.Tensor]:
    """Decode a segmented model's codes segment by segment; yields final samples `[B, C, s_i]`.

    The linear overlap-add runs incrementally with the same arithmetic as `model.decode`, so the concatenated
    output equals it exactly; trimmed to `length` samples when given.
    """
    if model.segment_length is None:
        raise CodecError(f"{model.arch} is not segmented; use StreamingDecoder")
    stride = model.segment_stride
    weight = None
    out: torch.Tensor | None = None  # weighted sums from sample `base` on
    sum_weight: torch.Tensor | None = None
    base = emitted = 0

    def emit(upto: int):
        nonlocal out, sum_weight, base, emitted
        n = upto - base
        wav = out[..., :n] / sum_weight[:n]
        out, sum_weight, base = out[..., n:], sum_weight[n:], upto
        if length is not None:
            wav = wav[..., : max(0, length - emitted)]
        emitted += wav.shape[-1]
        return wav

    for index, (codes, scale) in enumerate(_segments(model, pieces)):
        with torch.inference_mode():
            frame = model.decode_segment(codes, scale)  # [B, C, n]
        if weight is None:
            weight = overlap_weight(frame.shape[-1], frame.dtype, frame.device)
            out = frame.new_zeros(*frame.shape[:-1], 0)
            sum_weight = frame.new_zeros(0)
        offset, n = index * stride - base, frame.shape[-1]
        grow = offset + n - out.shape[-1]
        if grow > 0:
            out = F.pad(out, (0, grow))
            sum_weight = F.pad(sum_weight, (0, grow))
        out[..., offset : offset + n] += weight[:n] * frame
        sum_weight[offset : offset + n] += weight[:n]
        wav = emit(base + min(stride * (index + 1) - base, out.shape[-1]))
        if wav.shape[-1]:
            yield wav
    if out is not None and out.shape[-1]:
        wav = emit(base + out.shape[-1])
        if wav.shape[-1]:
            yield wav


# -- what the CLI uses ------------------------------------------------------------------------------------------------


def encode_stream(model: EncodecModel, chunks: Iterable[torch.Tensor], bandwidth: float) -> Iterator[EncodedAudio]:
    """Encode waveform chunks `[B, C, s_i]` in bounded memory; yields `EncodedAudio` pieces in time order.

    Causal unsegmented models (24 kHz) yield codes `[B, K, t_i]` as they become final (no scales); segmented models
    (48 kHz) yield one piece per segment with its scale `[B, 1]`. Concatenating the pieces' codes (and scales)
    along the last axis gives `model.encode(whole).codes` (and `.scales`).
    """
    if model.segment_length is not None:
        yield from iter_encode_segments(model, chunks, bandwidth)
        return
    encoder = StreamingEncoder(model, bandwidth)
    for chunk in chunks:
        codes = encoder.push(chunk)
        if codes.shape[-1]:
            yield EncodedAudio(codes=codes)
    codes = encoder.flush()
    if codes.shape[-1]:
        yield EncodedAudio(codes=codes)


def decode_stream(model: EncodecModel, pieces: Iterable[EncodedAudio | torch.Tensor],
                  length: int | None = None) -> Iterator[torch.Tensor]:
    """Decode pieces of codes (`EncodedAudio` or bare `[B, K, t_i]` tensors) into waveform chunks `[B, C, s_i]`.

    Pieces may be cut anywhere in time; for segmented models the scales travel in the pieces (one per segment).
    The output is trimmed to `length` samples when given.
    """
    if model.segment_length is not None:
        yield from iter_decode_segments(model, pieces, length)
        return
    decoder = StreamingDecoder(model)
    emitted = 0

    def trimmed(wav):
        nonlocal emitted
        if length is not None:
            wav = wav[..., : max(0, length - emitted)]
        emitted += wav.shape[-1]
        return wav

    for piece in pieces:
        codes = piece if isinstance(piece, torch.Tensor) else piece.codes
        wav = trimmed(decoder.push(codes))
        if wav.shape[-1]:
            yield wav
    wav = trimmed(decoder.flush())
    if wav.shape[-1]:
        yield wav
