#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh) and runs the main job: a codec roundtrip of a sample on the embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/codec roundtrip samples/speech_fr.flac -b 6 "$@"
