"""The Prefect and MLflow UIs as users see them after a sweep, driven by headless Chromium.

One small sweep runs through the `sweep/smoke` deployment on the real local stack; then a browser
checks that the Prefect UI lists the `sweep` deployments and shows the finished run's artifacts, and
that the MLflow UI lists the sweep's child runs with their `w.<domain>` params and opens the compare
view of two of them, its parallel-coordinates plot set to the weights against the objective. A second
sweep is started from the browser itself: the `sweep/smoke` run form edited (rounds, trials per round,
objective metric) and submitted with its *Submit* button; MLflow and the leaderboard artifact must
show the sweep the form asked for. Every page is saved as a screenshot: into `$MIXSWEEP_SCREENSHOTS`
when set (the README's pictures come from `MIXSWEEP_SCREENSHOTS=docs/screenshots`), else into the
test's tmp dir.

Both UIs are React single-page apps: every check waits on a DOM condition, never on a fixed sleep.
Selenium is pointed at Debian's chromium and chromedriver, so Selenium Manager never downloads one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def api(prefect: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """One call to the Prefect server's REST API (a POST when `body` is given)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{prefect}/api/{path}", data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def open_run_form(driver: webdriver.Chrome, prefect: str) -> dict[str, Any]:
    """Open the custom-run form of `sweep/smoke`; returns the deployment."""
    deployment: dict[str, Any] = api(prefect, "deployments/name/sweep/smoke")
    smoke = yaml.safe_load((REPO / "deploy" / "specs" / "smoke.yaml").read_text())
    assert deployment["parameters"]["spec"] == smoke  # the form opens with the spec file's values
    driver.get(f"{prefect}/v2/deployments/deployment/{deployment['id']}/run")
    wait_texts(driver, "Rounds", "Per Round", "Trials (candidate mixtures) per round.")
    return deployment


def run_form_page(driver: webdriver.Chrome, prefect: str, shots: Path) -> None:
    """The custom-run form of `sweep/smoke`: the spec's sections as fields with their help, filled in
    from `deploy/specs/smoke.yaml`, with the registries' names as choices."""
    open_run_form(driver, prefect)
    driver.save_screenshot(shots / "prefect-run-form.png")


def form_block(driver: webdriver.Chrome, *labels: str) -> WebElement:
    """A field of the run form by its labels, outermost section first (`"SearchSpec", "Rounds"`).
    Prefect renders each parameter field as a block holding its label, its help and a `<fieldset>` with
    the input (a nested model's fields inside); a label's `(Optional)` suffix is ignored."""
    xpath = ""
    for label in labels:
        xpath += "/fieldset" if xpath else ""
        xpath += f"//label[normalize-space()='{label}' or normalize-space()='{label} (Optional)']"
        xpath += "/ancestor::div[fieldset][1]"
    block = wait_for(
        driver,
        f"exactly one form field {' > '.join(labels)}",
        lambda d: len(f := d.find_elements(By.XPATH, xpath)) == 1 and f[0],
    )
    assert isinstance(block, WebElement)
    return block


def form_input(driver: webdriver.Chrome, *labels: str) -> WebElement:
    """The input of a run-form field (see `form_block`): the element its label is for."""
    label = form_block(driver, *labels).find_element(By.XPATH, "./div//label")
    return driver.find_element(By.ID, label.get_attribute("for") or "")


