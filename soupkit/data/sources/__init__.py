"""Built-in family sources. Importing this package registers every built-in family."""

from soupkit.data.sources import (  # noqa: F401
    bible,
    debian_packages,
    fortunes,
    icd10,
    python_stdlib,
    scancode_licences,
    wordnet,
)
