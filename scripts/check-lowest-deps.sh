#!/usr/bin/env bash
# Install the LOWEST versions pyproject.toml allows for the project's direct dependencies into a fresh venv and
# run the fast tests there, so that every declared floor is a version the code actually works with.
#   bash scripts/check-lowest-deps.sh            # venv in ${LOWEST_VENV:-/tmp/harness-lowest-venv}
# torch is the one exception: the venv takes the torch already installed beside the calling python (the CPU
# wheel), since PyPI's oldest torch for these floors is a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${LOWEST_VENV:-/tmp/harness-lowest-venv}"
PY="${PYTHON:-python3}"
start=$(date +%s)

rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q uv
torch_version="$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || echo 2.13.0)"
overrides="$(mktemp)"
trap 'rm -f "$overrides"' EXIT
echo "torch==${torch_version}" >"$overrides"
# pip's find-links / extra indexes (local wheels such as the CPU torch) are honoured by uv through these.
if [ -n "${PIP_FIND_LINKS:-}" ]; then export UV_FIND_LINKS="$PIP_FIND_LINKS"; fi
"$VENV/bin/python" -m uv pip install --python "$VENV/bin/python" --resolution lowest-direct \
  --override "$overrides" --index-strategy unsafe-best-match -e '.[test]'
"$VENV/bin/python" -m pip list 2>/dev/null | grep -iE '^(torch|transformers|tokenizers|trl|peft|accelerate|datasets|lm.eval|pydantic|numpy|pandas) '

# The fast tests (no slow marker); the vllm module skips (vllm is an extra).
HARNESS_DATA_DIR="${HARNESS_DATA_DIR:-$PWD/../shared/data}" NLTK_DATA="${NLTK_DATA:-$PWD/../shared/data/nltk_data}" \
  "$VENV/bin/python" -m pytest -q -m 'not slow' -x -p no:cacheprovider "$@"
echo "check-lowest-deps: $(( $(date +%s) - start )) s"