def type_into(driver: webdriver.Chrome, element: WebElement, value: str) -> None:
    """Replace a text or number input's value as a user does (select all, type), then check it took."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()
    element.send_keys(Keys.CONTROL, "a")
    element.send_keys(Keys.BACKSPACE)
    element.send_keys(value)
    wait_for(driver, f"{value!r} typed in", lambda d: element.get_attribute("value") == value)


@dataclass(frozen=True)
class FormEdits:
    """What a user changes in the `sweep/smoke` run form: where the sweep reads and writes, the rounds,
    the trials per round and the objective. Small, so the sweep it starts takes about a minute."""

    run_name: str
    name: str
    corpus: Path
    output_dir: Path
    rounds: int = 1
    per_round: int = 3
    metric: str = "val.loss.mean"  # smoke.yaml ranks by val.bpb.mean

    @property
    def experiment(self) -> str:
        return f"e2e-{self.name}"

    def text_fields(self) -> dict[tuple[str, ...], str]:
        """Form field (its labels, outermost first) -> the value typed into it."""
        return {
            ("Name",): self.name,
            ("Corpus",): str(self.corpus),
            ("SearchSpec", "Rounds"): str(self.rounds),
            ("SearchSpec", "Per Round"): str(self.per_round),
            ("ObjectiveSpec", "Metric"): self.metric,
            ("MlflowSpec", "Experiment"): self.experiment,
        }


def submit_run_form(driver: webdriver.Chrome, prefect: str, edits: FormEdits, shots: Path) -> str:
    """Edit the `sweep/smoke` run form as a user does and press *Submit*; returns the new flow run's id.
    The confirmation stage is switched off (it would train 4 more proxies)."""
    deployment = open_run_form(driver, prefect)
    type_into(driver, clickable(driver, By.CSS_SELECTOR, "input[name='name']"), edits.run_name)  # Run Name
    for labels, value in edits.text_fields().items():
        type_into(driver, form_input(driver, *labels), value)
    # a `Path | None` field opens on its `None` tab: choose `path`, then type
    block = form_block(driver, "Output Dir")
    block.find_element(By.XPATH, "./fieldset//button[@role='tab' and normalize-space()='path']").click()
    path_input = wait_for(
        driver,
        "the output dir's path input",
        lambda d: block.find_elements(By.CSS_SELECTOR, "fieldset textarea, fieldset input"),
    )
    assert isinstance(path_input, list)
    type_into(driver, path_input[0], str(edits.output_dir))
    switch = form_input(driver, "ConfirmSpec", "Enabled")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", switch)
    switch.click()
    wait_for(driver, "the confirmation switched off", lambda d: switch.get_attribute("aria-checked") == "false")
    for labels, value in edits.text_fields().items():  # nothing re-rendered the form under the typing
        shown = form_input(driver, *labels).get_attribute("value")
        assert shown == value, f"run form field {' > '.join(labels)} shows {shown!r} before Submit, not {value!r}"

    driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", form_block(driver, "SearchSpec"))
    driver.save_screenshot(shots / "prefect-run-form-edited.png")
    submit = clickable(driver, By.XPATH, "//button[@type='submit' and normalize-space()='Submit']")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", submit)
    wanted = {"flow_runs": {"name": {"any_": [edits.run_name]}}, "deployments": {"id": {"any_": [deployment["id"]]}}}

    def submitted(d: webdriver.Chrome) -> bool:  # Prefect creates the flow run, then shows the deployment's page
        return not d.current_url.rstrip("/").endswith("/run") or bool(api(prefect, "flow_runs/filter", wanted))

    submit.click()
    try:
        wait_for(driver, "the deployment page after Submit", submitted)
    except AssertionError:
        # Once in CI the page stayed on the form with no flow run made: the click had landed as the form
        # re-rendered. A user presses Submit again; a form that refuses twice still fails here, and one
        # run too many fails the count below.
        driver.save_screenshot(shots / "prefect-run-form-after-submit.png")
        clickable(driver, By.XPATH, "//button[@type='submit' and normalize-space()='Submit']").click()
        wait_for(driver, "the deployment page after a second Submit", submitted)
    runs = api(prefect, "flow_runs/filter", wanted)
    assert len(runs) == 1, f"flow runs named {edits.run_name!r} of sweep/smoke after Submit: {len(runs)}"
    return str(runs[0]["id"])


def wait_flow_run(prefect: str, flow_run_id: str, timeout_s: float = 900) -> dict[str, Any]:
    """Poll the Prefect API until the flow run reaches a final state; returns the flow run."""
    deadline = time.monotonic() + timeout_s
    while True:
        run: dict[str, Any] = api(prefect, f"flow_runs/{flow_run_id}")
        if run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return run
        assert time.monotonic() < deadline, f"flow run {flow_run_id} still {run['state_type']} after {timeout_s}s"
        time.sleep(2)


def leaderboard_table(driver: webdriver.Chrome, prefect: str, slug: str, n_rows: int) -> list[dict[str, str]]:
    """The sweep's final leaderboard artifact (its latest version) as the Prefect UI shows it: one dict
    per table row, keyed by the column headers. The key's page is opened by address (a click on the
    artifact list can land while the list re-renders)."""
    driver.get(f"{prefect}/v2/artifacts/key/{slug}-leaderboard")
    clickable(driver, By.CSS_SELECTOR, "a[href*='/artifacts/artifact/']").click()
    wait_for(
        driver,
        f"the leaderboard table of {slug} with {n_rows} rows",
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "table tbody tr")) == n_rows,
    )
    header = [th.text.strip() for th in driver.find_elements(By.CSS_SELECTOR, "table thead th")]
    return [
        dict(zip(header, (td.text.strip() for td in row.find_elements(By.CSS_SELECTOR, "td")), strict=True))
        for row in driver.find_elements(By.CSS_SELECTOR, "table tbody tr")
    ]


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

    # the final leaderboard: a table artifact with one row per trial and a column per domain
    rows = leaderboard_table(driver, prefect, slug, 2)
    assert {"rank", "objective", *DOMAINS} <= set(rows[0]), rows[0]
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
    driver: webdriver.Chrome,
    mlflow: str,
    experiment_id: str,
    parent: str,
    trials: dict[str, str],
    axes: dict[str, list[float]],
    shots: Path,
) -> None:
    """The runs table with the weights and the objective as columns, then the compare view of `trials`
    (run id -> name) with its parallel-coordinates plot of the weights against the objective; `axes`:
    each plotted param or metric -> its values in those runs."""
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
    for close in driver.find_elements(By.CSS_SELECTOR, "button[aria-label=Close]"):  # the assistant's side panel
        close.click()
    # the plot opens on a few params and the last metric: plot the weights against the objective instead
    clickable(driver, By.XPATH, "//button[normalize-space()='Clear All']").click()
    choose_in_select(driver, "Parameters:", [f"w.{domain}" for domain in DOMAINS])
    choose_in_select(driver, "Metrics:", ["objective"])
    driver.execute_script("document.activeElement.blur()")  # no focus ring in the screenshot
    wanted = [*(f"w.{domain}" for domain in DOMAINS), "objective"]
    shown = wait_for(driver, f"plot axes {wanted}", lambda d: (a := plot_axes(d)) and list(a) == wanted and a)
    assert isinstance(shown, dict)
    for axis, values in axes.items():  # each axis spans the selected runs' values
        if min(values) < max(values):
            assert shown[axis] == pytest.approx((min(values), max(values)), abs=1e-5), (axis, shown[axis], values)
    driver.save_screenshot(shots / "mlflow-compare-runs.png")


def choose_in_select(driver: webdriver.Chrome, label: str, names: list[str]) -> None:
    """In the compare view's multi-select after the text `label`, search and pick each of `names`."""
    select_xpath = f"//div[normalize-space()='{label}']/following-sibling::div[contains(@class, '-select')][1]"
    clickable(driver, By.XPATH, f"{select_xpath}//div[contains(@class, '-select-selector')]").click()
    box = driver.find_element(By.XPATH, f"{select_xpath}//input")
    option_css = "[class*='-select-dropdown']:not([class*='-dropdown-hidden']) [class*='-select-item-option']"
    for name in names:
        box.send_keys(name)
        option = wait_for(
            driver,
            f"option {name} under {label}",
            lambda d, n=name: next((o for o in d.find_elements(By.CSS_SELECTOR, option_css) if o.text == n), False),
        )
        assert isinstance(option, WebElement)
        option.click()
    box.send_keys(Keys.ESCAPE)
    chosen_css = "[class*='-select-selection-item-content']"
    wait_for(
        driver,
        f"{names} chosen under {label}",
        lambda d: (
            [c.text for c in d.find_elements(By.XPATH, select_xpath)[0].find_elements(By.CSS_SELECTOR, chosen_css)]
            == names
        ),
    )


