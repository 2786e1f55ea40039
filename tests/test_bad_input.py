"""Hostile and careless input through the CLI, as one table.

Every row builds a working folder, runs one `soupkit` command on it, and checks what a user must
always get: exit code 2, exactly one line on stderr (starting `error:`, no traceback) that names
the problem, and not one file written, changed or deleted (a hash of the whole folder, contents
and links included, before and after). Rows that would have destroyed data (issue 11) are marked.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from soupkit.cli import main


BASE = "name: t\nfamilies: [medical-icd10, medical-icd10-chapters]\n"


@dataclass
class Workdir:
    """What a row's setup may use: the folder (hashed), the tiny model (copied on demand)."""

    root: Path
    request: pytest.FixtureRequest
    monkeypatch: pytest.MonkeyPatch
    holds: list = field(default_factory=list)  # things to keep alive while the command runs

    @property
    def model(self) -> Path:
        return self.request.getfixturevalue("tiny_model")

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
        return path

    def recipe(self, text: str, name: str = "recipe.yaml") -> Path:
        return self.write(name, text)

    def tiny_recipe(self, **changes) -> Path:
        data = self.request.getfixturevalue("tiny_recipe")(self.model).model_dump(mode="json")
        return self.write("tiny.yaml", yaml.safe_dump({**data, **changes}, sort_keys=False))

    def own_data(self, filename: str, content: str | bytes | None) -> list[str]:
        """A search whose first family is the user's file `filename` (None: make it a folder)."""
        if content is None:
            (self.root / filename).mkdir()
        else:
            self.write(filename, content)
        entry = {"name": "mine", "path": str(self.root / filename)}
        recipe = self.tiny_recipe(families=[entry, "medical-icd10"], seed_mixture=None)
        return search(recipe, self.root / "run")

    def model_copy(self, name: str) -> Path:
        return Path(shutil.copytree(self.model, self.root / name))


def search(recipe: Path, out: Path, *extra: str) -> list[str]:
    return ["search", "--recipe", str(recipe), "--out", str(out), "--quiet", *extra]


def truncate(file: Path) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])


# --- setups that need more than a line -------------------------------------------------------------


def merge_into_parent_of_inputs(w: Workdir) -> list[str]:
    """Issue 11 #1: this deleted both inputs and every other file of `par` (exit 0)."""
    a, b = w.model_copy("par/pA"), w.model_copy("par/pB")
    w.write("par/notes.txt", "mine")
    return ["merge", str(a), str(b), "--out", str(w.root / "par"), "--overwrite"]


def merge_over_a_user_folder(w: Workdir) -> list[str]:
    a, b = w.model_copy("a"), w.model_copy("b")
    w.write("photos/cat.jpg", b"\xff\xd8 not really a cat")
    return ["merge", str(a), str(b), "--out", str(w.root / "photos"), "--overwrite"]


def merge_without_weights(w: Workdir) -> list[str]:
    """Issue 11 #10: two folders without model.safetensors merged into a model with no backbone."""
    a, b = w.model_copy("a"), w.model_copy("b")
    (a / "model.safetensors").unlink()
    (b / "model.safetensors").unlink()
    return ["merge", str(a), str(b), "--out", str(w.root / "merged")]


def merge_incompatible(w: Workdir) -> list[str]:
    a, narrow = w.model_copy("a"), w.model_copy("narrow")
    dense = narrow / "2_Dense"
    weight = load_file(dense / "model.safetensors")["linear.weight"]
    save_file({"linear.weight": weight[:8].contiguous()}, dense / "model.safetensors")
    config = json.loads((dense / "config.json").read_text())
    (dense / "config.json").write_text(json.dumps({**config, "out_features": 8}))
    return ["merge", str(a), str(narrow), "--out", str(w.root / "soup")]


def merge_corrupt(w: Workdir) -> list[str]:
    a, broken = w.model_copy("a"), w.model_copy("broken")
    truncate(broken / "2_Dense" / "model.safetensors")
    return ["merge", str(a), str(broken), "--out", str(w.root / "soup")]


def search_into_folder_with_user_recipe(w: Workdir) -> list[str]:
    """Issue 11 #3: the user's recipe.yaml in --out was overwritten with the resolved recipe."""
    w.write("project/recipe.yaml", "# my notes\nname: mine\nfamilies: [clustering]\n")
    return search(w.tiny_recipe(), w.root / "project")


def search_over_another_recipes_run(w: Workdir) -> list[str]:
    w.write("run/recipe.yaml", "# soupkit run folder: the resolved recipe of this search (written by soupkit search)\n"
            + yaml.safe_dump(w.request.getfixturevalue("tiny_recipe")(w.model, steps=5).model_dump(mode="json")))
    return search(w.tiny_recipe(), w.root / "run")


def search_with_corrupt_base(w: Workdir) -> list[str]:
    truncate(w.model / "model.safetensors")
    return search(w.tiny_recipe(), w.root / "run", "--base", str(w.model))


def search_without_a_data_package(w: Workdir) -> list[str]:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    w.monkeypatch.setattr(importlib.util, "find_spec",
                          lambda name, *a, **k: None if name == "simple_icd_10_cm" else real_find_spec(name, *a, **k))
    return search(w.tiny_recipe(), w.root / "run")


def search_without_a_debian_package(w: Workdir) -> list[str]:
    """A recipe with a family whose Debian source README command 1 does not install (medical-go)."""
    from soupkit.data.sources import gene_ontology

    w.monkeypatch.setattr(gene_ontology.go_sqlite, "__defaults__", ((str(w.root / "no-R" / "GO.sqlite"),),))
    return search(w.tiny_recipe(families=["medical-go", "medical-icd10"], seed_mixture=None), w.root / "run")


