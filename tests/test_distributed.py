"""Several `soupkit search` workers sharing one study on a real PostgreSQL server.

The server is started on 127.0.0.1 (a free port, a throwaway data folder) once per session and
stopped at the end; each test gets its own database. Workers are real CLI processes on the tiny
model: the budget counts the completed trials of all of them, no mixture is trained twice, and a
worker killed mid-trial loses nothing (another worker re-runs its mixture).
"""

from __future__ import annotations

import functools
import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from soupkit.search.checkpoints import OWNER_FILE
from soupkit.search.study import open_storage, open_study
from soupkit.search.workers import mixture_key

pytestmark = [pytest.mark.postgres, pytest.mark.slow]  # workers train models

DB_USER = "soupkit"


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """A PostgreSQL server of our own, run as a non-root user (PostgreSQL refuses root)."""

    def __init__(self, bin_dir: Path):
        self.bin = bin_dir
        self.port = _free_port()
        # not under pytest's tmp folder: it is private to root and the server runs as `postgres`
        self.root = Path(tempfile.mkdtemp(prefix="soupkit-pg-"))
        self.data = self.root / "data"
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._names = itertools.count()

    def run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        self.run(str(self.bin / "initdb"), "-D", str(self.data), "-U", DB_USER, "--auth=trust", "-E", "UTF8",
                 "--no-sync")
        options = f"-h 127.0.0.1 -p {self.port} -k {self.data} -c fsync=off -c max_connections=50"
        self.run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.root / "log"),
                 "-w", "-t", "60", "start")

    def new_database(self) -> str:
        name = f"study{next(self._names)}"
        self.run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", DB_USER, name)
        return f"postgresql://{DB_USER}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        try:
            self.run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server():
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
    server = PostgresServer(bin_dir)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    return postgres_server.new_database()


def write_recipe(recipe, path: Path) -> Path:
    path.write_text(yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False))
    return path


