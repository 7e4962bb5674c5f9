#!/usr/bin/env bash
# Sets up everything on a fresh clone: system tools (when we are root and apt exists), .venv/, the packages.
# Idempotent: a second run only checks. Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf 'setup: %s\n' "$*" >&2; }

APT_PACKAGES=(ffmpeg sox opus-tools lame codec2 flite espeak-ng chromium)
missing=()
for tool in ffmpeg sox opusenc lame c2enc flite espeak-ng chromium; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing system tools (${missing[*]}) with apt-get"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${APT_PACKAGES[@]}" >/dev/null) \
      || say "apt-get failed: baselines/formats that need ${missing[*]} will be skipped with a note"
  else
    say "not root or no apt-get: ${missing[*]} missing; baselines/formats that need them are skipped with a note"
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.setup-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  say "installing packages into .venv (first time: torch+torchaudio are several GB, a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first, pinned, so that nothing else pulls a different build
  .venv/bin/python -m pip install -q torch==2.9.1 torchaudio==2.9.1
  .venv/bin/python -m pip install -q -e '.[test]'
  touch "$stamp"
fi
say "ready: .venv/bin/codec, .venv/bin/audiolm"