def read_only(w: Workdir, also_access: bool = True) -> Path:
    """A folder on a "read-only file system": mkdir under it fails with EROFS, and (unless
    `also_access` is off, as when a disk is remounted after the checks) os.access says so."""
    import errno

    ro = w.root / "ro"
    ro.mkdir()
    real_access, real_mkdir = os.access, os.mkdir

    def access(path, mode, *args, **kwargs):
        inside = str(path).startswith(str(ro))
        return False if inside and mode & os.W_OK else real_access(path, mode, *args, **kwargs)

    def mkdir(path, *args, **kwargs):
        if str(path).startswith(str(ro)):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_mkdir(path, *args, **kwargs)

    w.monkeypatch.setattr(os, "mkdir", mkdir)
    if also_access:
        w.monkeypatch.setattr(os, "access", access)
    return ro


def dashboard_on_a_taken_port(w: Workdir) -> list[str]:
    from soupkit.search.study import open_storage

    open_storage(f"sqlite:///{w.root / 'study.db'}", create=True)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    w.holds.append(taken)
    return ["dashboard", "--out", str(w.root), "--port", str(taken.getsockname()[1])]


def bad_mixture_file(w: Workdir) -> list[str]:
    mix = w.write("mix.yaml", "weights: [1, 2]\n")
    return search(w.recipe(BASE + f"seed_mixture: {mix}\n"), w.root / "run")


# --- issue 31: runs that are not their own, storage opened for writing, writes before checks ------


def fake_run(w: Workdir, name: str = "orig", checkpoints: Path | None = None, trials: int = 2,
             base: bool = False) -> Path:
    """A run folder of the tiny recipe as a search leaves it (recipe.yaml, study.db, owned
    checkpoints folder), with `trials` completed trials whose model folders are stand-ins: made in
    a moment, without training. With `base`, the study names its base model (adapt saves it)."""
    import optuna

    from soupkit.search.checkpoints import claim_checkpoint_folder
    from soupkit.search.run import RUN_MARKER, storage_label
    from soupkit.search.study import close_storage, default_storage, open_storage

    recipe = w.request.getfixturevalue("tiny_recipe")(w.model)
    out = w.root / "runs" / name
    out.mkdir(parents=True)
    (out / "recipe.yaml").write_text(RUN_MARKER + yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False))
    store = open_storage(default_storage(out), create=True)
    study = optuna.create_study(storage=store, study_name=recipe.name, directions=["maximize"])
    root = Path(checkpoints) if checkpoints else out / "trials"
    for number in range(trials):
        folder = root / f"trial-{number:04d}"
        folder.mkdir(parents=True)
        (folder / "modules.json").write_text("[]")
        study.add_trial(optuna.trial.create_trial(value=0.5 + number / 10, user_attrs={
            "checkpoint": str(folder.resolve()), "objective": 0.5 + number / 10}))
    claim_checkpoint_folder(root, study, storage_label(None, out))
    if base:
        from soupkit.study_record import record_base

        record_base(study, {}, 0.5, [0.5], base_model=str(w.model))
    close_storage(store)
    return out


def copied_run_sharing_checkpoints(w: Workdir) -> list[str]:
    """Issue 31 #1: `cp -a runs/orig runs/copy` of a run with an outside --checkpoints folder; the
    copy's --keep-checkpoints removed the original's models."""
    shared = w.root / "shared-models"
    orig = fake_run(w, checkpoints=shared)
    copy = Path(shutil.copytree(orig, orig.parent / "copy", symlinks=True))
    return search(w.tiny_recipe(), copy, "--checkpoints", str(shared), "--keep-checkpoints", "1")


def copied_run_with_another_studys_trials(w: Workdir) -> list[str]:
    """A run folder whose trials/ was copied in from another run (its owner file names another study)."""
    other, mine = fake_run(w, "other"), fake_run(w, "mine", trials=0)
    shutil.rmtree(mine / "trials")
    shutil.copytree(other / "trials", mine / "trials")
    return search(w.tiny_recipe(), mine, "--keep-checkpoints", "1")


def run_whose_trials_hold_user_folders(w: Workdir) -> list[str]:
    """A run made before owner files, whose trials/ also holds a folder its study never recorded."""
    from soupkit.search.checkpoints import OWNER_FILE

    run = fake_run(w)
    (run / "trials" / OWNER_FILE).unlink()
    w.write("runs/orig/trials/trial-0007/precious.bin", b"mine")
    return search(w.tiny_recipe(), run, "--keep-checkpoints", "1")


def checkpoints_of_another_study(w: Workdir) -> list[str]:
    """Issue 31 #2: two studies sharing one checkpoints folder overwrote each other's trials."""
    shared = w.root / "shared-models"
    fake_run(w, "first", checkpoints=shared)
    return search(w.tiny_recipe(), w.root / "runs" / "second", "--checkpoints", str(shared))


def checkpoints_holding(*files: str) -> Callable[[Workdir], list[str]]:
    """Issue 31 #2: `--checkpoints DIR` with the user's files in it (trial-0000/precious.bin was replaced)."""

    def setup(w: Workdir) -> list[str]:
        for name in files:
            w.write(f"models/{name}", b"mine")
        return search(w.tiny_recipe(), w.root / "run", "--checkpoints", str(w.root / "models"))

    return setup


def foreign_sqlite(w: Workdir, name: str) -> Path:
    """A user's own SQLite database (a table of theirs, no Optuna tables)."""
    import sqlite3

    path = w.root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path)) as con:
        con.execute("CREATE TABLE expenses (day TEXT, amount REAL)")
        con.execute("INSERT INTO expenses VALUES ('2026-12-05', 12.5)")
        con.commit()
    return path


