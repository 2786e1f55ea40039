"""The report inside optuna-dashboard: figures as study artifacts, a study note that shows them,
and a note on every trial with its mixture and probe scores as small tables.

optuna-dashboard 0.21 previews image artifacts in the study's "Study Artifacts" list (served
when it is started with the same artifact store: `soupkit dashboard` does that), renders Markdown
notes on the study and on each trial, and lets `report.html` be downloaded. Re-running a report
rewrites the same artifacts in place instead of piling up copies.

Only Optuna's public API is used: `storage` is the storage object the study was opened with
(`soupkit.search.study.open_storage`, or any `optuna.storages` object), whose public methods give
the study's id for artifact URLs and the trials' ids for live `optuna.trial.Trial` objects, which
`optuna_dashboard.save_note` needs.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from soupkit.report.figures import DrawnFigure
from soupkit.report.tables import StudyFrames
from soupkit.study_record import artifact_records

ARTIFACT_DIR = "artifacts"  # under the run folder
STUDY_NOTE_BEGIN = "## soupkit report"
TRIAL_NOTE_BEGIN = "#### soupkit report"
NOTE_END = "_end of the soupkit report; notes of your own outside it are kept_"


@dataclass
class Attached:
    artifacts: dict[str, str]  # filename -> artifact id
    trial_notes: int  # notes written (unchanged notes are left alone)
    store: Path


def artifact_store(run_dir: Path):
    from optuna.artifacts import FileSystemArtifactStore

    path = run_dir / ARTIFACT_DIR
    path.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(path))


def study_artifacts(study, storage) -> dict[str, str]:
    """filename -> artifact id of the study's artifacts (skipping ones the dashboard deleted: it
    leaves their record as null, which `optuna.artifacts.get_all_artifact_meta` cannot read)."""
    return {m["filename"]: m["artifact_id"] for m in artifact_records(storage, study.study_name)}


def _put(study, store, path: Path, existing: dict[str, str]) -> str:
    from optuna.artifacts import upload_artifact

    if path.name in existing:
        with path.open("rb") as fh:
            store.write(existing[path.name], fh)
        return existing[path.name]
    return upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=study)


def attach_report(study, storage, frames: StudyFrames, figures: list[DrawnFigure], summary: str, html_path: Path,
                  run_dir: Path) -> Attached:
    from optuna_dashboard import get_note, save_note

    store = artifact_store(run_dir)
    study_id = storage.get_study_id_from_name(study.study_name)
    existing = study_artifacts(study, storage)
    ids: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fig in figures:
            if fig.svg is not None:
                path = Path(tmp) / f"report-{fig.key}.svg"
                path.write_text(fig.svg)
                ids[path.name] = _put(study, store, path, existing)
    ids[html_path.name] = _put(study, store, html_path, {**existing, **ids})

    lines = [STUDY_NOTE_BEGIN, "", "```", summary, "```", ""]
    for fig in figures:
        artifact = ids.get(f"report-{fig.key}.svg")
        lines.append(f"### {fig.title}")
        lines.append(f"![{fig.title}](/artifacts/{study_id}/{artifact})" if artifact
                     else f"_not drawn: {fig.missing}_")
        lines.append("")
    lines += [f"The whole report, with tables: `{html_path.name}` under Study Artifacts, or `{html_path}`.", "",
              NOTE_END]
    note = merged_note(get_note(study), "\n".join(lines), STUDY_NOTE_BEGIN)
    save_note(study, note)
    return Attached(ids, _note_trials(study, storage, frames), run_dir / ARTIFACT_DIR)


def merged_note(old: str, block: str, begin: str) -> str:
    """`old` with its soupkit block (from the `begin` line to NOTE_END) replaced by `block`, or with
    `block` put first: what a person wrote in the dashboard stays."""
    lines = old.splitlines()
    if begin in lines and NOTE_END in lines[lines.index(begin):]:
        start = lines.index(begin)
        end = lines.index(NOTE_END, start)
        return "\n".join([*lines[:start], block, *lines[end + 1:]])
    return f"{block}\n\n{old}" if old.strip() else block


def trial_note(row: dict, frames: StudyFrames) -> str:
    """A trial's mixture and probe scores (against the base model) as Markdown tables."""
    base = frames.base_objective
    if row["state"] == "COMPLETE":
        head = f"**objective {row['objective']:.4f}**"
        if base is not None:
            head += f" (base {base:.4f}, {row['objective'] - base:+.4f})"
        if frames.two_objectives:
            head += f" · domain {row['domain']:.4f} / general {row['general']:.4f}"
            head += " · on the Pareto front" if row["trial"] in frames.front else ""
    else:
        reason = row.get("error") or row.get("skipped") or row.get("pruned")
        head = f"**{row['state']}**" + (f": {reason}" if reason else "")
    lines = [TRIAL_NOTE_BEGIN, "", head, "", "| family | weight |", "|---|---:|"]
    weights = {f: row.get(f"w:{f}") for f in frames.families if row.get(f"w:{f}") is not None}
    lines += [f"| {f} | {w:.3f} |" for f, w in sorted(weights.items(), key=lambda x: -x[1])] or ["| (none yet) | |"]
    scores = {p: row.get(f"score:{p}") for p in frames.probes if row.get(f"score:{p}") is not None}
    if scores:
        lines += ["", "| probe | score | base | change |", "|---|---:|---:|---:|"]
        for p, s in scores.items():
            b = frames.base_scores.get(p)
            lines.append(f"| {p} | {s:.4f} | {b:.4f} | {s - b:+.4f} |" if b is not None else f"| {p} | {s:.4f} | | |")
    return "\n".join([*lines, "", NOTE_END])


def _note_trials(study, storage, frames: StudyFrames) -> int:
    import optuna
    from optuna_dashboard import get_note, save_note

    if frames.trials.is_empty():
        return 0
    study_id = storage.get_study_id_from_name(study.study_name)
    # save_note takes a live Trial (the note itself lives in the study); a random sampler makes
    # building one for a finished trial a no-op whatever sampler the study was opened with
    plain = optuna.load_study(study_name=study.study_name, storage=storage, sampler=optuna.samplers.RandomSampler())
    written = 0
    for row in frames.trials.iter_rows(named=True):
        if row["state"] == "WAITING":
            continue
        trial = optuna.trial.Trial(plain, storage.get_trial_id_from_study_id_trial_number(study_id, row["trial"]))
        old = get_note(trial)
        body = merged_note(old, trial_note(row, frames), TRIAL_NOTE_BEGIN)
        if body != old:
            save_note(trial, body)
            written += 1
    return written
