#!/usr/bin/env bash
# fac's feature-space path vs the naive HF output_hidden_states + sae-lens path on one GPU, in at most 5 minutes.
# Prints one markdown table (tokens/s, peak memory) and the agreement of the two paths' active features.
#   bench/gpu.sh                                  # the embedded default model and the shipped SAE
#   MODEL=/models/Llama-3.1-8B-Instruct SAE=/saes/llama-l16 bench/gpu.sh   # any model dir + sae-lens SAE dir
# Needs the CUDA build of torch in .venv (or PYTHON=...). Never run by CI or the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" FAC_CACHE_DIR="${FAC_CACHE_DIR:-$HOME/.cache/fac}"
exec timeout 300 "$PYTHON" bench/gpu_paths.py --model "${MODEL:-default}" --sae "${SAE:-default}" \
    --n-texts "${N_TEXTS:-2000}" --budget-s "${BUDGET_S:-240}" "$@"
