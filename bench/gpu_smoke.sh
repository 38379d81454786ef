#!/usr/bin/env bash
# GPU smoke: SFT, reward model and 8 PPO updates of a Pythia-160M-shaped model (built from a config) in bf16.
# Usage: bash bench/gpu_smoke.sh [results.json]      (uses .venv if present, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
exec "$PY" bench/gpu_smoke.py --out "${1:-gpu_smoke.json}"
