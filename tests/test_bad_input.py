"""Hostile and careless input through the CLI, as one table.

Every row builds a working folder, runs one `soupkit` command on it, and checks what a user must
always get: exit code 2, exactly one line on stderr (starting `error:`, no traceback) that names
the problem, and not one file written, changed or deleted (a hash of the whole folder, contents
and links included, before and after). Rows that would have destroyed data (issue 11) are marked.
"""

from __future__ import annotations

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
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_one_line_exit_2_and_writes_nothing(case: Case, folder_hash, tmp_path, request, monkeypatch):
    work = Workdir(tmp_path / "work", request, monkeypatch)
    work.root.mkdir()
    monkeypatch.chdir(work.root)  # a relative runs/<name> would land in the hashed folder too
    args = case.setup(work)
    before = folder_hash(work.root)
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


def test_the_table_is_big_enough():
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)
