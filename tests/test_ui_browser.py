"""The Prefect and MLflow UIs as users see them after a sweep, driven by headless Chromium.

One small sweep runs through the `sweep/smoke` deployment on the real local stack; then a browser
checks that the Prefect UI lists the `sweep` deployments and shows the finished run's artifacts, and
that the MLflow UI lists the sweep's child runs with their `w.<domain>` params and opens the compare
view of two of them. Every page is saved as a screenshot: into `$MIXSWEEP_SCREENSHOTS` when set (the
README's pictures come from `MIXSWEEP_SCREENSHOTS=docs/screenshots`), else into the test's tmp dir.

Both UIs are React single-page apps: every check waits on a DOM condition, never on a fixed sleep.
Selenium is pointed at Debian's chromium and chromedriver, so Selenium Manager never downloads one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from flows.stack.local import REPO, LocalStack
from tests.sweep_helpers import smoke_spec, stack_env

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT_S = 60
DOMAINS = ("code", "digits", "prose", "zh")  # the tiny corpus of tests/data_support.py
BIN = Path(sys.executable).parent

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver); "
        "deploy/setup.sh installs them",
    ),
]


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,800"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    # the page itself 1280x800 (the window size also counts the browser's own frame)
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False}
    )
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("MIXSWEEP_SCREENSHOTS") or tmp_path / "screenshots")
    folder = folder if folder.is_absolute() else REPO / folder
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def wait_for(driver: webdriver.Chrome, what: str, condition: Callable[[webdriver.Chrome], object]) -> object:
    """Wait until `condition` holds (truthy); on time-out say what was awaited, on which page."""
    try:
        return WebDriverWait(driver, WAIT_S, poll_frequency=0.5, ignored_exceptions=(Exception,)).until(condition)
    except TimeoutException:
        body = driver.find_element(By.TAG_NAME, "body").text
        raise AssertionError(f"{what}: not seen within {WAIT_S}s on {driver.current_url}\n{body[:1500]}") from None


def wait_texts(driver: webdriver.Chrome, *texts: str) -> None:
    wait_for(driver, f"texts {texts}", lambda d: all(t in d.find_element(By.TAG_NAME, "body").text for t in texts))


def clickable(driver: webdriver.Chrome, by: str, selector: str) -> WebElement:
    def find(d: webdriver.Chrome) -> WebElement | bool:
        found = [e for e in d.find_elements(by, selector) if e.is_displayed() and e.is_enabled()]
        return found[0] if found else False

    element = wait_for(driver, f"clickable {selector}", find)
    assert isinstance(element, WebElement)
    return element


def run_smoke_sweep(stack: LocalStack, corpus: Path, out: Path, name: str) -> str:
    """One small sweep through `prefect deployment run sweep/smoke --watch`; returns the flow run id."""
    spec = smoke_spec(corpus, out, name, rounds=1, per_round=2, steps=2)
    cmd = [str(BIN / "prefect"), "deployment", "run", "sweep/smoke", "--params", json.dumps({"spec": spec})]
    cmd += ["--watch", "--watch-timeout", "900"]
    proc = subprocess.run(cmd, env=stack_env(stack), capture_output=True, text=True, timeout=960)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    found = re.search(r"flow-run/([0-9a-f-]{36})", proc.stdout)
    assert found, proc.stdout[-3000:]
    return found.group(1)


def run_form_page(driver: webdriver.Chrome, prefect: str, shots: Path) -> None:
    """The custom-run form of `sweep/smoke`: the spec's sections as fields with their help, filled in
    from `deploy/specs/smoke.yaml`, with the registries' names as choices."""
    with urllib.request.urlopen(f"{prefect}/api/deployments/name/sweep/smoke", timeout=30) as response:
        deployment = json.load(response)
    smoke = yaml.safe_load((REPO / "deploy" / "specs" / "smoke.yaml").read_text())
    assert deployment["parameters"]["spec"] == smoke  # the form opens with the spec file's values
    driver.get(f"{prefect}/v2/deployments/deployment/{deployment['id']}/run")
    wait_texts(driver, "Rounds", "Per Round", "Trials (candidate mixtures) per round.")
    driver.save_screenshot(shots / "prefect-run-form.png")


