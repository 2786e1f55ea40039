"""The package layers (docs/architecture.md), read from the source with `ast`, so a wrong import
fails here even when it sits inside a function that no test calls.

Libraries (data/, probes/, train/, merge/, models/, base_model) never import an orchestration
(search/, soups/, report/, cli); merge/ works on model folders only; nothing imports upwards.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import soupkit

PACKAGE = Path(soupkit.__file__).parent
# the study record is the orchestrations' own: the libraries know nothing of studies
ORCHESTRATIONS = ("soupkit.search", "soupkit.soups", "soupkit.report", "soupkit.cli", "soupkit.cli_options",
                  "soupkit.study_record")
LIBRARIES = ("soupkit.data", "soupkit.probes", "soupkit.train", "soupkit.merge", "soupkit.models",
             "soupkit.base_model")
# what each library may not import, beyond the orchestrations
FORBIDDEN_BELOW = {
    "soupkit.merge": ("soupkit.data", "soupkit.probes", "soupkit.train", "soupkit.base_model"),
    "soupkit.base_model": ("soupkit.merge", "soupkit.data", "soupkit.probes", "soupkit.train"),
    # a family holds a probe (soupkit.probes.probe_types); probes know nothing of the data sources
    "soupkit.data": ("soupkit.train", "soupkit.merge", "soupkit.base_model"),
    "soupkit.probes": ("soupkit.data", "soupkit.train", "soupkit.merge"),
    "soupkit.train": ("soupkit.probes", "soupkit.merge"),
}
# the foundation every layer may use: it imports no other soupkit module but these
FOUNDATION = ("soupkit.errors", "soupkit.config", "soupkit.registry", "soupkit.atomic", "soupkit.pause",
              "soupkit.prompts", "soupkit.model_folder")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def soupkit_imports(path: Path) -> set[str]:
    """Every soupkit module `path` imports at run time, at any depth of the file (lazy imports
    included; imports for type checkers only, under `if TYPE_CHECKING:`, left out)."""
    found = set()
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = []  # ast.walk reads the children after this node: it finds nothing there
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "soupkit" or name.startswith("soupkit.")}


MODULES = {module_name(p): soupkit_imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_walk_finds_the_packages_and_a_lazy_import():
    assert within("soupkit.merge.api", ("soupkit.merge",)) and not within("soupkit.mergekit", ("soupkit.merge",))
    assert "soupkit.merge.api" in MODULES and "soupkit.cli" in MODULES
    # cli imports the search lazily, inside a command: the walk must see it
    assert "soupkit.search.run" in MODULES["soupkit.cli"]


@pytest.mark.parametrize("library", LIBRARIES)
def test_no_library_imports_an_orchestration(library):
    wrong = {m: sorted(i for i in imports if within(i, ORCHESTRATIONS))
             for m, imports in MODULES.items() if within(m, (library,))}
    assert {m: i for m, i in wrong.items() if i} == {}


@pytest.mark.parametrize("library", sorted(FORBIDDEN_BELOW))
def test_libraries_keep_to_their_layer(library):
    wrong = {m: sorted(i for i in imports if within(i, FORBIDDEN_BELOW[library]))
             for m, imports in MODULES.items() if within(m, (library,))}
    assert {m: i for m, i in wrong.items() if i} == {}


def test_the_foundation_imports_only_the_foundation():
    wrong = {m: sorted(i for i in imports if not within(i, FOUNDATION) and i != "soupkit")
             for m, imports in MODULES.items() if within(m, FOUNDATION)}
    assert {m: i for m, i in wrong.items() if i} == {}


def test_soups_package_init_is_a_docstring_only():
    tree = ast.parse((PACKAGE / "soups" / "__init__.py").read_text())
    assert len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr)


def test_optuna_is_used_through_its_public_api():
    private = ("._storage", "._study_id", "._trial_id")
    found = {str(p.relative_to(PACKAGE)): [name for name in private if name in p.read_text()]
             for p in PACKAGE.rglob("*.py")}
    assert {path: names for path, names in found.items() if names} == {}


def test_study_attributes_are_read_and_written_in_the_study_record_only():
    """Every user or system attribute of a study or trial goes through soupkit/study_record.py, where
    its key is spelled once (enqueue_trial's `user_attrs=` takes what the record module builds),
    whether read from the study or trial or through the storage."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name == "study_record.py":
            continue
        text = path.read_text().replace("user_attrs=", "")
        uses = [name for name in (".user_attrs", "set_user_attr(", "system_attrs", "_user_attr(") if name in text]
        if uses:
            found[str(path.relative_to(PACKAGE))] = uses
    assert found == {}


def test_tests_share_helpers_through_conftest_fixtures():
    tests = Path(__file__).parent
    importing = [p.name for p in tests.glob("test_*.py")
                 if any(isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tests")
                        for node in ast.walk(ast.parse(p.read_text())))]
    assert importing == []


TRAINS = {"search", "run_search", "finetune", "finetune_on_mixture", "run_adapt", "run_until_paused", "start_worker"}


def _trains(fn: ast.FunctionDef, fixtures: dict[str, ast.FunctionDef], seen: tuple = ()) -> bool:
    """Whether a test (or a fixture it uses, in its own module) calls something that trains."""
    called = {n.func.id if isinstance(n.func, ast.Name) else getattr(n.func, "attr", None)
              for n in ast.walk(fn) if isinstance(n, ast.Call)
              and getattr(getattr(n.func, "value", None), "id", None) != "re"}  # re.search trains nothing
    return bool(called & TRAINS) or any(
        _trains(fixtures[a.arg], fixtures, (*seen, a.arg)) for a in fn.args.args if a.arg in fixtures and a.arg not in seen
    )


def test_every_test_that_trains_is_marked_slow():
    unmarked = []
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        tree = ast.parse(path.read_text())
        if any("slow" in ast.unparse(n) for n in tree.body if isinstance(n, ast.Assign)
               and any(getattr(t, "id", None) == "pytestmark" for t in n.targets)):
            continue
        functions = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
        fixtures = {n.name: n for n in functions if any("fixture" in ast.unparse(d) for d in n.decorator_list)}
        # `pytest.mark.slow` itself: a slow mark on one parametrized case leaves the others unmarked
        unmarked += [f"{path.name}::{n.name}" for n in functions if n.name.startswith("test_")
                     and not any(ast.unparse(d) == "pytest.mark.slow" for d in n.decorator_list)
                     and _trains(n, fixtures)]
    assert unmarked == []
