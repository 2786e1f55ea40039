"""`soupkit report` on small real studies: the HTML page, the summary, the dashboard notes and
artifacts, a two-objective study, a study with nothing completed, and the page in headless Chromium."""

from __future__ import annotations

import io
import re
import shutil
import tempfile
import threading
import time
import warnings
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

import optuna
import pytest
from click.testing import CliRunner

from soupkit.cli import main
from soupkit.config import Recipe
from soupkit.errors import SoupkitError
from soupkit.soups.study_soup import build_soup
from soupkit.report.dashboard import ARTIFACT_DIR, artifact_store, study_artifacts
from soupkit.report.figures import FIGURES
from soupkit.search.study import default_storage, open_storage

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ALL_FIGURES = [f.key for f in FIGURES]
ONE_OBJECTIVE_FIGURES = [k for k in ALL_FIGURES if k != "pareto"]


@pytest.fixture(scope="module")
def runs(search, tiny_recipe, tmp_path_factory, tiny_model_dir):
    """One storage, three real studies: `tiny` (3 trials, a soup, a failed and a running trial),
    `tiny-pareto` (two objectives) and `tiny-diverging` (its only trial failed)."""
    root = tmp_path_factory.mktemp("report")
    model = shutil.copytree(tiny_model_dir, root / "model")
    out = root / "run"
    # a larger learning rate than the search tests, so that trials differ and the plots have shape
    search(tiny_recipe(model, learning_rate=1e-2, steps=6), out, budget=3)
    study = optuna.load_study(study_name="tiny", storage=open_storage(default_storage(out)))
    build_soup(study, out, method="uniform", top_k=2, log=lambda s: None)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)  # ask/tell here, not optimize
        failed = study.ask()
        failed.set_user_attr("mixture", {"medical-icd10": 0.5, "medical-icd10-chapters": 0.5})
        failed.set_user_attr("error", "RuntimeError: loss became nan at step 2")
        study.tell(failed, state=optuna.trial.TrialState.FAIL)
        running = study.ask()  # a trial still being trained: the study is partial
        running.set_user_attr("mixture", {"medical-icd10": 0.1, "medical-icd10-chapters": 0.9})

    # the other recipes' studies join the same storage; each has a run folder of its own (a run
    # folder holds one recipe's search)
    storage = default_storage(out)
    base = tiny_recipe(model, learning_rate=1e-2, steps=6).model_dump()
    pareto = Recipe.model_validate({**base, "name": "tiny-pareto",
                                    "objective": {"mode": "pareto", "domain": ["medical-icd10"]}})
    search(pareto, root / "run-pareto", budget=3, storage=storage)
    diverging = Recipe.model_validate({**tiny_recipe(model).model_dump(), "name": "tiny-diverging"})
    # past the bound a recipe may set (learning_rate <= 1): model_copy does not validate
    diverging = diverging.model_copy(update={"finetune": diverging.finetune.model_copy(update={"learning_rate": 1e30})})
    with pytest.raises(SoupkitError, match="failed in a row"):
        search(diverging, root / "run-diverging", max_failures=1, storage=storage)
    return out


def _report(out: Path, *args: str) -> tuple[str, str]:
    done = CliRunner().invoke(main, ["report", "--out", str(out), *args])
    assert done.exit_code == 0, done.output
    html = Path(args[args.index("--html") + 1]) if "--html" in args else out / "report.html"
    return done.output, html.read_text()