def start_worker(recipe: Path, out: Path, url: str, budget: int, pause_at: str | None = None,
                 marker: Path | None = None) -> subprocess.Popen:
    """A `soupkit worker` process; with `pause_at`, it stops there (soupkit.pause) and touches `marker`."""
    cmd = [sys.executable, "-m", "soupkit.cli", "worker", "--recipe", str(recipe), "--budget", str(budget),
           "--storage", url, "--out", str(out), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if pause_at:
        env.update(SOUPKIT_TEST_PAUSE_AT=pause_at, SOUPKIT_TEST_PAUSE_FILE=str(marker))
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def wait_for(condition, what: str, workers: list[subprocess.Popen], seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        for worker in workers:
            if worker.poll() is not None:
                pytest.fail(f"a worker exited before {what}: {worker.stdout.read()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.3)


def finish(worker: subprocess.Popen, timeout: float = 240) -> str:
    output, _ = worker.communicate(timeout=timeout)
    assert worker.returncode == 0, output[-3000:]
    return output


@functools.cache
def storage(url: str):
    """One storage (one connection pool) per database for the test's own polling: a pool per poll
    filled the server's 50 connections before the garbage collector closed them (CI failure)."""
    return open_storage(url, create=True)


def tiny_study(url: str):
    return open_study(storage(url), "tiny", None, ["maximize"])


def completed(url: str) -> int:
    study = tiny_study(url)
    return sum(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False))


def assert_budget_met(url: str, budget: int) -> list:
    study = tiny_study(url)
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(done) == budget, [(t.number, t.state.name, t.user_attrs.get("skipped")) for t in trials]
    assert len({mixture_key(t.params) for t in done}) == budget  # no mixture trained twice
    for t in done:
        assert set(t.user_attrs["scores"]) == {"medical-icd10", "medical-icd10-chapters"}
        assert (Path(t.user_attrs["checkpoint"]) / "model.safetensors").is_file()
        assert (Path(t.user_attrs["checkpoint"]) / "soupkit_trial.yaml").is_file()
    assert not [t for t in trials if t.state.name == "RUNNING"]
    return trials


def test_two_workers_share_one_budget(tiny_recipe, tiny_model, tmp_path, postgres_url):
    recipe = write_recipe(tiny_recipe(tiny_model), tmp_path / "tiny.yaml")
    out = tmp_path / "shared"  # the folder every worker reaches
    marker = tmp_path / "paused"
    # the first holds its first trial (paused before probing) while the second fills the rest of the
    # budget and waits for it: both must then stop at exactly 6. The second starts once the first
    # holds its trial, so a slow start of the first (a loaded machine) cannot let it take all six.
    first = start_worker(recipe, out, postgres_url, budget=6, pause_at="probe", marker=marker)
    wait_for(marker.exists, "the first worker's pause", [first])
    second = start_worker(recipe, out, postgres_url, budget=6)
    wait_for(lambda: completed(postgres_url) == 5, "5 completed trials", [first, second])
    time.sleep(3)  # the second worker now waits for the held trial (and must not start a 7th)
    assert completed(postgres_url) == 5 and second.poll() is None
    first.send_signal(signal.SIGUSR1)
    finish(first), finish(second)

    trials = assert_budget_met(postgres_url, 6)
    by_worker = Counter(t.user_attrs["worker"]["pid"] for t in trials if t.state.name == "COMPLETE")
    assert by_worker == {first.pid: 1, second.pid: 5}
    # the recipe's seed mixture, queued by one or both workers, was trained once
    assert len([t for t in trials if t.user_attrs.get("seeded") and t.state.name == "COMPLETE"]) == 1
    assert sorted(p.name for p in (out / "trials").iterdir() if p.name != OWNER_FILE) == sorted(
        f"trial-{t.number:04d}" for t in trials if t.state.name == "COMPLETE"
    )


def test_a_killed_worker_loses_nothing(tiny_recipe, tiny_model, tmp_path, postgres_url):
    recipe = write_recipe(tiny_recipe(tiny_model), tmp_path / "tiny.yaml")
    out = tmp_path / "shared"
    marker = tmp_path / "paused"
    # the victim stops after its first finetune, before probing, and is killed there while the
    # survivor works on the same study (started once the victim holds its trial, so that a slow
    # start of the victim cannot let the survivor finish the budget first)
    victim = start_worker(recipe, out, postgres_url, budget=6, pause_at="probe", marker=marker)
    wait_for(marker.exists, "the victim's pause", [victim])
    survivor = start_worker(recipe, out, postgres_url, budget=6)
    study = tiny_study(postgres_url)
    wait_for(lambda: any(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False)),
             "the survivor's first trial", [survivor])
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    finish(survivor)

    trials = assert_budget_met(postgres_url, 6)
    dead = [t for t in trials if t.user_attrs.get("error") == "worker process died"]
    assert len(dead) == 1 and dead[0].state.name == "FAIL"
    retry = [t for t in trials if t.user_attrs.get("retry_of") == dead[0].number]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE"
    assert retry[0].params == dead[0].params
    assert {t.user_attrs["worker"]["pid"] for t in trials if t.state.name == "COMPLETE"} == {survivor.pid}


def test_a_password_in_the_storage_url_reaches_no_file_and_no_terminal(tiny_recipe, tiny_model, tmp_path, postgres_url):
    """Issue 11 #5: the URL was saved verbatim in every soupkit_trial.yaml (`command:`) and printed
    in full at the end. The server trusts local connections, so any password is accepted."""
    secret = "hunter2-s3cret"
    url = postgres_url.replace(f"{DB_USER}@", f"{DB_USER}:{secret}@")
    recipe = write_recipe(tiny_recipe(tiny_model), tmp_path / "tiny.yaml")
    out = tmp_path / "run"
    output = finish(start_worker(recipe, out, url, budget=1))
    assert secret not in output and f"{DB_USER}:***@" in output
    for path in out.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    trial_record = yaml.safe_load(next(out.glob("trials/trial-*/soupkit_trial.yaml")).read_text())
    assert f"--storage 'postgresql://{DB_USER}:***@" in trial_record["command"]
    study = tiny_study(postgres_url)
    assert secret not in repr([t.user_attrs for t in study.trials]) + repr(study.user_attrs)


def test_a_search_leaves_no_connection_open(tiny_recipe, tiny_model, tmp_path, postgres_url):
    """A search's connection pool is closed when it ends, not when the garbage collector gets to it:
    the command then opens the study again for its summary, and PostgreSQL refuses clients past
    max_connections (the CI failure of 2026-11-29)."""
    import gc

    import sqlalchemy

    from soupkit.search.run import run_search

    counter = sqlalchemy.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"),
                                       poolclass=sqlalchemy.pool.NullPool)
    others = sqlalchemy.text("SELECT count(*) FROM pg_stat_activity "
                             "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    gc.disable()  # what is left open must be closed by the search, not collected
    try:
        run_search(tiny_recipe(tiny_model), tmp_path / "run", postgres_url, log=lambda s: None, show_progress=False)
        with counter.connect() as conn:
            assert conn.execute(others).scalar() == 0
    finally:
        gc.enable()
        counter.dispose()