def prefect_pages(driver: webdriver.Chrome, prefect: str, flow_run_id: str, slug: str, shots: Path) -> None:
    run_form_page(driver, prefect, shots)
    driver.get(f"{prefect}/v2/deployments")
    for name in ("demo", "smoke"):  # each deployment's row links to it, under its flow `sweep`
        wait_for(driver, f"deployment {name}", lambda d, n=name: d.find_elements(By.LINK_TEXT, n))
    registered = yaml.safe_load((REPO / "deploy" / "prefect.yaml").read_text())["deployments"]
    wait_texts(driver, f"{len(registered)} Deployments", "sweep")
    driver.save_screenshot(shots / "prefect-deployments.png")

    driver.get(f"{prefect}/v2/runs/flow-run/{flow_run_id}?tab=Artifacts")
    keys = (f"{slug}-leaderboard", f"{slug}-recommended", f"{slug}-round-1", f"{slug}-leaderboard-round-1")
    wait_texts(driver, "Completed", "smoke", *keys)
    tab = clickable(driver, By.XPATH, "//*[@role='tab' and normalize-space()='Artifacts']")
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", tab)
    driver.save_screenshot(shots / "prefect-flow-run-artifacts.png")

    # the final leaderboard: a table artifact with one row per trial and a column per domain. Its key's
    # page is opened by address (a click on the artifact list can land while the list re-renders)
    driver.get(f"{prefect}/v2/artifacts/key/{slug}-leaderboard")
    clickable(driver, By.CSS_SELECTOR, "a[href*='/artifacts/artifact/']").click()  # its latest version
    wait_for(driver, "the leaderboard table", lambda d: len(d.find_elements(By.CSS_SELECTOR, "table tbody tr")) == 2)
    header = driver.find_element(By.CSS_SELECTOR, "table thead").text.split()
    assert {"rank", "objective", *DOMAINS} <= set(header), header
    driver.save_screenshot(shots / "prefect-leaderboard-artifact.png")

    # the recommended mixture: a markdown artifact holding the exported YAML
    driver.get(f"{prefect}/v2/artifacts/key/{slug}-recommended")
    clickable(driver, By.CSS_SELECTOR, "a[href*='/artifacts/artifact/']").click()
    wait_texts(driver, f"Recommended mixture for {slug}", *DOMAINS, "Next:", "data_path.txt")
    driver.save_screenshot(shots / "prefect-recommended-artifact.png")

    # the round's report links each trial to its MLflow run
    driver.get(f"{prefect}/v2/artifacts/key/{slug}-round-1")
    clickable(driver, By.CSS_SELECTOR, "a[href*='/artifacts/artifact/']").click()
    wait_for(
        driver,
        "links to the trials' MLflow runs",
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "a[href*='/runs/']")) >= 2,
    )


def choose_columns(
    driver: webdriver.Chrome, search: str, *, on: Callable[[str], bool], off: Callable[[str], bool]
) -> None:
    """In the runs table's column selector, search `search`, then tick the columns `on` picks and
    untick those `off` picks."""
    box = clickable(driver, By.CSS_SELECTOR, "input[placeholder='Search columns']")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(search)
    node_css = "[role=dialog] .du-bois-light-tree-treenode"
    wait_for(
        driver,
        f"columns matching {search!r}",
        lambda d: any(search in n.text for n in d.find_elements(By.CSS_SELECTOR, node_css)),
    )
    for node in driver.find_elements(By.CSS_SELECTOR, node_css):
        checked = "checked" in (node.get_attribute("class") or "")
        if (on(node.text) and not checked) or (off(node.text) and checked):
            node.find_element(By.CSS_SELECTOR, ".du-bois-light-tree-checkbox").click()


