"""`soupkit dashboard` in a real browser: the CLI serves a small tiny-model study on 127.0.0.1 and
headless Chromium shows the study, its trials and their user attributes."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest


pytestmark = [pytest.mark.browser, pytest.mark.slow]  # a search trains models first

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,2000")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses with a socket in LISTEN state on `port` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


@pytest.fixture
def dashboard(search, tiny_recipe, tiny_model, tmp_path):
    out = tmp_path / "run"
    search(tiny_recipe(tiny_model), out, budget=2)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "soupkit.cli", "dashboard", "--out", str(out), "--port",
                               str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while not listening_addresses(port):
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail(f"dashboard did not start: {server.communicate()[0][-3000:]}")
        time.sleep(0.2)
    yield out, port
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture
def browser(tmp_path):
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists() or shutil.which("chromedriver") is None:
        pytest.skip("needs Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install -e '.[test]')")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def page_text_with(browser, *needles: str, seconds: float = 45) -> str:
    """The page's visible text once it holds every needle (the dashboard renders after loading)."""
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + seconds
    while True:
        text = browser.find_element(By.TAG_NAME, "body").text
        if all(n in text for n in needles) or time.monotonic() > deadline:
            missing = [n for n in needles if n not in text]
            assert not missing, f"missing {missing} in:\n{text[:3000]}"
            return text
        time.sleep(0.3)


def show_every_row(browser) -> None:
    """Set the first table's "Rows per page" to All (a native select in optuna-dashboard)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    select = browser.find_element(By.XPATH, "//*[contains(text(), 'Rows per page')]/following::select[1]")
    Select(select).select_by_visible_text("All")


def test_dashboard_shows_the_study_its_trials_and_their_attributes(load_study, dashboard, browser):
    from selenium.webdriver.common.by import By

    out, port = dashboard
    assert listening_addresses(port) == {"127.0.0.1"}  # loopback only, without --host
    study = load_study(out)
    url = f"http://127.0.0.1:{port}/dashboard"

    browser.get(url)
    page_text_with(browser, "tiny", "MAXIMIZE")

    browser.get(f"{url}/studies/{study._study_id}")
    page_text_with(browser, "tiny", "Study User Attributes")
    show_every_row(browser)  # the attribute table shows 5 rows a page; a study records more
    page_text_with(browser, "tiny", "Study User Attributes", "base_scores", "base_objective")

    browser.get(f"{url}/studies/{study._study_id}/trials")
    page_text_with(browser, f"{len(study.trials)} Trials", "Trial 0", "Trial 1")
    for trial in study.trials:
        browser.find_element(By.XPATH, f"//*[normalize-space(text())='Trial {trial.number}']").click()
        attrs = trial.user_attrs
        page_text_with(
            browser, f"Trial {trial.number} (trial_id=", "User Attributes",
            f"checkpoint {attrs['checkpoint']}", f"mixture {json.dumps(attrs['mixture'])}",
            f"scores {json.dumps(attrs['scores'])}", f"worker {json.dumps(attrs['worker'])}",
            *(f"weight {family} {weight}" for family, weight in attrs["mixture"].items()),
        )
