"""The story in a real browser: `dagster dev` and the router (gunicorn) on free loopback ports over
a lakehouse that trained prod and staging, served the staging model to half the users, analysed
the experiment and promoted staging (in process, as a person's runs, in the instance dagster dev
shows); then a new batch dropped into the inbox, which inbox_sensor ingests through the daemon.

Dagster's GraphQL API is asked for the lineage (one chain from raw to prod_model), the
sensor-launched run with its run key, the sensors' ticks and the report links in the metadata;
headless Chromium (Debian's chromium and chromium-driver, driven by selenium) loads ``/docs``,
submits ``/ui`` and opens the three reports through the links the metadata holds, each without a
console error. Screenshots go to ``$LAKEHOUSE_SCREENSHOTS`` (else the test's temporary folder).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from assets.jobs import AB_ANALYSIS_JOB, PROMOTE_JOB, RETRAIN_JOB, promote_run_config
from lake.batch_files import ARCHIVE
from lake.paths import PROJECT_ROOT
from router.server import RouterProcess, free_port
from tests.assets.ab.test_ab_loop import AB, TRAINING, concept_shift_source, play_latest_batch
from tests.conftest import write_config
from tests.support.daemon import home_instance, install_instance_config, stop_process_group
from tests.support.pipeline import Pipeline
from tests.support.polling import until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
LINEAGE = ["raw", "quality", "cleaned", "features", "candidate_models", "staging_model", "request_log", "ab_events",
           "ab_analysis", "prod_model", "drift"]


@contextlib.contextmanager
def dagster_dev(pipe: Pipeline, port: int) -> Iterator[tuple[str, Callable[[], str]]]:
    """``dagster dev`` (webserver and daemon) on ``pipe``'s instance home; stopped with its process group."""
    env = {**os.environ, "DAGSTER_HOME": str(pipe.paths.dagster_home), "LAKEHOUSE_CONFIG": str(pipe.config_path),
           "LAKEHOUSE_DATA": str(pipe.paths.root), "PYCARET_CUSTOM_LOGGING_PATH": str(pipe.paths.logs / "pc.log")}
    log_path = pipe.paths.root / "dagster-dev.log"
    dagster = Path(sys.executable).with_name("dagster")
    with log_path.open("a") as log:
        proc = subprocess.Popen([str(dagster), "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"), "-h", "127.0.0.1",
                                 "-p", str(port)], cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def tail() -> str:
        return log_path.read_text()[-4000:]
    try:
        yield f"http://127.0.0.1:{port}", tail
    finally:
        stop_process_group(proc)  # the webserver, the daemon and the runs it launched


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    response = requests.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30)
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