def mlflow_pages(
    driver: webdriver.Chrome, mlflow: str, experiment_id: str, parent: str, trials: dict[str, str], shots: Path
) -> None:
    driver.get(f"{mlflow}/#/experiments/{experiment_id}/runs?workflowType=machine_learning")
    wait_for(
        driver, "the sweep's parent run", lambda d: d.find_elements(By.CSS_SELECTOR, f".ag-row[row-id='{parent}']")
    )
    for close in driver.find_elements(By.CSS_SELECTOR, "button[aria-label=Close]"):  # the assistant's side panel
        close.click()

    # params and metrics are hidden by default: show the mixture weights and the objective
    clickable(driver, By.XPATH, "//button[normalize-space()='Columns']").click()
    choose_columns(driver, "w.", on=lambda t: t.startswith("w."), off=lambda t: False)
    choose_columns(driver, "objective", on=lambda t: t == "objective", off=lambda t: False)
    for attribute in ("Dataset", "Source", "Models"):  # empty for these runs; they would push the weights off-screen
        choose_columns(driver, attribute, on=lambda t: False, off=lambda t, a=attribute: t == a)
    driver.find_element(By.CSS_SELECTOR, "input[placeholder='Search columns']").send_keys(Keys.ESCAPE)

    # the trials are nested under the sweep's run: expand it
    driver.find_element(By.CSS_SELECTOR, f".ag-row[row-id='{parent}'] button[data-component-id*='runnamecell']").click()
    for run_id, name in trials.items():
        wait_for(
            driver, f"child run {name}", lambda d, r=run_id: d.find_elements(By.CSS_SELECTOR, f".ag-row[row-id='{r}']")
        )
        wait_texts(driver, name)
    for domain in DOMAINS:
        col = f"params.`w.{domain}`"
        wait_for(
            driver,
            f"column w.{domain}",
            lambda d, c=col: d.find_elements(By.CSS_SELECTOR, f".ag-header-cell[col-id='{c}']"),
        )
        cells = driver.find_elements(By.CSS_SELECTOR, f".ag-row[row-id] [col-id='{col}']")
        values = [float(c.text) for c in cells if c.text.strip() not in ("", "-")]
        assert len(values) >= len(trials) and all(0 <= v <= 1 for v in values), (domain, values)
    driver.save_screenshot(shots / "mlflow-runs.png")

    runs = urllib.parse.quote(json.dumps(list(trials)))
    driver.get(f"{mlflow}/#/compare-runs?runs={runs}&experiments={urllib.parse.quote(json.dumps([experiment_id]))}")
    wait_texts(driver, f"Comparing {len(trials)} Runs from 1 Experiment", *trials.values(), *trials)
    wait_for(driver, "the parallel coordinates plot", lambda d: d.find_elements(By.CSS_SELECTOR, ".js-plotly-plot"))
    wait_texts(driver, *(f"w.{domain}" for domain in DOMAINS))  # the parameters table, side by side
    driver.save_screenshot(shots / "mlflow-compare-runs.png")


def test_sweep_in_the_prefect_and_mlflow_uis(
    browser: webdriver.Chrome, screenshots: Path, sweep_stack: LocalStack, sweep_corpus: Path, tmp_path: Path
) -> None:
    name = "ui-tour"
    flow_run_id = run_smoke_sweep(sweep_stack, sweep_corpus, tmp_path / "out", name)

    client = MlflowClient(sweep_stack.cfg.mlflow_uri)
    experiment = client.get_experiment_by_name(f"e2e-{name}")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r.info.run_id for r in runs if r.data.tags.get("mixsweep.role") == "sweep"]
    trials = {r.info.run_id: r.info.run_name for r in runs if r.data.tags.get("mixsweep.role") == "trial"}
    assert len(trials) == 2

    prefect_pages(browser, sweep_stack.cfg.prefect_api.removesuffix("/api"), flow_run_id, name, screenshots)
    mlflow_pages(browser, sweep_stack.cfg.mlflow_uri, experiment.experiment_id, parent, trials, screenshots)

    # the parent run's interactive chart: one self-contained HTML file, opened as a user would from disk
    (chart,) = (tmp_path / "out").rglob("parallel_coordinates.html")
    browser.get(chart.as_uri())
    wait_for(browser, "the parallel-coordinates chart", lambda d: d.find_elements(By.CSS_SELECTOR, ".js-plotly-plot"))
    wait_texts(browser, *(f"w.{domain}" for domain in DOMAINS), "is better")
    browser.save_screenshot(screenshots / "sweep-parallel-coordinates.png")
    assert {p.name for p in screenshots.glob("*.png")} >= {
        "prefect-run-form.png",
        "prefect-deployments.png",
        "prefect-flow-run-artifacts.png",
        "prefect-leaderboard-artifact.png",
        "prefect-recommended-artifact.png",
        "mlflow-runs.png",
        "mlflow-compare-runs.png",
        "sweep-parallel-coordinates.png",
    }
