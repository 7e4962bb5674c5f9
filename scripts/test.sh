#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh) and runs the whole test suite. `.ci/run` calls this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# two workers (pytest-xdist), one thread each: most tests are small and Python-bound, so this uses both cores best
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec .venv/bin/python -m pytest -q -p no:cacheprovider -n "${PYTEST_WORKERS:-2}" --durations=15 "$@"
