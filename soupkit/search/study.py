"""The Optuna study: the one record of every trial. Opening, resuming and recovering it.

Storage is any Optuna RDB URL (SQLite in the run folder by default, PostgreSQL for many workers).
Heartbeats let Optuna fail the trial of a worker that vanished; its retry callback re-queues the
mixture. A worker killed on this host is recognised at once by its pid, without waiting.
"""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path

from soupkit.data.halves import EVERY_PROBE_HALVED, HELD_OUT_HALVED, SPLIT_SCHEMES
from soupkit.errors import SoupkitError
from soupkit.study_record import (
    INTERRUPTED,
    StudyRecord,
    TrialRecord,
    held_out_mark,
    probe_split_of,
    record_probe_split,
    record_recipe,
    record_worker_died,
    retry_attrs,
    trial_params,
    stopped_by_pruner,
)

HEARTBEAT_SECONDS = 30
GRACE_SECONDS = 120
CONNECT_TIMEOUT_SECONDS = 10  # an unreachable database server fails fast instead of hanging
DRIVERS = {"psycopg": "pip install 'soupkit[postgres]'", "psycopg2": "pip install psycopg2-binary",
           "pymysql": "pip install pymysql", "MySQLdb": "pip install mysqlclient"}


def default_storage(out: Path) -> str:
    return f"sqlite:///{(out / 'study.db').resolve()}"


def worker_id() -> dict[str, object]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def open_storage(url: str, attempts: int = 3):
    """An RDBStorage with heartbeats. Workers that start together on an empty database race to
    create its tables; the loser's error is retried. A server that cannot be reached is not."""
    import time
    import warnings

    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    for attempt in range(1, attempts + 1):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    heartbeat_interval=HEARTBEAT_SECONDS,
                    grace_period=GRACE_SECONDS,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2),
                    engine_kwargs=_engine_kwargs(url),
                )
        except ImportError as exc:  # optuna re-raises the driver's ModuleNotFoundError as an ImportError
            missing = getattr(exc.__cause__, "name", None) or exc.name or "?"
            hint = DRIVERS.get(missing, f"pip install {missing}")
            raise SoupkitError(
                f"cannot open study storage '{redact(url)}': its database driver '{missing}' is not installed; "
                f"install it with: {hint}"
            ) from None
        except Exception as exc:  # sqlalchemy raises many kinds for a bad URL or an unreachable server
            if attempt < attempts and _lost_schema_race(exc):
                time.sleep(0.5 * attempt)
                continue
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SoupkitError(f"cannot open study storage '{redact(url)}': {redact_text(first, url)}") from None


def close_storage(storage) -> None:
    """Close the pooled connections of a storage `open_storage` returned now, not when the garbage
    collector gets to them: a PostgreSQL server refuses clients past its `max_connections`, and
    idle pools count. The storage reconnects if it is used again."""
    storage.remove_session()
    storage.engine.dispose()


def _engine_kwargs(url: str) -> dict | None:
    if url.startswith("sqlite"):
        return None
    kwargs: dict = {"pool_pre_ping": True}
    if url.startswith("postgresql") and "connect_timeout" not in url:
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    return kwargs


def _lost_schema_race(exc: Exception) -> bool:
    """Another worker created the same table or type a moment earlier (PostgreSQL unique violation)."""
    text = str(exc)
    return "already exists" in text or "UniqueViolation" in text or "duplicate key" in text


# query parameters that carry a secret (libpq's `password`, drivers' spellings of it)
SECRET_PARAMETERS = frozenset({"password", "passwd", "pwd", "sslpassword", "secret", "token", "access_token"})


def redact(url: str) -> str:
    """The URL with every password masked (the user-info part and any `?password=`), for whatever
    is printed or saved: messages, logs, the command recorded beside a model."""
    from sqlalchemy.engine import make_url

    if "://" not in url:
        return url
    try:
        parsed = make_url(url)
    except Exception:  # not a URL sqlalchemy can read: mask what looks like a secret anyway
        masked = re.sub(r"(://[^:/@?#]*:)[^@/]*@", r"\1***@", url)
        return re.sub(rf"(?i)\b({'|'.join(SECRET_PARAMETERS)})=[^&#]*", r"\1=***", masked)
    secrets = {key: "***" for key in parsed.query if key.lower() in SECRET_PARAMETERS}
    if secrets:
        parsed = parsed.update_query_dict(secrets)
    return parsed.render_as_string(hide_password=True).replace("%2A%2A%2A", "***")


