"""The default codec without torch: its networks as ONNX graphs run by ONNX Runtime, the signal processing in numpy.

`import torch` alone takes about 3 s on a 2-core CPU, longer than a short file takes to code. The command line
(`codec compress` / `decompress` / `roundtrip` of the default codec) therefore runs this runtime: numpy, soundfile and
onnxruntime import in about 0.5 s.

- `export.py` (needs torch): writes the two ConvNeXt stacks of a `FrameCodec` as ONNX graphs, its codebooks and its
  chunking constants into a cache folder named after the weights' sha256, once per weights file.
- `dsp.py`: the STFT framing, encoder features and inverse STFT of `FrameCodec`, in numpy.
- `framecodec.py`: `RuntimeFrameCodec`, the `Codec` these make up; codes and waveforms are numpy arrays.

Same weights, same `.ecdc` files (the weights' sha256 is the same), same chunking; float rounding differs between the
two runtimes (ONNX Runtime's kernels, numpy's FFT), so a code at a near-tie can come out differently (measured in
tests/codec/test_runtime.py). The torch model stays the reference: training, the Python API and `audiolm` use it.
"""

from .framecodec import RuntimeFrameCodec, load_runtime_codec

__all__ = ["RuntimeFrameCodec", "load_runtime_codec"]