def plot_axes(driver: webdriver.Chrome) -> dict[str, tuple[float, float]]:
    """The parallel-coordinates plot's axes, left to right: title -> (bottom, top) of its range."""
    axes = driver.execute_script(
        """return Array.from(document.querySelectorAll('.js-plotly-plot g.y-axis')).map(axis => [
            axis.querySelector('.axis-title').textContent,
            axis.querySelector('.axis-extent-bottom-text').textContent,
            axis.querySelector('.axis-extent-top-text').textContent]);"""
    )
    return {title: (float(bottom), float(top)) for title, bottom, top in axes}


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
    trial_runs = [r for r in runs if r.data.tags.get("mixsweep.role") == "trial"]
    trials = {r.info.run_id: r.info.run_name for r in trial_runs}
    assert len(trials) == 2
    axes = {f"w.{domain}": [float(r.data.params[f"w.{domain}"]) for r in trial_runs] for domain in DOMAINS}
    axes["objective"] = [r.data.metrics["objective"] for r in trial_runs]

    prefect_pages(browser, sweep_stack.cfg.prefect_api.removesuffix("/api"), flow_run_id, name, screenshots)
    mlflow_pages(browser, sweep_stack.cfg.mlflow_uri, experiment.experiment_id, parent, trials, axes, screenshots)

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


