"""Heartbeats for trials run through ask/tell, with the storage's public heartbeat methods.

`Study.optimize` sends them itself; a worker that asks and tells sends them here, so a worker lost
on another machine is noticed by its silence (RDBStorage `heartbeat_interval`, `grace_period`)
and its trial failed and re-queued by the storage's stale-trial callback.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator


def heartbeats_enabled(storage) -> bool:
    interval = getattr(storage, "get_heartbeat_interval", None)
    return interval is not None and interval() is not None


@contextlib.contextmanager
def heartbeat(storage, study, number: int) -> Iterator[None]:
    """While the block runs, record a heartbeat for trial `number` every heartbeat interval."""
    if not heartbeats_enabled(storage):
        yield
        return
    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study.study_name),
                                                               number)
    stop = threading.Event()
    storage.record_heartbeat(trial_id)

    def beat() -> None:
        while not stop.wait(storage.get_heartbeat_interval()):
            storage.record_heartbeat(trial_id)

    thread = threading.Thread(target=beat, name=f"heartbeat-trial-{number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def fail_stale_trials(study) -> None:
    """Fail the running trials whose heartbeat stopped (their storage callback re-queues them)."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