def reader_on_foreign_db(command: str) -> Callable[[Workdir], list[str]]:
    """Issue 31 #3: report/soup/dashboard/ingredients added Optuna's 13 tables to a user's database."""

    def setup(w: Workdir) -> list[str]:
        foreign_sqlite(w, "run/study.db")
        return [command, "--out", str(w.root / "run")]

    return setup


def adapt_bank_foreign_db(w: Workdir) -> list[str]:
    foreign_sqlite(w, "bank/study.db")
    return ["adapt", "--recipe", str(w.tiny_recipe()), "--bank", str(w.root / "bank"), "--out", str(w.root / "adapted")]


def adapt_with_bad_own_data(w: Workdir) -> list[str]:
    """Issue 31 #4: adapt wrote <out>/base-model before it read the recipe's own data."""
    run = fake_run(w, base=True)
    w.write("mine.jsonl", '{"anchor": "a", "positive": "b"}\n{"anchor": "c", "posi')
    recipe = w.tiny_recipe(families=[{"name": "mine", "path": str(w.root / "mine.jsonl")}, "medical-icd10"],
                           seed_mixture=None)
    return ["adapt", "--recipe", str(recipe), "--bank", str(run), "--out", str(w.root / "adapted")]


def adapt_into(files: dict[str, str | bytes]) -> Callable[[Workdir], list[str]]:
    """Issue 31 #4: an --out holding the user's files and an empty (or another stage's) study.db."""

    def setup(w: Workdir) -> list[str]:
        run = fake_run(w)
        for name, content in files.items():
            w.write(f"adapted/{name}", content)
        if "search-study" in files:
            shutil.copy(run / "study.db", w.root / "adapted" / "study.db")
        return ["adapt", "--recipe", str(w.tiny_recipe()), "--bank", str(run), "--out", str(w.root / "adapted")]

    return setup


def ingredients_option(*option: str) -> Callable[[Workdir], list[str]]:
    """Issue 31 #6: out-of-range ingredient settings were a pydantic traceback, after an empty
    ingredient study was made."""
    return lambda w: ["ingredients", "--out", str(fake_run(w)), *option]


def merge_twice(how: str) -> Callable[[Workdir], list[str]]:
    """Issue 31 #11: `merge A A` and `merge A link-to-A` made a "2-model soup" of one model."""

    def setup(w: Workdir) -> list[str]:
        a = w.model_copy("a")
        second = {"same": a, "dot-path": w.root / "." / "a", "link": w.root / "link-to-a"}[how]
        if how == "link":
            second.symlink_to(a, target_is_directory=True)
        inputs = [str(a), str(second)] + ([str(w.model_copy("b"))] if how == "dot-path" else [])
        return ["merge", *inputs, "--out", str(w.root / "soup")]

    return setup