@contextlib.contextmanager
def chromium() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1100",
                "--no-first-run", "--disable-extensions", "--disable-background-networking"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver) -> list[str]:
    """The page's console errors since the last call (selenium drains the log on each read)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def _metadata_url(url: str, asset: str) -> str:
    data = graphql(url, "query($key: AssetKeyInput!) { assetNodes(assetKeys: [$key]) { assetMaterializations(limit: 1)"
                        " { metadataEntries { label ... on UrlMetadataEntry { url } } } } }",
                   {"key": {"path": [asset]}})
    [node] = data["assetNodes"]
    [mat] = node["assetMaterializations"]
    return next(e["url"] for e in mat["metadataEntries"] if e["label"] == "report_url")


def test_the_story_in_a_browser(tmp_path: Path) -> None:
    # never skipped: `make test` installs both (scripts/system-packages.sh)
    assert CHROMIUM and CHROMEDRIVER, "chromium / chromedriver missing: `make test` installs the Debian " \
        "packages chromium and chromium-driver (scripts/system-packages.sh)"
    shots = Path(os.environ.get("LAKEHOUSE_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    router_port, ui_port = free_port(), free_port()
    cfg_path = write_config(tmp_path / "cfg", {"training": TRAINING, "ab": AB,
                                               "router": {"shadow_share": 1.0, "port": router_port},
                                               "dagster": {"inbox_poll_seconds": 2}}, concept_shift_source())
    pipe = Pipeline(tmp_path, config_path=cfg_path)
    install_instance_config(pipe)
    with home_instance(pipe) as instance:  # the runs a person started, in the instance dagster dev shows
        pipe.instance = instance
        retrain = pipe.defs.resolve_job_def(RETRAIN_JOB)
        for _ in range(3):
            assert pipe.emit_and_run().success
        assert retrain.execute_in_process(instance=instance).success  # prod
        for _ in range(2):
            assert pipe.emit_and_run().success
        assert retrain.execute_in_process(instance=instance).success  # staging
        play_latest_batch(pipe)  # every row of the last batch through the router in process, labelled
        assert pipe.defs.resolve_job_def(AB_ANALYSIS_JOB).execute_in_process(instance=instance).success
        assert pipe.defs.resolve_job_def(PROMOTE_JOB).execute_in_process(
            instance=instance, run_config=promote_run_config("auto")).success

    router = RouterProcess(cfg_path, pipe.paths.root, router_port, tmp_path / "router.log").start()
    try:
        with dagster_dev(pipe, ui_port) as (ui, dev_log):
            until("dagster dev's webserver", lambda: _up(ui), 180, interval=1, log=dev_log)
            _check_lineage(ui)
            # a sixth batch in the inbox (the toy source has five: batch 5's rows again, as an upstream
            # re-sending them under a new name would): inbox_sensor's turn
            files = pipe.batch_files()
            last = files.list(ARCHIVE)[-1]
            files.put(files.local_copy(last), f"batch_00006{Path(last.name).suffix}")
            run = until("an ingest run launched by inbox_sensor", lambda: _sensor_run(ui, "inbox_sensor"), 300,
                        interval=1, log=dev_log)
            assert run["jobName"] == "ingest_job" and run["tags"]["dagster/run_key"].startswith("batch_00006")
            _check_ticks(ui)
            with chromium() as driver:
                _browse(driver, ui, router.url, shots)
    finally:
        router.stop()


def _up(ui: str) -> bool:
    try:
        return requests.get(f"{ui}/server_info", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def _check_lineage(ui: str) -> None:
    nodes = graphql(ui, "{ assetNodes { assetKey { path } dependencyKeys { path } } }")["assetNodes"]
    parents = {"/".join(n["assetKey"]["path"]): {"/".join(d["path"]) for d in n["dependencyKeys"]} for n in nodes}
    for parent, child in itertools.pairwise(LINEAGE):
        assert parent in parents[child], (parent, child, parents[child])


def _sensor_run(ui: str, sensor: str) -> dict | None:
    data = graphql(ui, "query($tags: [ExecutionTag!]) { runsOrError(filter: {tags: $tags}) { ... on Runs { results "
                       "{ runId jobName status tags { key value } } } } }",
                   {"tags": [{"key": "dagster/sensor_name", "value": sensor}]})
    done = [r for r in data["runsOrError"]["results"] if r["status"] == "SUCCESS"]
    return {**done[0], "tags": {t["key"]: t["value"] for t in done[0]["tags"]}} if done else None


def _check_ticks(ui: str) -> None:
    states = graphql(ui, "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } "
                         "sensors { name sensorState { ticks(limit: 20) { status skipReason runKeys } } } } } } }")
    [repo] = states["repositoriesOrError"]["nodes"]
    ticks = {s["name"]: s["sensorState"]["ticks"] for s in repo["sensors"]}
    assert set(ticks) == {"inbox_sensor", "drift_sensor", "event_log_sensor", "ab_sensor"}
    assert any(t["status"] == "SUCCESS" and any(k.startswith("batch_00006") for k in t["runKeys"])
               for t in ticks["inbox_sensor"])
    # a skipped tick says why (the experiment is closed: nothing for ab_sensor to analyse)
    skipped = [t["skipReason"] for t in ticks["ab_sensor"] if t["status"] == "SKIPPED"]
    assert skipped and all(skipped), ticks["ab_sensor"]


def _browse(driver, ui: str, router: str, shots: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 60)
    driver.get(f"{router}/docs")
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".opblock")))
    paths = {e.text for e in driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert {"/predict", "/ui", "/reports/{name}"} <= paths, paths
    driver.save_screenshot(str(shots / "router-docs.png"))
    assert console_errors(driver) == []

    driver.get(f"{router}/ui")
    form = wait.until(ec.presence_of_element_located((By.ID, "questionnaire")))
    for select in form.find_elements(By.TAG_NAME, "select"):  # a known category for each choice
        driver.execute_script("arguments[0].selectedIndex = 1", select)
    for number in form.find_elements(By.CSS_SELECTOR, 'input[type="number"]'):
        number.send_keys("3")
    form.find_element(By.ID, "user-id").send_keys("browser-user")
    form.find_element(By.CSS_SELECTOR, 'button[type="submit"]').click()
    answer = wait.until(ec.visibility_of_element_located((By.ID, "answer")))
    wait.until(lambda d: "Answered by variant" in answer.text)
    assert "Prediction:" in answer.text and "Confidence:" in answer.text, answer.text
    driver.save_screenshot(str(shots / "router-ui-answered.png"))
    assert console_errors(driver) == []

    # the reports, through the links the Dagster metadata holds (the router serves them)
    expected = {"eda_report": "EDA", "summary_report": "All versions on one evaluation set", "ab_analysis": "PROMOTE"}
    for asset, figure in expected.items():
        link = _metadata_url(ui, asset)
        assert link.startswith(f"{router}/reports/"), link
        driver.get(link)
        wait.until(ec.presence_of_element_located((By.TAG_NAME, "body")))
        assert figure in driver.find_element(By.TAG_NAME, "body").text, (asset, figure)
        driver.save_screenshot(str(shots / f"report-{asset}.png"))
        assert console_errors(driver) == [], asset

    for page, name in ((f"{ui}/asset-groups", "dagster-lineage.png"), (f"{ui}/runs", "dagster-runs.png"),
                       (f"{ui}/overview/automation", "dagster-sensors.png")):
        driver.get(page)
        time.sleep(6)  # the UI renders after its GraphQL answers
        for skip in driver.find_elements(By.XPATH, "//button[normalize-space()='Skip']"):  # the newsletter modal
            driver.execute_script("arguments[0].click()", skip)
        time.sleep(1)
        driver.save_screenshot(str(shots / name))
