"""Trial checkpoint folders on disk: where they go, the disk budget, and leftovers of crashes.

A checkpoint is written under `.tmp-trial-NNNN-*` (an ingredient's `.tmp-ingredient-NNNN-*`), renamed
when complete (soupkit.atomic), and removed by renaming it back to a `.tmp-` name first, so a folder
under a final name is always whole.
With `search.keep_checkpoints: K` only the best K completed trials keep their folders, plus every
trial a recorded soup uses (and, for a Pareto study, the front).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from soupkit.study_record import StudyRecord, TrialRecord, objective_of, two_objectives



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

    if not Path(checkpoints).is_dir():
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


def keep_best_checkpoints(study, keep: int, log: Callable[[str], None] = print) -> list[int]:
    """Remove the checkpoint folders of completed trials beaten by `keep` others (by the scalar
    objective); return the trial numbers whose folders were removed."""
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if TrialRecord.of(t).checkpoint is not None]
    ranked = sorted(done, key=lambda t: (-objective_of(t), t.number))
    protected = protected_trials(study)
    removed = []
    for t in ranked[keep:]:
        folder = TrialRecord.of(t).checkpoint
        if t.number in protected or not folder.exists():
            continue
        remove_folder(folder)
        removed.append(t.number)
    if removed:
        log(f"removed checkpoints of trials {', '.join(map(str, removed))} (search.keep_checkpoints: {keep})")
    return removed
