"""`RuntimeFrameCodec`: the default codec on ONNX Runtime and numpy, with no torch in the process.

Same interface as `FrameCodec` (`codec.interface.Codec`), with numpy arrays where the torch model has tensors:
waveforms `[B, 1, S]` float32, codes `[B, K, T]` int64. The residual VQ is written out here with the same distance
expression as `codec.quantization.vq` (nearest codebook entry by -(|x|^2 - 2 x.e + |e|^2)).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from ..errors import WeightsError
from ..interface import Codec, EncodedAudio, WeightsInfo, file_sha256
from ..models.chunks import decode_in_chunks, encode_in_chunks
from . import dsp
from .export import RUNTIME_FORMAT, ensure_runtime

LOG_MAGNITUDE_MAX = 6.0  # the clamp of `FrameCodec.synthesise_spec`


def _omp_threads() -> int:
    """The first number of `$OMP_NUM_THREADS` (OpenMP allows a list such as "2,1"), or 0 when unset or unreadable."""
    first = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(first) if first.isdigit() else 0


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:200] or type(error).__name__


class RuntimeFrameCodec(Codec):
    """A `FrameCodec` exported by `codec.runtime.export`, run without torch.

    Args:
        directory: the runtime folder (graphs, codebooks, runtime.json).
        weights: the weights it was exported from (name, sha256, path), as the torch model reports them.
        threads: ONNX Runtime threads per graph (default: `$OMP_NUM_THREADS` when set, as torch and numpy's BLAS
            read it, else ONNX Runtime's own choice, the physical cores).
    """

    channels = 1
    arch = "framecodec"
    runtime = "onnxruntime"

    def __init__(self, directory: str | Path, weights: WeightsInfo, threads: int | None = None):
        import onnxruntime as ort

        directory = Path(directory)
        meta = json.loads((directory / "runtime.json").read_text())
        if meta.get("format") != RUNTIME_FORMAT or meta.get("sha256") != weights.sha256:
            raise WeightsError(f"{directory}: not the runtime of {weights.name} (sha256 {weights.sha256[:16]})")
        config = meta["config"]
        self.weights = weights
        self.sample_rate = int(config["sample_rate"])
        self.hop = int(config["hop_length"])
        self.n_fft = int(config["fft_factor"]) * self.hop
        self.frame_rate = self.sample_rate / self.hop
        self.max_codebooks = int(config["num_codebooks"])
        self.cardinality = int(config["codebook_size"])
        self.bandwidths = tuple(float(b) for b in config["bandwidths"])
        self.chunk_frames = int(meta["chunk_frames"])
        self.contexts = int(meta["encoder_context"]), int(meta["decoder_context"])
        self.window = dsp.hann_window(self.n_fft)
        self.codebooks = np.load(directory / "codebooks.npy")  # [K, N, D]
        self.codebook_norms = (self.codebooks * self.codebooks).sum(-1)  # [K, N]
        self.scaled_codebooks = np.ascontiguousarray(-2 * self.codebooks.transpose(0, 2, 1))  # [K, D, N]
        options = ort.SessionOptions()
        # ONNX Runtime's threads spin for a while after each run by default; numpy's BLAS runs right after (the VQ),
        # and on 2 cores the spinning threads took its cores (the VQ of 5 s of audio: 76 ms instead of 20 ms)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        threads = threads or _omp_threads()
        if threads > 0:
            options.intra_op_num_threads = threads
        cpu = ["CPUExecutionProvider"]
        self.encoder = ort.InferenceSession(str(directory / "encoder.onnx"), options, providers=cpu)
        self.decoder = ort.InferenceSession(str(directory / "decoder.onnx"), options, providers=cpu)

    # -- building blocks (numpy) ----------------------------------------------------------------------------------
    def analyse(self, wav: np.ndarray) -> np.ndarray:
        """wav [B, 1, S], S a multiple of hop -> latent, frame-major [B, S / hop, D]."""
        features = dsp.spectral_features(dsp.stft(wav[:, 0].astype(np.float32), self.n_fft, self.hop, self.window))
        return self.encoder.run(None, {"features": features})[0]

    def quantize(self, latent: np.ndarray, num_codebooks: int) -> np.ndarray:
        """latent [B, T, D] -> codes [B, K, T].

        The torch model picks argmax of -((|x|^2 - 2 x.e) + |e|^2) (Meta's expression, whose rounding decides
        near-ties). Here the same sums in the same order, in place: x @ (-2 e^T) is exactly -(2 x) @ e^T (scaling by
        2 and negating are exact), and argmin of the sum is argmax of its negation, ties included.
        """
        B, T, D = latent.shape
        residual = np.ascontiguousarray(latent).reshape(-1, D)  # [B T, D]
        codes = np.empty((num_codebooks, B * T), np.int64)
        for k in range(num_codebooks):
            distance = residual @ self.scaled_codebooks[k]  # -2 x.e, [B T, N]
            distance += (residual * residual).sum(1, keepdims=True)
            distance += self.codebook_norms[k]
            codes[k] = distance.argmin(-1)
            residual = residual - self.codebooks[k][codes[k]]
        return codes.reshape(num_codebooks, B, T).transpose(1, 0, 2).copy()

    def dequantize(self, codes: np.ndarray) -> np.ndarray:
        """codes [B, K, T] -> latent [B, T, D], the selected vectors summed in codebook order."""
        out = np.zeros((*codes[:, 0].shape, self.codebooks.shape[-1]), np.float32)
        for k in range(codes.shape[1]):
            out += self.codebooks[k][codes[:, k]]
        return out

    def synthesise(self, latent: np.ndarray) -> np.ndarray:
        """latent [B, T, D] -> wav [B, 1, T * hop]."""
        out = self.decoder.run(None, {"latent": latent})[0]  # [B, T, 2F]
        log_magnitude, phase = np.split(out, 2, axis=-1)
        magnitude = np.exp(np.minimum(log_magnitude, np.float32(LOG_MAGNITUDE_MAX)))
        return dsp.istft(magnitude, phase, self.n_fft, self.hop, self.window)[:, None]

    # -- the Codec interface ----------------------------------------------------------------------------------------
    def encode(self, wav: np.ndarray, bandwidth: float) -> EncodedAudio:
        return self.encode_blocks([wav], bandwidth)

    def encode_blocks(self, blocks: Iterable[np.ndarray], bandwidth: float) -> EncodedAudio:
        """Encode a waveform arriving in consecutive blocks `[B, 1, s_i]`, in bounded memory (as `FrameCodec`)."""
        num_codebooks = self.codebooks_for(bandwidth)

        def encode_window(window: np.ndarray, first: int, last: int) -> np.ndarray:
            return self.quantize(self.analyse(window)[:, first:last], num_codebooks)

        blocks = (np.asarray(block, np.float32) for block in blocks)
        codes, length, batch = encode_in_chunks(blocks, self.hop, self.chunk_frames, self.contexts[0], encode_window)
        if codes is None:
            codes = np.zeros((batch, num_codebooks, 0), np.int64)
        return EncodedAudio(codes=codes, length=length)

    def decode(self, encoded: EncodedAudio) -> np.ndarray:
        pieces = list(self.iter_decode(encoded))
        return np.concatenate(pieces, axis=-1) if pieces else np.zeros((encoded.codes.shape[0], 1, 0), np.float32)

    def iter_decode(self, encoded: EncodedAudio) -> Iterator[np.ndarray]:
        """The decoded waveform as consecutive pieces `[B, 1, s_i]` (one per chunk), trimmed to `encoded.length`."""
        codes = np.asarray(encoded.codes)
        if codes.size and (codes.min() < 0 or codes.max() >= self.cardinality):
            raise ValueError(f"codes must be in 0..{self.cardinality - 1}")
        yield from decode_in_chunks(codes, self.hop, self.chunk_frames, self.contexts[1], encoded.length,
                                    lambda window: self.synthesise(self.dequantize(window)))


def load_runtime_codec(path: str | Path, name: str | None = None, threads: int | None = None) -> RuntimeFrameCodec:
    """The torch-free runtime of the frame-codec weights file `path`, exported into the cache on first use (which
    loads torch once; later loads do not)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"no weights file at {path}")
    sha256 = file_sha256(path)
    weights = WeightsInfo(name=name or path.stem, sha256=sha256, path=str(path))
    directory = ensure_runtime(path, sha256, weights.name)
    try:
        return RuntimeFrameCodec(directory, weights, threads)
    except Exception as first:  # a damaged or stale folder (ONNX Runtime raises its own types): export it again
        directory = ensure_runtime(path, sha256, weights.name, again=True)
        try:
            return RuntimeFrameCodec(directory, weights, threads)
        except Exception as exc:
            raise WeightsError(f"{directory}: the runtime export does not load ({_one_line(exc)}; before "
                               f"exporting again: {_one_line(first)}); use --runtime torch") from exc
