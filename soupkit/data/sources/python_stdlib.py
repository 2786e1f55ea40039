"""Code search over the Python standard library's own source (PSF licence).

A docstring's first paragraph is how its author said what the function does, so docstring ->
function body (docstring removed) is a real natural-language -> code retrieval pair, and the
source ships with every Python interpreter.
"""

from __future__ import annotations

import ast
import functools
import os
import sys
import sysconfig
import textwrap

from soupkit.data.registry import BuildOptions, FamilyData, builtin_family
from soupkit.data.sources._pairs import one_document_per_query
from soupkit.data.split import split_retrieval
from soupkit.errors import MissingSourceError

PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
INSTALL = f"apt-get install libpython{PYTHON_VERSION}-stdlib (or a Python {PYTHON_VERSION} that ships .py sources)"
SOURCE = f"Python {PYTHON_VERSION} standard library source (PSF licence)"
DESCRIPTION = "docstring's first paragraph -> the function's source without its docstring"
MIN_DOC_WORDS = 5
MAX_CODE_CHARS = 1200
# Tests, the IDE, GUI toolkits, vendored or retired code and third-party packages are not the
# library's public API, and tests would flood the corpus with near-identical functions.
SKIPPED_DIRS = frozenset({
    "test", "tests", "idle_test", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip",
    "site-packages", "dist-packages", "__pycache__", "pydoc_data",
})  # fmt: skip


def stdlib_files(family: str) -> tuple[str, ...]:
    """Public modules of the running interpreter's standard library, in a stable order."""
    root = sysconfig.get_paths()["stdlib"]
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.startswith(("config-", "test")))
        for name in sorted(names):
            private = name.startswith("_") and name not in ("__init__.py", "__main__.py")
            if name.endswith(".py") and not private and not name.startswith("test"):
                files.append(os.path.join(folder, name))
    if not files:
        raise MissingSourceError(family, f"the Python standard library source in {root}", INSTALL)
    return tuple(files)


def public_functions(tree: ast.Module):
    """Module-level functions and methods of public classes (nested ones too), never local functions."""
    stack: list[ast.AST] = [tree]
    while stack:
        for node in getattr(stack.pop(), "body", []):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                stack.append(node)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
                yield node


def is_stub(body: list[ast.stmt]) -> bool:
    """A body that only says "not here": pass, ..., or raise NotImplementedError."""
    for stmt in body:
        if isinstance(stmt, ast.Pass) or (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)):
            continue
        if isinstance(stmt, ast.Raise) and "NotImplementedError" in ast.dump(stmt):
            continue
        return False
    return True


def code_without_docstring(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """The function's source, dedented, docstring lines removed, cut at a line to MAX_CODE_CHARS."""
    doc = node.body[0]
    kept = [
        line
        for number, line in enumerate(lines[node.lineno - 1 : node.end_lineno], start=node.lineno)
        if not doc.lineno <= number <= (doc.end_lineno or doc.lineno)
    ]
    code, size = [], 0
    for line in textwrap.dedent("\n".join(kept)).splitlines():
        if size + len(line) + 1 > MAX_CODE_CHARS:
            break
        code.append(line)
        size += len(line) + 1
    return "\n".join(code).rstrip()


@functools.lru_cache(maxsize=1)
def load_documented_functions(files: tuple[str, ...]) -> tuple[tuple[str, str, str], ...]:
    """(docstring's first paragraph, code, module file) for every public function with a docstring
    of MIN_DOC_WORDS+ words whose body does more than stand in for an override."""
    functions = []
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            source = f.read()
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        lines = source.splitlines()
        for node in public_functions(tree):
            docstring = ast.get_docstring(node)
            if not docstring or node.body[0].lineno == node.lineno or is_stub(node.body[1:]):
                continue
            summary = " ".join(docstring.split("\n\n")[0].split())
            if len(summary.split()) >= MIN_DOC_WORDS:
                functions.append((summary, code_without_docstring(lines, node), path))
    return tuple(functions)


@builtin_family("code-search", task="code", source=SOURCE, install=INSTALL, description=DESCRIPTION)
def stdlib_code_search(options: BuildOptions) -> FamilyData:
    """A docstring shared by functions with different code ("Return the value.") has no single
    right answer, so such queries are left out."""
    functions = load_documented_functions(stdlib_files("code-search"))
    pairs = one_document_per_query((summary, code) for summary, code, _ in functions)
    module_of = {code: path for _, code, path in functions}  # a function's neighbourhood: its module
    train, probe = split_retrieval(pairs, options.seed, options.probe_size, options.probe_corpus, options.max_train,
                                   distractors=options.probe_distractors, neighbours=module_of)
    return train, probe