def _drawn(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-figure="(\w+)" data-drawn="(yes|no)"', html))


@pytest.fixture(scope="module")
def tiny_report(runs):
    return _report(runs, "--study", "tiny")


@pytest.mark.slow
def test_report_draws_every_figure_and_prints_a_summary(runs, tiny_report):
    output, html = tiny_report
    assert "study 'tiny': 3 complete, 1 failed, 1 running trials" in output
    assert re.search(r"best trial #\d: objective \d\.\d{4} vs base \d\.\d{4} \([+-]\d\.\d{4}\)", output)
    assert "soup uniform-top2 (uniform, trials " in output
    assert "loss became nan at step 2" in output
    assert f"report: {runs / 'report.html'} (5 of 6 figures drawn)" in output
    # every figure, in order; the Pareto front says why a one-objective study has none
    assert _drawn(html) == {**dict.fromkeys(ONE_OBJECTIVE_FIGURES, "yes"), "pareto": "no"}
    assert html.count("<svg") == len(ONE_OBJECTIVE_FIGURES)
    assert "the study has one objective" in html
    assert "study &#x27;tiny&#x27;: 3 complete, 1 failed, 1 running trials" in html
    # failed and running trials are in the figures and the table, not hidden
    assert "#3  FAIL" in html and "#4  RUNNING" in html and "failed (1)" in html
    assert '<tr class="FAIL">' in html and '<tr class="RUNNING">' in html
    # self-contained: nothing to fetch, no script
    assert not re.search(r"<script|<link|<img|src=|@import|url\((?!#)", html)
    assert "Content-Security-Policy" in html


@pytest.mark.slow
def test_report_is_attached_to_the_study_for_the_dashboard(runs, tiny_report):
    from optuna_dashboard import get_note, save_note, wsgi

    store = open_storage(default_storage(runs))
    study = optuna.load_study(study_name="tiny", storage=store)
    artifacts = study_artifacts(study, store)
    expected = {f"report-{k}.svg" for k in ONE_OBJECTIVE_FIGURES} | {"report.html"}
    assert set(artifacts) == expected
    note = get_note(study)
    assert "## soupkit report" in note and "3 complete, 1 failed" in note
    for key in ONE_OBJECTIVE_FIGURES:
        assert f"/artifacts/{study._study_id}/{artifacts[f'report-{key}.svg']})" in note
    trial_notes = {t.number: get_note(optuna.trial.Trial(study, t._trial_id)) for t in study.trials}
    assert "| family | weight |" in trial_notes[0] and "| probe | score | base | change |" in trial_notes[0]
    assert "\n**FAIL**: RuntimeError: loss became nan" in trial_notes[3]
    assert "\n**RUNNING**" in trial_notes[4] and "| medical-icd10-chapters | 0.900 |" in trial_notes[4]

    # a second report rewrites the same artifacts and its own part of each note in place, and keeps
    # what a person wrote in the dashboard
    save_note(study, note + "\n\nmy own study note")
    first = optuna.trial.Trial(study, study.trials[0]._trial_id)
    save_note(first, "my own trial note\n\n" + trial_notes[0])
    _report(runs, "--study", "tiny")
    assert study_artifacts(study, store) == artifacts
    assert len(list((runs / ARTIFACT_DIR).iterdir())) == len(expected)
    assert get_note(study) == note + "\n\nmy own study note"
    assert get_note(first) == "my own trial note\n\n" + trial_notes[0]

    # optuna-dashboard serves each figure from the run's artifact store
    app = wsgi(store, artifact_store=artifact_store(runs))
    status, headers, body = _wsgi_get(app, f"/artifacts/{study._study_id}/{artifacts['report-objective.svg']}")
    assert status.startswith("200") and headers["Content-Type"] == "image/svg+xml"
    assert body.startswith(b"<svg")


def _wsgi_get(app, path: str):
    from wsgiref.util import setup_testing_defaults

    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.errors": io.StringIO()}
    setup_testing_defaults(environ)
    got = {}

    def start_response(status, headers, exc_info=None):
        got.update(status=status, headers=dict(headers))

    body = b"".join(app(environ, start_response))
    assert got["status"].startswith("200"), environ["wsgi.errors"].getvalue()[-3000:]
    return got["status"], got["headers"], body


@pytest.mark.slow
def test_report_of_a_two_objective_study_draws_the_pareto_front(runs, tmp_path):
    url = default_storage(runs)
    no_name = CliRunner().invoke(main, ["report", "--storage", url])
    assert no_name.exit_code == 2 and "name one with --study" in no_name.output
    output, html = _report(runs, "--storage", url, "--study", "tiny-pareto", "--html", str(tmp_path / "p.html"),
                           "--no-attach")
    assert "Pareto front (domain / general):" in output and "(base " in output
    assert _drawn(html) == {**dict.fromkeys(ALL_FIGURES, "yes"), "soups": "no"}
    assert "Pareto front (" in html and "no soups yet" in html


@pytest.mark.slow
def test_report_of_a_study_with_only_failed_trials(runs, tmp_path):
    output, html = _report(runs, "--study", "tiny-diverging", "--html", str(tmp_path / "d.html"), "--no-attach")
    assert "0 complete, 1 failed" in output and "no completed trial yet; base model objective" in output
    assert "loss became nan" in output
    drawn = _drawn(html)
    assert drawn["objective"] == drawn["mixtures"] == drawn["seconds"] == drawn["probes"] == "yes"
    assert drawn["soups"] == drawn["pareto"] == "no"


def test_report_of_any_study_object_in_memory(tmp_path):
    """`write_report` takes any optuna Study: here an in-memory two-objective one, made by hand,
    with a trial the search skipped (PRUNED) and one still waiting."""
    from optuna_dashboard import get_note

    from soupkit.report import write_report

    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, directions=["maximize", "maximize"])
    study.set_user_attr("base_scores", {"a": 0.5, "b": 0.5})
    study.set_user_attr("base_objective", 0.5)
    study.set_user_attr("base_values", [0.5, 0.5])
    for number, (a, b) in enumerate([(0.6, 0.4), (0.4, 0.6), (0.55, 0.55), (0.45, 0.45)]):
        trial = study.ask()
        trial.set_user_attr("mixture", {"fam-a": (number + 1) / 5, "fam-b": 1 - (number + 1) / 5})
        trial.set_user_attr("scores", {"a": a, "b": b})
        trial.set_user_attr("objective", (a + b) / 2)
        trial.set_user_attr("seconds", {"finetune": 1.0 + number, "probe": 0.5})
        study.tell(trial, [a, b])
    skipped = study.ask()
    skipped.set_user_attr("skipped", "same mixture as trial 2")
    study.tell(skipped, state=optuna.trial.TrialState.PRUNED)
    study.enqueue_trial({})

    report = write_report(study, tmp_path / "r.html", tmp_path, storage=storage)
    html = (tmp_path / "r.html").read_text()
    assert _drawn(html) == {**dict.fromkeys(ALL_FIGURES, "yes"), "soups": "no"}
    counts = "4 complete, 0 failed, 1 waiting, 1 skipped trials"
    assert report.summary.splitlines()[0] == f"study '{study.study_name}': {counts}"
    assert "Pareto front (domain / general): 3 trials #0, #1, #2 (base 0.5000 / 0.5000)" in report.summary
    assert "skipped (1)" in html and "waiting (1)" in html
    note = get_note(optuna.trial.Trial(study, study.trials[4]._trial_id))
    assert "\n**PRUNED**: same mixture as trial 2\n" in note


