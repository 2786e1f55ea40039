"""The Optuna study: the one record of every trial. Opening, resuming and recovering it.

Storage is any Optuna RDB URL (SQLite in the run folder by default, PostgreSQL for many workers).
Heartbeats let Optuna fail the trial of a worker that vanished; its retry callback re-queues the
mixture. A worker killed on this host is recognised at once by its pid, without waiting.
"""

from __future__ import annotations

import contextlib
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


def open_storage(url: str, attempts: int = 3, create: bool = False):
    """An RDBStorage with heartbeats. Workers that start together on an empty database race to
    create its tables; the loser's error is retried. A server that cannot be reached is not.

    Only a command that creates a study passes `create`: then a new or empty database gets
    Optuna's tables. Otherwise (every reader) the database must already be a study storage, and
    one that is missing or foreign is refused without a byte written. A database holding other
    tables than Optuna's is refused either way: it is someone else's."""
    import time
    import warnings

    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    _check_is_study_storage(url, create)
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


OPTUNA_TABLES = frozenset({"studies", "trials", "version_info"})  # what every Optuna RDB storage holds


def _sqlite_file(url: str) -> Path | None:
    """The file of a `sqlite:///PATH` URL (None: not SQLite, or an in-memory database)."""
    from sqlalchemy.engine import make_url

    if not url.startswith("sqlite"):
        return None
    database = make_url(url).database
    return Path(database) if database and database != ":memory:" and not database.startswith("file:") else None


def _tables_of(url: str) -> set[str]:
    """The tables a database holds, read without writing (SQLite: opened read-only)."""
    import sqlite3

    file = _sqlite_file(url)
    if file is not None:
        uri = f"{file.absolute().as_uri()}?mode=ro"
        try:
            with contextlib.closing(sqlite3.connect(uri, uri=True)) as con:
                return {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.Error as exc:
            raise SoupkitError(f"cannot open study storage '{url}': {file} is not a readable SQLite database "
                               f"({exc})") from None
    from sqlalchemy import create_engine, inspect

    engine = create_engine(url, **(_engine_kwargs(url) or {}))
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _check_is_study_storage(url: str, create: bool) -> None:
    file = _sqlite_file(url)
    if file is not None and not file.exists():
        if create:
            return
        raise SoupkitError(f"no study found: {file} does not exist (run `soupkit search` first, or check the path)")
    if file is not None and not file.is_file():
        raise SoupkitError(f"cannot open study storage '{url}': {file} is not a file")
    if file is None and create:
        tables = None  # a server: opening it tells the same, with the driver's own message
    else:
        try:
            tables = _tables_of(url)
        except SoupkitError:
            raise
        except ImportError:
            return  # the driver is missing: open_storage says which, with how to install it
        except Exception as exc:  # an unreachable server, a bad URL: open_storage reports it in one line
            if file is not None:
                raise SoupkitError(f"cannot open study storage '{redact(url)}': {str(exc).splitlines()[0]}") from None
            return
    if tables is None or OPTUNA_TABLES <= tables:
        return
    shown = redact(url)
    if tables:
        raise SoupkitError(f"storage '{shown}' is not an Optuna study storage: it holds other tables "
                           f"({', '.join(sorted(tables)[:3])}{', ...' if len(tables) > 3 else ''}) and none of Optuna's; "
                           "soupkit does not add tables to a database of yours")
    if not create:
        raise SoupkitError(f"no study found: storage '{shown}' holds no study (an empty database; run "
                           "`soupkit search` first, or check the path)")


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
    """The URL with every password masked, for whatever is printed or saved (messages, logs, the
    command recorded beside a model): everything after the user name up to the LAST '@' (a raw
    '@' in a password must not leave the rest of it behind, as a URL parser splitting at the first
    '@' would), and any `?password=` and the like."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    if "@" in rest:
        userinfo, host = rest.rsplit("@", 1)
        user, colon, _ = userinfo.partition(":")
        rest = f"{user}:***@{host}" if colon else f"{userinfo}@{host}"
    masked = re.sub(rf"(?i)([?&]({'|'.join(SECRET_PARAMETERS)})=)[^&#]*", r"\1***", rest)
    return f"{scheme}://{masked}"


def _secrets(url: str) -> list[str]:
    """The passwords a URL carries (user-info part and query parameters), and the pieces a driver
    that split the user-info elsewhere may print (at its first '@': a host name "ngPw55@host")."""
    _, sep, rest = url.partition("://")
    if not sep:
        return []
    found = []
    if "@" in rest:
        password = rest.rsplit("@", 1)[0].partition(":")[2]
        # what a parser cutting at one of '@', ':', '/', '#', '?' may print: the part before or after
        # that cut (if long enough to be no common word)
        cuts = [m.start() for m in re.finditer(r"[@:/#?]", password)]
        found += [password, *(piece for i in cuts for piece in (password[:i], password[i + 1:]) if len(piece) >= 4)]
    found += re.findall(rf"(?i)[?&](?:{'|'.join(SECRET_PARAMETERS)})=([^&#]*)", rest)
    return sorted({s for s in found if s}, key=len, reverse=True)  # the whole before its pieces


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
    storage = open_storage(storage_url, create=True) if isinstance(storage_url, str) else storage_url
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
