"""Legal citation names from Free Law Project's courts-db and reporters-db (PyPI, BSD-2-Clause).

A legal citation names its court and its reporter in abbreviations ("Oh. Ct. Com. Pl., Lorain",
"F. Supp. 2d"); these databases map them, and the variant spellings found in real opinions, to
the full name. Matching them is mostly lexical, so this is a weak but real legal task.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os

from soupkit.data.registry import BuildOptions, FamilyData, builtin_family
from soupkit.data.sources._pairs import one_document_per_query
from soupkit.data.split import split_retrieval
from soupkit.errors import MissingSourceError

INSTALL = "pip install courts-db reporters-db"
SOURCE = "courts-db and reporters-db (PyPI, BSD-2-Clause, Free Law Project)"
DESCRIPTION = "court citation string or reporter abbreviation (and their variant spellings) -> full name"
_TEMPLATE_MARKS = ("${", "\\")  # a few courts-db examples are unexpanded regex templates: "Appellate Term ${bw}"


def package_data_file(family: str, package: str, pypi_name: str, name: str) -> str:
    # find the package without importing it
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.origin:
        raise MissingSourceError(family, f"PyPI package {pypi_name}", INSTALL)
    path = os.path.join(os.path.dirname(spec.origin), "data", name)
    if not os.path.isfile(path):
        raise MissingSourceError(family, f"data/{name} in {pypi_name}", INSTALL)
    return path


def _plain(text: str | None) -> str:
    return " ".join((text or "").split())


@functools.lru_cache(maxsize=1)
def load_court_names(path: str) -> tuple[tuple[str, str], ...]:
    """(citation string, name abbreviation or example spelling -> court name) pairs. Examples are
    spellings courts-db matches in real opinions; those equal to the name, and templates, are left out."""
    with open(path, encoding="utf-8") as f:
        courts = json.load(f)
    pairs = []
    for court in courts:
        name = _plain(court.get("name"))
        queries = [court.get("citation_string"), court.get("name_abbreviation"), *(court.get("examples") or [])]
        for query in map(_plain, queries):
            if name and query and query.lower() != name.lower() and not any(m in query for m in _TEMPLATE_MARKS):
                pairs.append((query, name))
    return tuple(pairs)


@functools.lru_cache(maxsize=1)
def load_reporter_names(path: str) -> tuple[tuple[str, str], ...]:
    """(edition abbreviation or variant spelling, reporter name): "F. Supp. 2d" -> "Federal Supplement"."""
    with open(path, encoding="utf-8") as f:
        reporters = json.load(f)
    pairs = []
    for entries in reporters.values():
        for reporter in entries:
            name = _plain(reporter.get("name"))
            for query in map(_plain, [*reporter.get("editions", {}), *reporter.get("variations", {})]):
                if name and query and query.lower() != name.lower():
                    pairs.append((query, name))
    return tuple(pairs)


@builtin_family("legal-courts", task="retrieval", source=SOURCE, install=INSTALL, description=DESCRIPTION)
def legal_courts(options: BuildOptions) -> FamilyData:
    """Courts and reporters share one corpus of full names. An abbreviation that stands for two
    names is left out; two courts of one name (county courts in several states) are one document."""
    courts = load_court_names(package_data_file("legal-courts", "courts_db", "courts-db", "courts.json"))
    reporters = load_reporter_names(package_data_file("legal-courts", "reporters_db", "reporters-db", "reporters.json"))
    pairs = one_document_per_query([*courts, *reporters])
    train, probe = split_retrieval(pairs, options.seed, options.probe_size, options.probe_corpus, options.max_train)
    return train, probe
