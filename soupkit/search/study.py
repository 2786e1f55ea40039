"""The Optuna study: the one record of every trial. Opening, resuming and recovering it.

Storage is any Optuna RDB URL (SQLite in the run folder by default, PostgreSQL for many workers).
Heartbeats let Optuna fail the trial of a worker that vanished; its retry callback re-queues the
mixture. A worker killed on this host is recognised at once by its pid, without waiting.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from soupkit.errors import SoupkitError

HEARTBEAT_SECONDS = 30
GRACE_SECONDS = 120


def default_storage(out: Path) -> str:
    return f"sqlite:///{(out / 'study.db').resolve()}"


def worker_id() -> dict[str, object]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def open_storage(url: str):
    import warnings

    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
            url,
            heartbeat_interval=HEARTBEAT_SECONDS,
            grace_period=GRACE_SECONDS,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2),
            engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else None,
        )
    except Exception as exc:  # sqlalchemy raises many kinds for a bad URL or an unreachable server
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SoupkitError(f"cannot open study storage '{redact(url)}': {first}") from None


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


def open_study(storage_url: str, name: str, sampler, directions: list[str]):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(storage_url)
    return optuna.create_study(
        storage=storage, study_name=name, sampler=sampler, directions=directions, load_if_exists=True
    )


def check_same_recipe(study, recipe_json: str) -> None:
    """Refuse to mix trials of two different recipes in one study.

    The stored recipe is re-read through the current Recipe model first, so a field added to
    soupkit since (with its default) is not taken for a change.
    """
    from soupkit.config import Recipe

    stored = study.user_attrs.get("recipe")
    if stored is None:
        study.set_user_attr("recipe", recipe_json)
        return
    old = Recipe.model_validate({**json.loads(stored), "search": {}}).model_dump(mode="json", exclude={"search"})
    new = json.loads(recipe_json)
    if old != new:
        diff = next((k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)), "?")
        raise SoupkitError(
            f"study '{study.study_name}' was started with a different recipe (field '{diff}' differs); "
            "use another --out/--storage, or the original settings to resume"
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_dead_trials(study) -> list[int]:
    """Fail and re-queue RUNNING trials whose worker on this host is gone, and re-queue trials
    interrupted by Ctrl-C. Returns the numbers of the trials re-queued."""
    from optuna.trial import TrialState

    here = socket.gethostname()
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    requeued = []
    for t in trials:
        worker = t.user_attrs.get("worker") or {}
        dead_here = (
            t.state == TrialState.RUNNING
            and worker.get("host") == here
            and worker.get("pid") != os.getpid()
            and not _pid_alive(int(worker.get("pid", 0)))
        )
        interrupted = t.state == TrialState.FAIL and t.user_attrs.get("error") == "interrupted"
        if dead_here:
            study._storage.set_trial_user_attr(t._trial_id, "error", "worker process died")
            study.tell(t.number, state=TrialState.FAIL)
        # a trial killed before it suggested its mixture only holds the enqueued (fixed) params
        params = t.params or t.system_attrs.get("fixed_params")
        if (dead_here or interrupted) and t.number not in retried and params:
            study.enqueue_trial(params, user_attrs={"retry_of": t.number}, skip_if_exists=False)
            requeued.append(t.number)
    return requeued


def trial_counts(study) -> dict[str, int]:
    from collections import Counter

    counts = Counter(t.state.name for t in study.get_trials(deepcopy=False))
    return {"COMPLETE": counts["COMPLETE"], "RUNNING": counts["RUNNING"], "FAIL": counts["FAIL"],
            "WAITING": counts["WAITING"]}