def test_a_sweep_submitted_from_the_run_form(
    browser: webdriver.Chrome, screenshots: Path, sweep_stack: LocalStack, sweep_corpus: Path, tmp_path: Path
) -> None:
    """A user changes the rounds, the trials per round and the objective in the `sweep/smoke` run form
    and presses *Submit*: the sweep that runs is the one in the form, in Prefect and in MLflow."""
    prefect = sweep_stack.cfg.prefect_api.removesuffix("/api")
    edits = FormEdits(run_name="ui-form-run", name="ui-form", corpus=sweep_corpus, output_dir=tmp_path / "out")
    flow_run_id = submit_run_form(browser, prefect, edits, screenshots)
    run = wait_flow_run(prefect, flow_run_id)
    assert run["state_type"] == "COMPLETED", (
        f"the flow run submitted from the form ended {run['state_name']}: {(run.get('state') or {}).get('message')}"
    )
    spec = run["parameters"]["spec"]
    sent = (spec["name"], spec["search"]["rounds"], spec["search"]["per_round"], spec["objective"]["metric"])
    assert sent == (edits.name, edits.rounds, edits.per_round, edits.metric), f"the form sent {sent}"
    assert spec["confirm"]["enabled"] is False and spec["output_dir"] == str(edits.output_dir), spec

    client = MlflowClient(sweep_stack.cfg.mlflow_uri)
    experiment = client.get_experiment_by_name(edits.experiment)
    assert experiment is not None, f"the form's MLflow experiment {edits.experiment!r} does not exist"
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("mixsweep.role") == "sweep"]
    assert len(parents) == 1, f"{len(parents)} sweep runs in {edits.experiment}"
    logged = {
        "rounds": parents[0].data.params.get("spec.search.rounds"),
        "per_round": parents[0].data.params.get("spec.search.per_round"),
        "metric": parents[0].data.params.get("spec.objective.metric"),
        "confirm": parents[0].data.params.get("spec.confirm.enabled"),
    }
    expected = {
        "rounds": str(edits.rounds),
        "per_round": str(edits.per_round),
        "metric": edits.metric,
        "confirm": "False",
    }
    assert logged == expected, f"the sweep's MLflow run logged {logged}, the form said {expected}"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(children) == edits.rounds * edits.per_round, (
        f"{len(children)} child runs, the form asked for {edits.rounds} x {edits.per_round} trials"
    )
    assert all(r.data.tags.get("mixsweep.role") == "trial" for r in children), [r.data.tags for r in children]
    for child in children:  # ranked by the form's metric, not smoke.yaml's val.bpb.mean
        metrics = child.data.metrics
        assert metrics["objective"] == pytest.approx(metrics[edits.metric]), (child.info.run_name, metrics)
        assert metrics["objective"] != pytest.approx(metrics["val.bpb.mean"]), (child.info.run_name, metrics)

    rows = leaderboard_table(browser, prefect, edits.name, edits.rounds * edits.per_round)
    assert {row["round"] for row in rows} == {str(r) for r in range(edits.rounds)}, rows
    shown = [float(row["objective"]) for row in rows]
    assert shown == sorted(shown), f"the leaderboard is not ranked by the objective (lower is better): {shown}"
    assert shown == pytest.approx(sorted(r.data.metrics[edits.metric] for r in children), abs=1e-4), (
        f"the leaderboard's objective column {shown} is not the trials' {edits.metric}"
    )
    assert (screenshots / "prefect-run-form-edited.png").exists()
