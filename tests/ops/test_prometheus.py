"""The operator's Prometheus files (ops/prometheus/): valid for promtool, each alert firing on the
series that should raise it (promtool's rule unit tests), and a real Prometheus server scraping a
running router and evaluating every rule without error. Loopback only; every loop bounded."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from lake.paths import PROJECT_ROOT
from tests.router.test_router import ROW
from tests.support.router_server import RouterServer, config_with_router, free_port

OPS = PROJECT_ROOT / "ops" / "prometheus"


def _promtool(*args: str) -> subprocess.CompletedProcess:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: `make test` installs the Debian prometheus package (scripts/system-packages.sh)"
    return subprocess.run([promtool, *args], cwd=OPS, capture_output=True, text=True, timeout=120, check=False)


def test_rules_and_scrape_configuration_are_valid() -> None:
    rules = _promtool("check", "rules", "alerts.yml")
    assert rules.returncode == 0 and "SUCCESS: 8 rules found" in rules.stdout, rules.stdout + rules.stderr
    config = _promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr
    names = {r.get("alert") for g in yaml.safe_load((OPS / "alerts.yml").read_text())["groups"] for r in g["rules"]}
    assert names - {None} == {"RouterErrorRate", "RouterLatencyP99Regression", "RouterFallbackShare",
                              "RouterEventLogWriteFailures", "RouterEventLogShippingStuck", "RouterModelDisabled"}


def test_each_alert_fires_on_its_series_and_not_on_healthy_ones() -> None:
    result = _promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def _until(what: str, probe, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"{what}: not after {timeout:.0f}s")


@pytest.mark.slow
def test_a_real_prometheus_scrapes_the_router_and_evaluates_every_rule(two_model_template, tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    assert binary, "prometheus missing: `make test` installs it (scripts/system-packages.sh)"
    pipe = two_model_template.copy_to(tmp_path / "lake")
    port = free_port()
    router = RouterServer(config_with_router(pipe.config_path, port=port, workers=2, threads=4), pipe.paths.root,
                          port, tmp_path / "gunicorn.log")
    scrape = yaml.safe_load((OPS / "prometheus.yml").read_text())
    scrape["global"].update(scrape_interval="1s", evaluation_interval="1s")
    scrape["scrape_configs"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
    scrape["rule_files"] = [str(OPS / "alerts.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(scrape))
    prom_port = free_port()
    api = f"http://127.0.0.1:{prom_port}/api/v1"
    router.start()
    with (tmp_path / "prometheus.log").open("wb") as log:
        prometheus = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                                       f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                       f"--web.listen-address=127.0.0.1:{prom_port}"], stdout=log, stderr=log)
    try:
        with requests.Session() as session:
            for i in range(40):
                answer = session.post(f"{router.url}/predict", json={"user_id": f"u{i}", "features": ROW}, timeout=30)
                assert answer.status_code == 200, answer.text

            def target_up():
                try:
                    targets = session.get(f"{api}/targets", timeout=5).json()["data"]["activeTargets"]
                except requests.RequestException:
                    return None
                return [t for t in targets if t["health"] == "up"] or None

            up = _until("the router scraped", target_up)
            assert up[0]["labels"]["job"] == "lakehouse-router"

            def requests_seen():
                result = session.get(f"{api}/query", params={"query": "sum(router_requests_total)"},
                                     timeout=5).json()["data"]["result"]
                return result if result and float(result[0]["value"][1]) >= 40 else None

            assert float(_until("router_requests_total in Prometheus", requests_seen)[0]["value"][1]) >= 40

            def rules_evaluated():
                groups = session.get(f"{api}/rules", timeout=5).json()["data"]["groups"]
                rules = [r for g in groups for r in g["rules"]]
                return rules if len(rules) == 8 and all(r.get("lastEvaluation", "").startswith("20")
                                                        for r in rules) else None

            rules = _until("every rule evaluated", rules_evaluated)
            assert {r["health"] for r in rules} == {"ok"}, [(r["name"], r.get("lastError")) for r in rules]
            # a healthy router raises nothing
            assert session.get(f"{api}/alerts", timeout=5).json()["data"]["alerts"] == []
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)
        router.stop()
