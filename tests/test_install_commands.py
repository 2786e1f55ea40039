"""README's commands install what they need and no more: command 1 the default recipe's Debian
sources only, the test command and .ci/run every source the tests build."""

from __future__ import annotations

import re
from pathlib import Path

from soupkit.config import load_recipe

ROOT = Path(__file__).resolve().parent.parent


def _apt_packages(command: str) -> tuple[set[str], set[str]]:
    """(packages, options) of the `apt-get install` in a shell command line."""
    match = re.search(r"apt-get install ([^&]+)", command)
    assert match, command
    words = match.group(1).split()
    return {w for w in words if not w.startswith("-")}, {w for w in words if w.startswith("-")}


def _debian_sources(families) -> set[str]:
    from soupkit.data.load import _registry

    registry = _registry()
    needed = set()
    for name in families:
        install = registry.get(name).install.split("(")[0]  # "(or a Python that ships .py sources)"
        # the standard library's sources come with the Python soupkit runs on, not from command 1
        if install.startswith("apt-get install ") and "libpython" not in install:
            needed |= {w for w in install.removeprefix("apt-get install ").split() if not w.startswith("-")}
    return needed


def _readme_commands() -> list[str]:
    return [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("apt-get update")]


def test_readme_command_1_installs_only_the_default_recipes_debian_sources():
    main_job, test_command = _readme_commands()[:2]
    assert "soupkit search" in main_job and "pytest" in test_command
    packages, options = _apt_packages(main_job)
    recipe = load_recipe("default")
    assert packages == _debian_sources(recipe.probe_names())
    assert "--no-install-recommends" in options  # the families read data files, not the recommended tools


def test_the_test_command_and_ci_install_every_debian_source():
    from soupkit.data.load import _registry

    _, test_command = _readme_commands()[:2]
    every = _debian_sources(_registry().names())
    packages, _ = _apt_packages(test_command)
    assert every <= packages
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("apt-get update")]
    assert ci and all(every <= _apt_packages(line)[0] for line in ci)
    assert ci[-1] == test_command  # .ci/run ends with the README's test command, exactly
