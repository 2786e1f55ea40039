"""Built-in family sources. Importing this package registers every built-in family."""

from soupkit.data.sources import icd10  # noqa: F401
