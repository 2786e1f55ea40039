"""Trial checkpoint folders on disk: who owns them, where they go, the disk budget, and leftovers
of crashes.

A checkpoints folder belongs to one study: the search that first writes into it leaves an owner
file (`.soupkit-checkpoints.json`: the study's run id, name, storage and the folder's path), and
a search of any other study is refused it before anything is written. Nothing soupkit did not
write (a name no trial of the study records) is ever replaced or deleted. A run folder copied or
moved (`cp -a runs/a runs/b`) is recognised: the study it carries records the original's paths,
and every folder it acts on is its own copy, found by name under its own checkpoints folder.

A checkpoint is written under `.tmp-trial-NNNN-*` (an ingredient's `.tmp-ingredient-NNNN-*`), renamed
when complete (soupkit.atomic), and removed by renaming it back to a `.tmp-` name first, so a folder
under a final name is always whole.
With `search.keep_checkpoints: K` only the best K completed trials keep their folders, plus every
trial a recorded soup uses (and, for a Pareto study, the front).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from soupkit.atomic import atomic_write_text
from soupkit.errors import SoupkitError
from soupkit.study_record import (
    StudyRecord,
    TrialRecord,
    objective_of,
    record_run_id,
    run_id,
    two_objectives,
)

_PARTIAL = re.compile(r"^\.tmp-[a-z]+-(\d+)-")  # a trial's, an ingredient's, ... in progress
_FINAL = re.compile(r"trial-\d{4,}")
OWNER_FILE = ".soupkit-checkpoints.json"


def read_owner(root: Path) -> dict | None:
    """The owner file of a checkpoints folder, or None (none yet, or one soupkit cannot read)."""
    try:
        owner = json.loads((Path(root) / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def check_checkpoint_folder(root: Path, study, storage: str, inside_run: bool) -> None:
    """Refuse, before anything is written, a checkpoints folder this search may not write into:
    one owned by another study (or by the original of a copied run, when it lies outside the run),
    or one holding names the study does not record. `study` is the existing study (None: new);
    `storage` names where it lives (a study.db path, a redacted URL)."""
    root = Path(root)
    if not root.is_dir():
        return
    owner = read_owner(root)
    if owner is not None:
        # the same study in the same storage is ours even under another id: two workers starting a
        # new study together may each have given it one (claim_checkpoint_folder writes the last)
        mine = study is not None and (owner.get("run_id") == run_id(study) or (
            owner.get("study") == study.study_name and owner.get("storage") == storage))
        if not mine:
            raise SoupkitError(f"checkpoints folder {root} belongs to study '{owner.get('study')}' in "
                               f"{owner.get('storage')}; give each study its own checkpoints folder")
        if not inside_run and owner.get("storage") != storage and _storage_exists(str(owner.get("storage"))):
            raise SoupkitError(f"checkpoints folder {root} is used by the study '{owner.get('study')}' in "
                               f"{owner.get('storage')}, of which this run is a copy; give the copy a checkpoints "
                               "folder of its own (--checkpoints)")
        return
    entries = sorted(p.name for p in root.iterdir() if not _PARTIAL.match(p.name))
    recorded = _recorded_names(study) if study is not None else set()
    foreign = [name for name in entries if name not in recorded]
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise SoupkitError(f"checkpoints folder {root} holds {shown}, which this study did not write (soupkit never "
                           "replaces or deletes what it did not write); choose a new or empty folder")


def claim_checkpoint_folder(root: Path, study, storage: str) -> None:
    """Make `root` this study's (checked by check_checkpoint_folder first): write its owner file,
    or update the path and storage of a copied or moved run's."""
    root = Path(root)
    owner = {"run_id": record_run_id(study), "study": study.study_name, "storage": storage,
             "folder": str(root.resolve())}
    if read_owner(root) != owner:
        atomic_write_text(root / OWNER_FILE, json.dumps(owner, indent=1) + "\n")


def owns(root: Path, study) -> bool:
    owner = read_owner(root)
    return owner is not None and owner.get("run_id") == run_id(study)


def own_checkpoint(recorded: Path | None, root: Path) -> Path | None:
    """The folder under `root` that a trial's recorded checkpoint is: the recorded path when it
    lies in `root`; in a copied or moved run (the path is the original's), the folder of the same
    name in `root`; None when neither (a folder this run did not write, never acted on)."""
    if recorded is None or not _FINAL.fullmatch(recorded.name):
        return None
    root = Path(root).resolve()
    if Path(recorded).resolve().parent == root:
        return Path(recorded)
    candidate = root / recorded.name
    return candidate if candidate.is_dir() else None


def _recorded_names(study) -> set[str]:
    records = (TrialRecord.of(t).checkpoint for t in study.get_trials(deepcopy=False))
    return {c.name for c in records if c is not None}


def _storage_exists(storage: str) -> bool:
    """Whether the storage an owner file names is still there (a moved run's original is not)."""
    return Path(storage).is_file() if storage.startswith("/") else True



def checkpoint_dir(checkpoints: Path, number: int, kind: str = "trial") -> Path:
    return Path(checkpoints) / f"{kind}-{number:04d}"


def remove_folder(folder: Path) -> None:
    """Rename the folder to a temporary name, then delete it: a crash halfway leaves a `.tmp-`."""
    victim = folder.with_name(f".tmp-{folder.name}-removed-{os.getpid()}")
    try:
        os.replace(folder, victim)
    except FileNotFoundError:
        return  # another worker removed it first
    shutil.rmtree(victim, ignore_errors=True)


def remove_partial_checkpoints(study, checkpoints: Path, kind: str = "trial") -> list[str]:
    """Delete `.tmp-<kind>-NNNN-*` leftovers whose trial is no longer running (its worker died, or
    the folder was being removed). Folders of running trials are another worker's, in progress."""
    from optuna.trial import TrialState

    if not Path(checkpoints).is_dir() or not owns(checkpoints, study):
        return []
    running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    removed = []
    for path in sorted(Path(checkpoints).iterdir()):
        match = re.match(rf"^\.tmp-{re.escape(kind)}-(\d+)-", path.name)
        if match and path.is_dir() and int(match.group(1)) not in running:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


def protected_trials(study) -> set[int]:
    """Trials whose checkpoints are never removed: members of recorded soups, the Pareto front."""
    keep = {m for soup in StudyRecord.of(study).soups.values() for m in soup.members}
    if two_objectives(study):
        keep |= {t.number for t in study.best_trials}
    return keep


def keep_best_checkpoints(study, keep: int, root: Path, log: Callable[[str], None] = print) -> list[int]:
    """Remove the checkpoint folders of completed trials beaten by `keep` others (by the scalar
    objective); return the trial numbers whose folders were removed. Only folders in `root`, the
    study's own checkpoints folder, are removed (own_checkpoint), and only when it owns `root`."""
    from optuna.trial import TrialState

    if not owns(root, study):
        return []
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if TrialRecord.of(t).checkpoint is not None]
    ranked = sorted(done, key=lambda t: (-objective_of(t), t.number))
    protected = protected_trials(study)
    removed = []
    for t in ranked[keep:]:
        folder = own_checkpoint(TrialRecord.of(t).checkpoint, root)
        if t.number in protected or folder is None or not folder.exists():
            continue
        remove_folder(folder)
        removed.append(t.number)
    if removed:
        log(f"removed checkpoints of trials {', '.join(map(str, removed))} (search.keep_checkpoints: {keep})")
    return removed
