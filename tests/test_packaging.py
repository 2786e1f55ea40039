"""The wheel carries the shipped recipes and mixtures (issue 11 #13: it held none, so an installed
soupkit had no default recipe), and an unpacked wheel finds them away from the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from soupkit.config import MIXTURES_DIR, RECIPES_DIR

REPO = Path(__file__).resolve().parent.parent


def test_top_level_folders_are_the_package_data():
    """Users look in recipes/ and mixtures/; the package's copies are the ones read and shipped."""
    assert RECIPES_DIR == REPO / "soupkit" / "recipes" and MIXTURES_DIR == REPO / "soupkit" / "mixtures"
    for name in ("recipes", "mixtures"):
        top = REPO / name
        assert top.is_symlink() and top.resolve() == (REPO / "soupkit" / name).resolve()


def test_the_wheel_ships_recipes_and_mixtures_and_reads_them_installed(tmp_path):
    if shutil.which("git") is None or importlib_missing("setuptools"):
        pytest.skip("needs git and setuptools")
    source = tmp_path / "source"  # a copy of the tracked files: the build leaves nothing in the work tree
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        src, dst = REPO / name, source / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(os.readlink(src))
        elif src.is_file():
            shutil.copy2(src, dst)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    wheel = next((tmp_path / "dist").glob("soupkit-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("recipes", "mixtures"):
        shipped = {f"soupkit/{folder}/{p.name}" for p in (REPO / "soupkit" / folder).glob("*.yaml")}
        assert shipped and shipped <= names, sorted(shipped - names)

    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(unpacked)}
    done = subprocess.run([sys.executable, "-m", "soupkit.cli", "validate", "default"], cwd=elsewhere, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert str(unpacked / "soupkit" / "recipes" / "default.yaml") in done.stdout


def importlib_missing(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is None
