"""Write folders and files under a temporary name and rename when complete, so nothing
half-written is ever visible under its final name (a crash leaves only a `.tmp-*` folder)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

# what libraries say, in their own exception types, when a write fails for lack of space
_NO_SPACE_TEXTS = ("No space left on device", "os error 28", "Disk quota exceeded", "os error 122")
# the errors of the disk being written to (other errors name their own cause)
_DISK_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG})


@contextlib.contextmanager
def naming_the_output(final: Path) -> Iterator[None]:
    """A write that fails for lack of space or a failing disk (an OSError without a file name,
    or a library's own error saying so) is re-raised as an OSError naming `final`, which the CLI
    reports as one line: `PATH: No space left on device`."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None and exc.errno in _DISK_ERRORS:
            raise OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(final)) from None
        raise
    except Exception as exc:  # safetensors, torch: "No space left on device (os error 28)"
        text = str(exc)
        if any(t in text for t in _NO_SPACE_TEXTS):
            code = errno.EDQUOT if ("quota" in text or "122" in text) else errno.ENOSPC
            raise OSError(code, os.strerror(code), str(final)) from None
        raise


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    final = absolute(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it private; the result is not
    try:
        with naming_the_output(final):
            yield tmp
            replace_folder(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    path = absolute(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
    try:
        with naming_the_output(path):
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes the file private; results are not
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def absolute(path: Path) -> Path:
    """`path` made absolute and normalised without following links: `.` or `a/..` have no name
    of their own to write beside and rename."""
    return Path(os.path.abspath(path))


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_can_write(path: Path, what: str) -> None:
    """Refuse, before anything is written, an output `path` that cannot become a folder: an
    existing file, a parent that is a file, a read-only file system or folder. One line, exit 2."""
    from soupkit.errors import SoupkitError

    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise SoupkitError(f"{what} {path} is a symbolic link to {os.readlink(path)}, which does not exist; "
                           "remove the link or give another path")
    if path.exists() and not path.is_dir():
        raise SoupkitError(f"{what} {path} exists and is not a folder; choose a folder")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise SoupkitError(f"{what} {path} cannot be made: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SoupkitError(f"{what} {path} cannot be written: {existing} is read-only (a read-only file system, "
                           "or no write permission)")


def replace_folder(staged: Path, final: Path) -> None:
    """Rename a complete folder to its final name; an old one is moved aside first, then deleted
    (not deleted in place: a crash must not leave half of it)."""
    final = absolute(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-old-", dir=final.parent))
        os.replace(final, old / final.name)
    os.replace(staged, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