@pytest.mark.slow
@pytest.mark.browser
def test_report_and_dashboard_render_in_headless_chromium(runs, tiny_report, tmp_path):
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.skip("needs Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver)")
    _, pareto_html = _report(runs, "--study", "tiny-pareto", "--html", str(tmp_path / "pareto.html"), "--no-attach")
    with _chromium(tmp_path) as browser:
        for name, page, keys in (("report", runs / "report.html", ONE_OBJECTIVE_FIGURES),
                                 ("pareto", tmp_path / "pareto.html", [k for k in ALL_FIGURES if k != "soups"])):
            browser.get(page.as_uri())
            drawn = browser.execute_script(_MEASURE_FIGURES)
            assert sorted(drawn) == sorted(keys), drawn
            for key, (width, height, marks, texts) in drawn.items():
                assert width > 200 and height > 100, (name, key, width, height)
                assert marks >= 5 and texts >= 5, (name, key, marks, texts)
            assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
            _screenshot(browser, tmp_path / f"{name}.png")
            assert _errors(browser) == []

        # optuna-dashboard shows the figures in the study's note, and each trial's tables in its note
        study_id = optuna.load_study(study_name="tiny", storage=open_storage(default_storage(runs)))._study_id
        with _dashboard(runs) as url:
            browser.get(f"{url}/dashboard/studies/{study_id}/note")
            loaded = _wait(browser, "return Array.from(document.images).filter("
                           "i => i.src.includes('/artifacts/') && i.complete && i.naturalWidth > 0).length",
                           len(ONE_OBJECTIVE_FIGURES))
            _screenshot(browser, tmp_path / "dashboard-note.png")
            assert loaded == len(ONE_OBJECTIVE_FIGURES)
            browser.get(f"{url}/dashboard/studies/{study_id}/trials")
            found = _wait(browser, "const t = document.body.innerText; return "
                          "['objective 0.', 'family', 'weight', 'probe', 'change'].every(w => t.includes(w))", True)
            _screenshot(browser, tmp_path / "dashboard-trial.png")
            assert found
            assert _errors(browser) == []
    assert (tmp_path / "report.png").stat().st_size > 10_000


_MEASURE_FIGURES = """
const out = {};
for (const s of document.querySelectorAll('section[data-drawn="yes"]')) {
  const svg = s.querySelector('svg');
  const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  const marks = svg ? Array.from(svg.querySelectorAll('path, rect, line, polyline, use'))
      .filter(e => { const b = e.getBBox(); return b.width > 0 || b.height > 0; }).length : 0;
  const texts = svg ? Array.from(svg.querySelectorAll('text')).filter(t => t.getBBox().width > 0).length : 0;
  out[s.dataset.figure] = [box.width, box.height, marks, texts];
}
return out;
"""


class _chromium:
    """Headless Debian Chromium through chromedriver, with a fresh profile and no network extras."""

    def __init__(self, tmp_path: Path):
        self.profile = tempfile.mkdtemp(dir=tmp_path, prefix="chromium-profile-")

    def __enter__(self):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", f"--user-data-dir={self.profile}", "--window-size=1280,900"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        self.driver.set_page_load_timeout(30)
        return self.driver

    def __exit__(self, *exc):
        self.driver.quit()


def _errors(browser) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def _screenshot(browser, path: Path) -> None:
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(max(height, 600), 8000))
    assert browser.save_screenshot(str(path))


def _wait(browser, script: str, at_least: int | bool, seconds: float = 30.0):
    """The script's value once it reaches `at_least` (the dashboard renders after loading its data)."""
    deadline = time.monotonic() + seconds
    while True:
        value = browser.execute_script(script)
        if value >= at_least or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args) -> None:
        pass


class _dashboard:
    """optuna-dashboard on a free local port, serving the run's artifact store."""

    def __init__(self, run_dir: Path):
        from optuna_dashboard import wsgi

        app = wsgi(open_storage(default_storage(run_dir)), artifact_store=artifact_store(run_dir))
        self.server = make_server("127.0.0.1", 0, app, handler_class=_QuietHandler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_port}"

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
