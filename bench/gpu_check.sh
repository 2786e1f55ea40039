#!/usr/bin/env bash
# GPU check (issue 4): a 2-trial search and a soup on the full 308M EmbeddingGemma shape.
# Needs a CUDA machine with Python 3.11; installs the project (and its data sources) first.
# Offline (no pip index), with wheels carried in .whl/: bench/gpu_check_offline.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get update -o Acquire::Languages=en >/dev/null && apt-get install -y wordnet-base fortunes sword-text-kjv sword-text-web >/dev/null || true
fi
pip install -q -e . 2>&1 | tail -1
PYTHONUNBUFFERED=1 python bench/gpu_check.py
