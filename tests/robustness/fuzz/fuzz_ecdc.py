"""atheris harness for the `.ecdc` reader: any bytes end in a well-formed decode or one one-line `ContainerError`.

Run: `python fuzz_ecdc.py [libFuzzer flags] CORPUS_DIR` (e.g. `-max_total_time=20 -rss_limit_mb=1536 -timeout=10`);
`python fuzz_ecdc.py --write-seeds DIR` writes valid files (24 and 48 kHz, with and without our checksum) to start from.
Every input is read twice, as a seekable file and as an unseekable pipe with short reads.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["codec.container"]):
    from codec.container import ENCODEC_24KHZ, ENCODEC_48KHZ, META_LAYOUTS, EcdcHeader, read_ecdc, write_ecdc

import torch

from codec.errors import CodecError, ContainerError
from codec.interface import EncodedAudio


class Pipe:
    """An unseekable reader returning at most 7 bytes a read."""

    def __init__(self, data: bytes):
        self._data, self._pos = data, 0

    def seekable(self) -> bool:
        return False

    def read(self, size: int = -1) -> bytes:
        size = len(self._data) - self._pos if size < 0 else min(size, 7)
        out = self._data[self._pos : self._pos + size]
        self._pos += len(out)
        return out


def check_one(data: bytes) -> None:
    """Raises AssertionError (or the unexpected exception) when the reader misbehaves on `data`."""
    for stream in (io.BytesIO(data), Pipe(data)):
        try:
            encoded = read_ecdc(stream, META_LAYOUTS).encoded
        except ContainerError as error:
            message = str(error)
            assert message and "\n" not in message and len(message) < 300, repr(message)
            continue
        except CodecError as error:  # another of the project's errors would still be a clear one, but not expected
            raise AssertionError(f"{type(error).__name__} instead of ContainerError: {error}") from error
        layout = ENCODEC_48KHZ if encoded.scales is not None else ENCODEC_24KHZ
        frames = sum(layout.frames_for(n) for n in layout.segments(encoded.length))
        assert encoded.codes.dim() == 3 and encoded.codes.shape[-1] == frames, (encoded.codes.shape, frames)
        assert len(data) >= encoded.codes.numel() * 10 // 8, "decoded more codes than the bytes can hold"
        if encoded.codes.numel():
            assert 0 <= int(encoded.codes.min()) and int(encoded.codes.max()) < 1024


def seeds() -> dict[str, bytes]:
    out = {}
    for name, layout, length in (("encodec_24khz", ENCODEC_24KHZ, 1500), ("encodec_48khz", ENCODEC_48KHZ, 48_400)):
        for checksum in (True, False):
            gen = torch.Generator().manual_seed(length)
            frames = sum(layout.frames_for(n) for n in layout.segments(length))
            codes = torch.randint(0, 1024, (1, 2, frames), generator=gen)
            scales = torch.rand(1, layout.num_segments(length), generator=gen) + 0.1 if layout.normalize else None
            buffer = io.BytesIO()
            header = EcdcHeader(name, weights_sha256="ab" * 32 if checksum else None)
            encoded = EncodedAudio(codes, scales, layout.segment_frames, length)
            write_ecdc(buffer, header, encoded, layout, checksum=checksum)
            out[f"{name}_{'crc' if checksum else 'meta'}.ecdc"] = buffer.getvalue()
    return out


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--write-seeds":
        for name, data in seeds().items():
            Path(sys.argv[2], name).write_bytes(data)
        return
    atheris.Setup(sys.argv, check_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