def merge_with_tokenizer(content: bytes) -> Callable[[Workdir], list[str]]:
    """Issue 31 #6: a truncated or malformed tokenizer.json in one input was a traceback."""

    def setup(w: Workdir) -> list[str]:
        a, broken = w.model_copy("a"), w.model_copy("broken")
        tokenizer = broken / "tokenizer.json"
        tokenizer.write_bytes(content if content else tokenizer.read_bytes()[: tokenizer.stat().st_size // 2])
        return ["merge", str(a), str(broken), "--out", str(w.root / "soup")]

    return setup


def merge_from_inside_its_output(w: Workdir) -> list[str]:
    """Issue 31 #6: `merge --out .` inside the output folder failed with EBUSY and left `.tmp--old-*`."""
    a, b = w.model_copy("a"), w.model_copy("b")
    inside = w.root / "soup"
    inside.mkdir()
    w.write("soup/soupkit_merge.yaml", "method: uniform\n")  # an earlier soupkit merge
    w.monkeypatch.chdir(inside)
    return ["merge", str(a), str(b), "--out", ".", "--overwrite"]


def no_space(library_text: bool = False):
    """A write that fails as on a full disk: an OSError without a file name, as `file.write`
    raises it, or a library's own error that says so (safetensors: "... (os error 28)")."""
    import errno

    def fail(*args, **kwargs):
        if library_text:
            raise RuntimeError("I/O error: No space left on device (os error 28)")
        raise OSError(errno.ENOSPC, "No space left on device")

    return fail


def merge_on_full_disk(w: Workdir) -> list[str]:
    from soupkit.merge.safetensors_writer import SafetensorsWriter

    a, b = w.model_copy("a"), w.model_copy("b")
    w.monkeypatch.setattr(SafetensorsWriter, "write", no_space())
    return ["merge", str(a), str(b), "--out", str(w.root / "soup")]


def init_model_on_full_disk(w: Workdir) -> list[str]:
    from sentence_transformers import SentenceTransformer

    w.monkeypatch.setattr(SentenceTransformer, "save", no_space(library_text=True))
    return ["init-model", "--tiny-embeddinggemma", str(w.root / "gemma")]


class _FullDiskOs:
    """`os` as soupkit.atomic sees it on a full disk: every file it opens for writing fails."""

    def __getattr__(self, name):
        return no_space() if name == "fdopen" else getattr(os, name)


def report_on_full_disk(w: Workdir) -> list[str]:
    import soupkit.atomic

    run = fake_run(w)
    w.monkeypatch.setattr(soupkit.atomic, "os", _FullDiskOs())
    return ["report", "--out", str(run), "--no-attach", "--html", str(w.root / "report.html")]


def dangling(w: Workdir, name: str) -> Path:
    link = w.root / name
    link.symlink_to(w.root / "gone")
    return link


def fifo_data(w: Workdir) -> list[str]:
    """Issue 31 #12: a FIFO as the data file was "data file not found" (and a read would block)."""
    os.mkfifo(w.root / "mine.jsonl")
    recipe = w.tiny_recipe(families=[{"name": "mine", "path": str(w.root / "mine.jsonl")}, "medical-icd10"],
                           seed_mixture=None)
    return search(recipe, w.root / "run")


def fetch_into(w: Workdir, folder: Path) -> list[str]:
    """Issue 31 #12: `fetch-model --dir` on a place that cannot be written failed only after the
    download; a download must never be tried here (it would reach the network)."""
    import soupkit.models.fetch

    def no_download(*args, **kwargs):
        raise AssertionError("downloaded before the folder was checked")

    w.monkeypatch.setenv("SOUPKIT_HOME", str(w.root / "home"))
    w.monkeypatch.setattr(soupkit.models.fetch, "_download_wheels", no_download)
    return ["fetch-model", "embeddinggemma-300m", "--dir", str(folder)]


@dataclass(frozen=True)
class Case:
    id: str
    setup: Callable[[Workdir], list[str]]
    needles: tuple[str, ...]
    forbidden: tuple[str, ...] = ()  # never in the output (secrets)


def recipe_case(id: str, text: str, *needles: str, command: str = "validate") -> Case:
    def setup(w: Workdir) -> list[str]:
        recipe = w.recipe(text)
        return ["validate", str(recipe)] if command == "validate" else search(recipe, w.root / "run")

    return Case(id, setup, needles)


def own_data_case(id: str, filename: str, content: str | bytes | None, *needles: str) -> Case:
    return Case(id, lambda w: w.own_data(filename, content), ("family 'mine'", *needles))


CASES = [
    # --- recipes: names are slugs, numbers are bounded, every mistake names the file and key ---
    recipe_case("name-absolute-path", "name: /some/dir\nfamilies: [clustering]\n", "name: '/some/dir' is not a plain name"),
    recipe_case("name-climbs-out", "name: ../../x\nfamilies: [clustering]\n", "name: '../../x' is not a plain name"),
    recipe_case("name-dotdot", "name: ..\nfamilies: [clustering]\n", "name: '..' is not a plain name"),
    recipe_case("name-empty", "name: ''\nfamilies: [clustering]\n", "name: '' is not a plain name"),
    recipe_case("name-dotdot-search", "name: ..\nfamilies: [clustering]\n", "is not a plain name", command="search"),
    recipe_case("malformed-yaml", "name: t\nfamilies: [medical-icd10\n", "malformed YAML", "line 3", command="search"),
    recipe_case("unknown-key", BASE + "finetune: {stepz: 3}\n", "unknown key 'finetune.stepz'", command="search"),
    recipe_case("unknown-family", "name: t\nfamilies: [medical-icd1O]\n",
                "unknown family 'medical-icd1O'; did you mean 'medical-icd10'?", command="search"),
    recipe_case("negative-weight", BASE + "seed_mixture: {medical-icd10: -1}\n",
                "seed_mixture: weight of 'medical-icd10' must be", command="search"),
    recipe_case("weight-not-a-number", BASE + "seed_mixture: {medical-icd10: lots}\n",
                "seed_mixture.medical-icd10: Input should be a valid number", command="search"),
    recipe_case("zero-weights", BASE + "seed_mixture: {medical-icd10: 0, medical-icd10-chapters: 0}\n",
                "seed_mixture: weights are all zero", command="search"),
    recipe_case("negative-budget", BASE + "search: {budget: -1}\n", "search.budget: Input should be greater than 0"),
    recipe_case("huge-steps-in-recipe", BASE + "finetune: {steps: 99999999999999999999}\n",
                "finetune.steps: Input should be less than or equal to 1000000"),
    recipe_case("nan-learning-rate", BASE + "finetune: {learning_rate: .nan}\n",
                "finetune.learning_rate: Input should be a finite number"),
    recipe_case("huge-batch", BASE + "finetune: {batch_size: 10000000}\n",
                "finetune.batch_size: Input should be less than or equal to 4096"),
    Case("bad-mixture-file", bad_mixture_file, ("mix.yaml: weights: Input should be a valid dictionary",)),
    Case("recipe-not-found", lambda w: search(w.root / "nope.yaml", w.root / "run"), ("recipe file not found",)),
    # --- command-line numbers: the same bounds as the recipe's fields ---
    Case("steps-overflow", lambda w: search(w.tiny_recipe(), w.root / "run", "--steps", "99999999999999999999"),
         ("--steps: Input should be less than or equal to 1000000, got 99999999999999999999",)),
    Case("budget-zero", lambda w: search(w.tiny_recipe(), w.root / "run", "--budget", "0"),
         ("--budget: Input should be greater than 0, got 0",)),
    Case("budget-huge", lambda w: search(w.tiny_recipe(), w.root / "run", "--budget", "10000000"),
         ("--budget: Input should be less than or equal to 100000",)),
    Case("keep-checkpoints-negative", lambda w: search(w.tiny_recipe(), w.root / "run", "--keep-checkpoints", "-1"),
         ("--keep-checkpoints: Input should be greater than 0",)),
    Case("budget-not-a-number", lambda w: search(w.tiny_recipe(), w.root / "run", "--budget", "many"),
         ("Invalid value for '--budget': 'many' is not a valid integer",)),
    Case("unknown-sampler", lambda w: search(w.tiny_recipe(), w.root / "run", "--sampler", "genius"),
         ("Invalid value for '--sampler'",)),
    Case("soup-top-k-zero", lambda w: ["soup", "--out", str(w.root / "run"), "--top-k", "0"],
         ("Invalid value for '--top-k': 0 is not in the range 1<=x<=1000",)),
    Case("dashboard-port-out-of-range", lambda w: ["dashboard", "--out", str(w.root), "--port", "70000"],
         ("Invalid value for '--port'",)),
    # --- run folders: new, empty, or a soupkit run of the same recipe ---
    Case("out-holds-user-recipe", search_into_folder_with_user_recipe, ("is not empty", "not a soupkit run")),
    Case("out-is-another-recipes-run", search_over_another_recipes_run,
         ("was started with a different recipe (field 'finetune' differs)",)),
    Case("out-is-a-file", lambda w: search(w.tiny_recipe(), w.write("results.txt", "mine")),
         ("results.txt exists and is not a folder",)),
    Case("out-below-a-file", lambda w: search(w.tiny_recipe(), w.write("results.txt", "mine") / "run"),
         ("results.txt is a file, not a folder",)),
    Case("out-on-read-only-fs", lambda w: search(w.tiny_recipe(), read_only(w) / "run"),
         ("run folder", "cannot be written", "is read-only")),
    Case("merge-out-on-read-only-fs", lambda w: ["merge", str(w.model_copy("a")), str(w.model_copy("b")),
                                                 "--out", str(read_only(w) / "m")], ("output folder", "is read-only")),
    Case("merge-fs-turns-read-only", lambda w: ["merge", str(w.model_copy("a")), str(w.model_copy("b")),
                                                "--out", str(read_only(w, also_access=False) / "m")],
         (": Read-only file system",)),
    # --- base models ---
    Case("base-missing", lambda w: search(w.tiny_recipe(), w.root / "run", "--base", str(w.root / "no-model")),
         ("base model path not found",)),
    Case("base-corrupt", search_with_corrupt_base, ("model.safetensors: not a readable safetensors file",)),
    Case("data-package-missing", search_without_a_data_package,
         ("family 'medical-icd10': PyPI package simple-icd-10-cm is missing; install it with: pip install simple-icd-10-cm",)),
    Case("debian-package-missing", search_without_a_debian_package,
         ("family 'medical-go'", "is missing; install it with: apt-get install --no-install-recommends r-bioc-go.db",)),
    # --- the user's own data: one line naming the file and the line ---
    own_data_case("own-empty-jsonl", "mine.jsonl", "", "mine.jsonl has no rows"),
    own_data_case("own-not-utf8", "mine.jsonl", b'{"anchor": "ok", "positive": "fine"}\n{"anchor": "caf\xe9", '
                  b'"positive": "x"}\n', "mine.jsonl: line 2: not UTF-8 text"),
    own_data_case("own-header-only-csv", "mine.csv", "anchor,positive\n", "mine.csv has no rows"),
    own_data_case("own-truncated-jsonl", "mine.jsonl", '{"anchor": "a", "positive": "b"}\n{"anchor": "c", "posi',
                  "mine.jsonl: line 2: not valid JSON", "cut short"),
    own_data_case("own-folder-as-file", "mine.jsonl", None, "mine.jsonl: is a folder, not a data file"),
    own_data_case("own-null-anchor", "mine.jsonl", '{"anchor": "a", "positive": "b"}\n{"anchor": null, "positive": "c"}\n',
                  "mine.jsonl: line 2: 'anchor' must be text, got null"),
    own_data_case("own-numeric-anchor", "mine.jsonl", '{"anchor": 42, "positive": "b"}\n',
                  "mine.jsonl: line 1: 'anchor' must be text, got a number (42)"),
    own_data_case("own-list-positive", "mine.jsonl", '{"anchor": "a", "positive": ["b", "c"]}\n',
                  "mine.jsonl: line 1: 'positive' must be text, got a list"),
    own_data_case("own-one-row", "mine.jsonl", '{"anchor": "a", "positive": "b"}\n',
                  "too small to use: 1 training examples and a probe of 0 queries"),
    own_data_case("own-ragged-csv", "mine.csv", "anchor,positive\na,b\nc\n", "mine.csv: line 3: has 1 fields, the header 2"),
    own_data_case("own-wrong-columns", "mine.jsonl", '{"question": "a", "answer": "b"}\n',
                  "needs columns anchor,positive[,negative] or text,label; found answer, question"),
    own_data_case("own-unsupported-type", "mine.txt", "a\n", "unsupported file type '.txt'"),
    Case("own-missing-file", lambda w: search(w.tiny_recipe(families=[{"name": "mine", "path": str(w.root / "no.jsonl")}],
                                                            seed_mixture=None), w.root / "run"),
         ("family 'mine': data file not found",)),
    # --- merges: never over, into or above an input; never a model without weights ---
    Case("merge-out-holds-inputs", merge_into_parent_of_inputs, ("holds input",)),
    Case("merge-out-inside-input", lambda w: ["merge", str(w.model_copy("a")), str(w.model_copy("b")),
                                              "--out", str(w.root / "a" / "sub")], ("is inside input",)),
    Case("merge-overwrite-user-folder", merge_over_a_user_folder, ("--overwrite replaces only a merged model soupkit wrote",)),
    Case("merge-without-weights", merge_without_weights, ("model.safetensors is missing: module '0' (Transformer)",)),
    Case("merge-out-is-a-file", lambda w: ["merge", str(w.model_copy("a")), str(w.model_copy("b")),
                                           "--out", str(w.write("merged", "mine"))], ("exists and is not a folder",)),
    Case("merge-missing-folder", lambda w: ["merge", str(w.model_copy("a")), str(w.root / "nowhere"), "--out",
                                            str(w.root / "soup")], ("model folder not found",)),
    Case("merge-corrupt-safetensors", merge_corrupt, ("2_Dense/model.safetensors: not a readable safetensors file",)),
    Case("merge-incompatible", merge_incompatible, ("tensor 'linear.weight' has shape [8, 32]",)),
    Case("merge-nan-weight", lambda w: ["merge", str(w.model_copy("a")), str(w.model_copy("b")), "--out",
                                        str(w.root / "m"), "--method", "weighted", "--weights", "1,nan"],
         ("--weights must be finite numbers",)),
    Case("merge-param-not-a-number", lambda w: ["merge", str(w.model_copy("a")), str(w.model_copy("b")), "--out",
                                                str(w.root / "m"), "--method", "slerp", "--param", "t=lots"],
         ("parameter 't' must be a finite number or true/false, got 'lots'",)),
    Case("merge-param-seed-overflow", lambda w: ["merge", str(w.model_copy("a")), str(w.model_copy("b")), "--out",
                                                 str(w.root / "m"), "--method", "dare_linear", "--base",
                                                 str(w.model_copy("base")), "--param", "seed=1e400"],
         ("parameter 'seed' must be a finite number",)),
    Case("merge-param-density-out-of-range", lambda w: ["merge", str(w.model_copy("a")), str(w.model_copy("b")),
                                                        "--out", str(w.root / "m"), "--method", "ties", "--base",
                                                        str(w.model_copy("base")), "--param", "density=7"],
         ("parameter 'density' must be between 0 and 1, got 7",)),
    # --- storage URLs: fail fast, and never show a password ---
    Case("storage-unknown-scheme", lambda w: ["search", "--storage", "mysql+nosuchdriver://u:hunter2@127.0.0.1/x",
                                              "--out", str(w.root / "run")],
         ("cannot open study storage 'mysql+nosuchdriver://u:***@127.0.0.1/x': Can't load plugin",), ("hunter2",)),
    Case("storage-password-in-query", lambda w: ["search", "--recipe", str(w.tiny_recipe()), "--storage",
                                                 "postgresql://u@127.0.0.1:1/x?password=hunter2", "--out",
                                                 str(w.root / "run")],
         ("cannot open study storage 'postgresql://u@127.0.0.1:1/x?password=***'",), ("hunter2",)),
    Case("soup-unreachable-storage", lambda w: ["soup", "--storage", "postgresql://u:hunter2@127.0.0.1:1/x"],
         ("cannot open study storage 'postgresql://u:***@127.0.0.1:1/x'",), ("hunter2",)),
    Case("dashboard-unreachable-storage", lambda w: ["dashboard", "--storage", "postgresql://127.0.0.1:1/x"],
         ("cannot open study storage 'postgresql://127.0.0.1:1/x'",)),
    Case("soup-name-is-a-path", lambda w: ["soup", "--out", str(w.root / "run"), "--name", "../../x"],
         ("--name: '../../x' is not a plain name",)),
    Case("report-over-a-user-file", lambda w: ["report", "--out", str(w.root / "run"), "--html",
                                               str(w.write("notes.html", "<html>my notes</html>"))],
         ("notes.html exists and is not a soupkit report",)),
    Case("soup-without-study", lambda w: ["soup", "--out", str(w.root / "run")], ("no study found",)),
    Case("dashboard-port-taken", dashboard_on_a_taken_port, ("Address already in use",)),
    Case("init-model-both-sizes", lambda w: ["init-model", "--tiny-embeddinggemma", str(w.root / "a"),
                                             "--full-embeddinggemma", str(w.root / "b")], ("give exactly one of",)),
    # --- issue 31 #1: a copied or moved run acts only on its own folders ---
    Case("copied-run-shares-originals-checkpoints", copied_run_sharing_checkpoints,
         ("shared-models is used by the study 'tiny' in", "orig/study.db, of which this run is a copy")),
    Case("run-holds-another-studys-trials", copied_run_with_another_studys_trials,
         ("trials belongs to study 'tiny' in", "other/study.db")),
    Case("run-trials-hold-user-folder", run_whose_trials_hold_user_folders,
         ("holds trial-0007, which this study did not write",)),
    # --- issue 31 #2: a checkpoints folder belongs to one study; names soupkit did not write stay ---
    Case("checkpoints-of-another-study", checkpoints_of_another_study, ("shared-models belongs to study 'tiny'",)),
    Case("checkpoints-hold-trial-folder", checkpoints_holding("trial-0000/precious.bin"),
         ("models holds trial-0000, which this study did not write",)),
    Case("checkpoints-hold-user-files", checkpoints_holding("notes.txt", "photos/cat.jpg"),
         ("models holds notes.txt, photos",)),
    Case("checkpoints-hold-partial-and-user", checkpoints_holding(".tmp-trial-0000-x/a", "trial-0001/b"),
         ("models holds trial-0001,",)),
    # --- issue 31 #3: readers never create or change storage ---
    Case("report-foreign-db", reader_on_foreign_db("report"), ("is not an Optuna study storage", "expenses")),
    Case("soup-foreign-db", reader_on_foreign_db("soup"), ("is not an Optuna study storage",)),
    Case("dashboard-foreign-db", reader_on_foreign_db("dashboard"), ("is not an Optuna study storage",)),
    Case("ingredients-foreign-db", reader_on_foreign_db("ingredients"), ("is not an Optuna study storage",)),
    Case("adapt-bank-foreign-db", adapt_bank_foreign_db, ("is not an Optuna study storage",)),
    Case("report-storage-mistyped", lambda w: ["report", "--storage", f"sqlite:///{w.root / 'stduy.db'}", "--html",
                                               str(w.root / "r.html")], ("no study found", "stduy.db does not exist")),
    Case("dashboard-storage-mistyped", lambda w: ["dashboard", "--storage", f"sqlite:///{w.root / 'nope.db'}"],
         ("no study found", "nope.db does not exist")),
    Case("soup-storage-foreign", lambda w: ["soup", "--storage", f"sqlite:///{foreign_sqlite(w, 'money.db')}"],
         ("is not an Optuna study storage",)),
    Case("dashboard-empty-study-db", lambda w: [w.write("run/study.db", b"") and "dashboard", "--out",
                                                str(w.root / "run")], ("holds no study",)),
    Case("report-study-db-not-sqlite", lambda w: [w.write("run/study.db", "my notes\n" * 200) and "report", "--out",
                                                  str(w.root / "run")], ("is not a readable SQLite database",)),
    Case("search-storage-foreign-db", lambda w: search(w.tiny_recipe(), w.root / "run", "--storage",
                                                       f"sqlite:///{foreign_sqlite(w, 'money.db')}"),
         ("is not an Optuna study storage", "soupkit does not add tables")),
    # --- issue 31 #4: everything checked before the first write ---
    Case("adapt-bad-own-data", adapt_with_bad_own_data, ("mine.jsonl: line 2: not valid JSON",)),
    Case("adapt-out-user-files-empty-db", adapt_into({"notes.txt": "mine", "study.db": b""}), ("holds no study",)),
    Case("adapt-out-is-a-search-run", adapt_into({"search-study": ""}),
         ("study.db holds the studies tiny, not 'tiny-adapt'",)),
    # --- issue 31 #5: no piece of a password, whatever it holds ---
    Case("storage-password-with-at", lambda w: ["soup", "--storage", "postgresql://alice:Wr@ngPw55@127.0.0.1:1/db"],
         ("postgresql://alice:***@127.0.0.1:1/db",), ("Wr@ng", "ngPw55")),
    Case("storage-password-with-at-and-colon", lambda w: ["dashboard", "--storage",
                                                          "postgresql://alice:p@ss:w@rd@127.0.0.1:1/db"],
         ("postgresql://alice:***@127.0.0.1:1/db",), ("p@ss", "ss:w", "w@rd")),
    Case("storage-password-with-at-search", lambda w: ["search", "--storage", "mysql+nosuchdriver://u:a@b@c@127.0.0.1/x",
                                                       "--out", str(w.root / "run")],
         ("mysql+nosuchdriver://u:***@127.0.0.1/x",), ("a@b", "b@c")),
    # --- issue 31 #6: what were tracebacks ---
    Case("recipe-latin1", lambda w: ["validate", str(w.write("r.yaml", "name: caf\xe9\nfamilies: [x]\n".encode("latin-1")))],
         ("r.yaml: not UTF-8 text (byte 10)",)),
    Case("recipe-utf16", lambda w: search(w.write("r.yaml", "name: t\nfamilies: [x]\n".encode("utf-16")), w.root / "run"),
         ("r.yaml: not UTF-8 text (byte 1)",)),
    recipe_case("finetune-by-base-loss-list", BASE + "finetune_by_base: {x: {loss: [1, 2]}}\n",
                "finetune_by_base.x.loss: must be a mapping of loss settings, got list"),
    recipe_case("finetune-by-base-loss-text", BASE + "finetune_by_base: {x: {loss: infonce}}\n",
                "finetune_by_base.x.loss: must be a mapping", command="search"),
    own_data_case("own-deeply-nested-jsonl", "mine.jsonl", '{"anchor": ' + "[" * 100000 + "]" * 100000 + "}\n",
                  "mine.jsonl: line 1: JSON nested too deeply"),
    own_data_case("own-deeply-nested-json", "mine.json", "[" * 100000 + "]" * 100000, "JSON nested too deeply"),
    Case("merge-param-unclosed-list", lambda w: ["merge", str(w.model_copy("a")), str(w.model_copy("b")), "--out",
                                                 str(w.root / "m"), "--method", "ties", "--base", str(w.model_copy("base")),
                                                 "--param", "density=["], ("parameter 'density': '[' is not a value",)),
    Case("merge-param-bad-yaml", lambda w: ["merge", str(w.model_copy("a")), str(w.model_copy("b")), "--out",
                                            str(w.root / "m"), "--method", "slerp", "--param", "t={a: [}"],
         ("parameter 't':",)),
    Case("merge-truncated-tokenizer", merge_with_tokenizer(b""), ("broken/tokenizer.json: not a readable tokenizer file",)),
    Case("merge-malformed-tokenizer", merge_with_tokenizer(b'{"model": {"vocab": 7}}'),
         ("broken/tokenizer.json: not a readable tokenizer file",)),
    Case("merge-out-is-current-folder", merge_from_inside_its_output, ("output folder . is the current folder",)),
    Case("merge-disk-full", merge_on_full_disk, ("soup: No space left on device",)),
    Case("init-model-disk-full", init_model_on_full_disk, ("gemma: No space left on device",)),
    Case("report-disk-full", report_on_full_disk, ("report.html: No space left on device",)),
    Case("ingredients-steps-huge", ingredients_option("--steps", "2000000"),
         ("--steps: Input should be less than or equal to 1000000",)),
    Case("ingredients-learning-rate-huge", ingredients_option("--learning-rate", "5"),
         ("--learning-rate: Input should be less than or equal to 1",)),
    Case("ingredients-batch-huge", ingredients_option("--batch-size", "99999999"),
         ("--batch-size: Input should be less than or equal to 4096",)),
    # --- issue 31 #7: objective weights bounded, so no score is silently 0 ---
    recipe_case("objective-weight-huge", BASE + "objective: {weights: {medical-icd10: 1.0e+308}}\n",
                "objective.weights: objective weight of 'medical-icd10' must be between 0 and 1e+06, got 1e+308"),
    recipe_case("objective-weight-tiny", BASE + "objective: {weights: {medical-icd10: 1.0e-300}}\n",
                "objective weight of 'medical-icd10' must be 0 or at least 1e-06", command="search"),
    recipe_case("objective-weight-inf", BASE + "objective: {weights: {medical-icd10: .inf}}\n",
                "objective.weights.medical-icd10: Input should be a finite number"),
    # --- issue 31 #8: a key written twice is an error naming the key and the file ---
    recipe_case("duplicate-top-level-key", BASE + "name: u\n", "recipe.yaml: line 3", "key 'name' is written twice"),
    recipe_case("duplicate-nested-key", BASE + "finetune: {steps: 3, steps: 4}\n", "key 'steps' is written twice",
                command="search"),
    recipe_case("duplicate-objective-weight", BASE + "objective:\n  weights:\n    medical-icd10: 1\n    medical-icd10: 2\n",
                "key 'medical-icd10' is written twice"),
    Case("duplicate-key-in-mixture-file", lambda w: search(w.recipe(BASE + f"seed_mixture: {w.write('mix.yaml', 'weights: {a: 1, a: 2}')}\n"),
                                                            w.root / "run"), ("mix.yaml: line 1", "key 'a' is written twice")),
    # --- issue 31 #9: a name never ends in a newline ---
    recipe_case("name-trailing-newline", 'name: "tinynl\\n"\nfamilies: [clustering]\n', "name: 'tinynl\\n' is not a plain name"),
    recipe_case("name-trailing-newline-search", 'name: "tinynl\\n"\nfamilies: [clustering]\n', "is not a plain name",
                command="search"),
    Case("soup-name-trailing-newline", lambda w: ["soup", "--out", str(w.root / "run"), "--name", "best\n"],
         ("--name: 'best\\n' is not a plain name",)),
    # --- issue 31 #10: jsonl lines end at '\n' only: U+2028/U+0085 inside a string do not shift the count ---
    own_data_case("own-jsonl-line-separators", "mine.jsonl",
                  '{"anchor": "a\u2028b", "positive": "c"}\n{"anchor": "d\u0085e", "positive": "f"}\n{"anchor": 7}\n',
                  "mine.jsonl: line 3: 'anchor' must be text, got a number (7)"),
    own_data_case("own-jsonl-separators-bad-json", "mine.jsonl",
                  '{"anchor": "a\u2028b\u2029c\u0085d", "positive": "c"}\n{"anchor": "x", "posi',
                  "mine.jsonl: line 2: not valid JSON"),
    # --- issue 31 #11: one model is not a soup ---
    Case("merge-same-folder-twice", merge_twice("same"), ("is given twice", "a soup of one model with itself")),
    Case("merge-folder-and-link-to-it", merge_twice("link"), ("is given twice", "link-to-a is a link to it")),
    Case("merge-folder-and-dot-path", merge_twice("dot-path"), ("is given twice",)),
    # --- issue 31 #12: the right message, before anything happens ---
    Case("search-out-dangling-link", lambda w: search(w.tiny_recipe(), dangling(w, "run")),
         ("run folder", "is a symbolic link to", "gone, which does not exist")),
    Case("merge-out-dangling-link", lambda w: ["merge", str(w.model_copy("a")), str(w.model_copy("b")), "--out",
                                               str(dangling(w, "soup"))], ("output folder", "gone, which does not exist")),
    Case("checkpoints-dangling-link", lambda w: search(w.tiny_recipe(), w.root / "run", "--checkpoints",
                                                       str(dangling(w, "models"))), ("--checkpoints folder", "does not exist")),
    Case("recipe-is-a-fifo", lambda w: os.mkfifo(w.root / "r.yaml") or ["validate", str(w.root / "r.yaml")],
         ("recipe file", "r.yaml is not a regular file (a pipe, socket or device)",)),
    Case("mixture-is-a-folder", lambda w: (w.root / "mix.yaml").mkdir() or search(
        w.recipe(BASE + f"seed_mixture: {w.root / 'mix.yaml'}\n"), w.root / "run"), ("mix.yaml is a folder",)),
    Case("own-data-fifo", fifo_data, ("mine.jsonl: is not a regular file (a pipe, socket or device)",)),
    Case("fetch-model-read-only", lambda w: fetch_into(w, read_only(w) / "gemma"), ("model folder", "is read-only")),
    Case("fetch-model-dangling-link", lambda w: fetch_into(w, dangling(w, "gemma")), ("gone, which does not exist",)),
    Case("fetch-model-below-a-file", lambda w: fetch_into(w, w.write("notes.txt", "mine") / "gemma"),
         ("notes.txt is a file, not a folder",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_one_line_exit_2_and_writes_nothing(case: Case, folder_hash, tmp_path, request, monkeypatch):
    work = Workdir(tmp_path / "work", request, monkeypatch)
    work.root.mkdir()
    monkeypatch.chdir(work.root)  # a relative runs/<name> would land in the hashed folder too
    args = case.setup(work)
    before, touched = folder_hash(work.root), modification_times(work.root)
    try:
        result = CliRunner().invoke(main, args)
    finally:
        for held in work.holds:
            held.close()
    output = result.output
    assert result.exit_code == 2, (output, result.exception)
    assert "Traceback" not in output, output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in case.needles:
        assert needle in lines[0], lines[0]
    for secret in case.forbidden:
        assert secret not in output
    assert folder_hash(work.root) == before, "the command wrote, changed or deleted files"
    assert modification_times(work.root) == touched, "the command rewrote files (same bytes, new times)"


def modification_times(root: Path) -> dict[str, int]:
    """When every file and folder under `root` last changed: a database opened for writing and
    left with the same bytes (or a file rewritten as it was) still shows here."""
    return {str(p.relative_to(root)): p.lstat().st_mtime_ns for p in sorted(root.rglob("*"))}


def test_the_table_is_big_enough():
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)