def _secrets(url: str) -> list[str]:
    """The passwords a URL carries (user-info part and query parameters)."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # not a URL sqlalchemy reads: the same parts, found by pattern
        found = re.findall(r"://[^:/@?#]*:([^@/]*)@", url)
        return found + re.findall(rf"(?i)\b(?:{'|'.join(SECRET_PARAMETERS)})=([^&#]*)", url)
    values = [parsed.password] + [v for k, v in parsed.query.items() if k.lower() in SECRET_PARAMETERS]
    return [s for v in values for s in ([v] if isinstance(v, str) else list(v or []))]


def redact_text(text: str, url: str) -> str:
    """`text` (a driver's error message) with the URL's secrets masked wherever they appear."""
    text = text.replace(url, redact(url))
    for secret in _secrets(url):
        if secret:  # as a whole word, so a short password does not mask every letter it shares
            text = re.sub(rf"(?<![\w]){re.escape(secret)}(?![\w])", "***", text)
    return text


def redacted_command(argv: list[str]) -> str:
    """A command line as recorded and printed: every URL argument (`--storage URL`,
    `--storage=URL`) without its password."""
    import shlex

    parts = []
    for arg in argv:
        option, sep, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
        parts.append(f"{option}{sep}{redact(value)}" if "://" in value else arg)
    return " ".join(shlex.quote(p) for p in parts)


def open_study(storage_url, name: str, sampler, directions: list[str]):
    """Create or load the study; `storage_url` is a URL or a storage `open_storage` returned."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(storage_url) if isinstance(storage_url, str) else storage_url
    return optuna.create_study(
        storage=storage, study_name=name, sampler=sampler, directions=directions, load_if_exists=True
    )


def check_same_recipe(study, recipe_json: str) -> None:
    """Refuse to mix trials of two different recipes in one study.

    The stored recipe is re-read through the current Recipe model first, so a field added to
    soupkit since (with its default) is not taken for a change.
    """
    from soupkit.config import NOT_TRIAL_SECTIONS, Recipe

    stored = StudyRecord.of(study).recipe_json
    if stored is None:
        record_recipe(study, recipe_json)
        return
    stored_json = {k: v for k, v in json.loads(stored).items() if k not in NOT_TRIAL_SECTIONS}
    old = Recipe.model_validate(stored_json).model_dump(mode="json", exclude=set(NOT_TRIAL_SECTIONS))
    new = json.loads(recipe_json)
    if old != new:
        diff = next((k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)), "?")
        raise SoupkitError(
            f"study '{study.study_name}' was started with a different recipe (field '{diff}' differs); "
            "use another --out/--storage, or the original settings to resume"
        )


HELD_OUT_HALVES = HELD_OUT_HALVED  # what older studies' held-out probe scores are scored on


def check_held_out_halves(study, recipe, record: bool = False) -> str:
    """The probe split scheme of the study's scores (soupkit.data.halves.SPLIT_SCHEMES): every
    probe's selection half for a study made since trained families were halved; held-out probes'
    selection halves and trained families' whole probes for an older one, which keeps scoring so
    when resumed. With `record`, a new (trial-less) study is marked with the current scheme.
    Refuses a study whose held-out probes were scored whole (made before soupkit halved them)."""
    scheme = probe_split_of(study)
    if scheme is not None:
        if scheme not in SPLIT_SCHEMES:
            raise SoupkitError(f"study '{study.study_name}' was scored on probe split '{scheme}', which this "
                               f"soupkit does not know ({', '.join(SPLIT_SCHEMES)}); upgrade soupkit")
        return scheme
    if record and not study.get_trials(deepcopy=False):
        record_probe_split(study, EVERY_PROBE_HALVED)
        return EVERY_PROBE_HALVED
    if not recipe.probe_only or held_out_mark(study) == HELD_OUT_HALVES:
        return HELD_OUT_HALVED
    raise SoupkitError(
        f"study '{study.study_name}' scored its held-out probes ({', '.join(recipe.probe_names_only())}) whole, "
        "before soupkit split them into a selection half and a test half; start a new study (another --out)"
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_dead_trials(study, storage, requeue: bool = True) -> list[int]:
    """Fail RUNNING trials whose worker on this host is gone and, with `requeue`, queue their mixtures
    again, and those of trials interrupted by Ctrl-C; return the numbers re-queued. Of several
    workers running this at once, the one whose update fails a dead trial re-queues it."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    records = [TrialRecord.of(t) for t in trials]
    retried = {r.retry_of for r in records}
    requeued = []
    for t, record in zip(trials, records):
        dead_here = t.state == TrialState.RUNNING and died_on_this_host(record.worker)
        interrupted = t.state == TrialState.FAIL and record.error == INTERRUPTED
        if dead_here:
            try:
                record_worker_died(storage, study.study_name, t.number)
            except UpdateFinishedTrialError:
                continue  # another worker failed it first, and re-queues it
        # a trial killed before it suggested its mixture only holds the enqueued (fixed) params
        params = trial_params(t)
        if requeue and (dead_here or interrupted) and t.number not in retried and params:
            study.enqueue_trial(params, user_attrs=retry_attrs(t.number), skip_if_exists=False)
            requeued.append(t.number)
    return requeued


def trial_counts(study) -> dict[str, int]:
    """Trials by state, and two more counts: STOPPED, the PRUNED trials the pruner stopped at a
    milestone, and DONE, what the budget counts: completed trials and stopped ones (a user who
    asks for 40 trials with a pruner gets 40 trials' worth of work, not 40 completed plus any
    number stopped). Trials that gave way (PRUNED, `skipped`) did no work and count for nothing."""
    from collections import Counter

    trials = study.get_trials(deepcopy=False)
    counts = Counter(t.state.name for t in trials)
    stopped = sum(stopped_by_pruner(t) for t in trials)
    return {"COMPLETE": counts["COMPLETE"], "RUNNING": counts["RUNNING"], "FAIL": counts["FAIL"],
            "WAITING": counts["WAITING"], "PRUNED": counts["PRUNED"], "STOPPED": stopped,
            "DONE": counts["COMPLETE"] + stopped}


def died_on_this_host(worker: dict) -> bool:
    """Whether the worker recorded on a trial ran on this host, is not this process, and is gone."""
    return (worker.get("host") == socket.gethostname() and worker.get("pid") != os.getpid()
            and not _pid_alive(int(worker.get("pid", 0))))


def search_study_names(storage) -> list[str]:
    """The studies a run folder is about, leaving out those of later stages that sit beside a
    search's in its storage (its ingredient study)."""
    import optuna

    from soupkit.study_record import beside_of

    summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    return [s.study_name for s in summaries if not beside_of(s)]
