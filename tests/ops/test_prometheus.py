"""The operator's Prometheus and Alertmanager files (ops/): valid for promtool and amtool, each alert
firing on the series that should raise it (promtool's rule unit tests), and real servers: Prometheus
scraping a running router and the lake exporter, evaluating every rule without error, and sending
an A/B guardrail breach written to the lake through Alertmanager's example route to a webhook.
Loopback only; every loop bounded; every server stopped."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import requests
import yaml

from lake.experiments import ExperimentStore
from lake.paths import PROJECT_ROOT
from tests.router.test_router import ROW
from tests.support.polling import until
from tests.support.router_server import RouterServer, config_with_router, free_port

OPS = PROJECT_ROOT / "ops" / "prometheus"
ALERTMANAGER = PROJECT_ROOT / "ops" / "alertmanager"
DASHBOARD = PROJECT_ROOT / "ops" / "grafana" / "lakehouse.json"
RULES = 11


def _promtool(*args: str) -> subprocess.CompletedProcess:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: `make test` installs the Debian prometheus package (scripts/system-packages.sh)"
    return subprocess.run([promtool, *args], cwd=OPS, capture_output=True, text=True, timeout=120, check=False)


def test_rules_and_scrape_configuration_are_valid() -> None:
    rules = _promtool("check", "rules", "alerts.yml")
    assert rules.returncode == 0 and f"SUCCESS: {RULES} rules found" in rules.stdout, rules.stdout + rules.stderr
    config = _promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr
    names = {r.get("alert") for g in yaml.safe_load((OPS / "alerts.yml").read_text())["groups"] for r in g["rules"]}
    assert names - {None} == {"RouterErrorRate", "RouterLatencyP99Regression", "RouterFallbackShare",
                              "RouterEventLogWriteFailures", "RouterEventLogShippingStuck", "RouterModelDisabled",
                              "LakehouseDriftRetrainingRequested", "LakehouseABGuardrailBreach",
                              "LakehouseLakeUnreadable"}
    amtool = shutil.which("amtool")
    assert amtool, "amtool missing: `make test` installs prometheus-alertmanager (scripts/system-packages.sh)"
    routes = subprocess.run([amtool, "check-config", str(ALERTMANAGER / "alertmanager.yml")], capture_output=True,
                            text=True, timeout=60, check=False)
    assert routes.returncode == 0 and "SUCCESS" in routes.stdout, routes.stdout + routes.stderr


def test_each_alert_fires_on_its_series_and_not_on_healthy_ones() -> None:
    result = _promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


class _Webhook(BaseHTTPRequestHandler):
    """Alertmanager's webhook receiver (what a chat bridge would be): keeps every posted body."""

    received: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:  # the test's output stays quiet
        return


def _start(binary: str, args: list[str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen([binary, *args], stdout=out, stderr=out)


@pytest.mark.slow
def test_real_prometheus_and_alertmanager_scrape_evaluate_and_route_a_breach(two_model_template,
                                                                             tmp_path: Path) -> None:
    prometheus_bin, alertmanager_bin = shutil.which("prometheus"), shutil.which("prometheus-alertmanager")
    assert prometheus_bin and alertmanager_bin, \
        "prometheus / prometheus-alertmanager missing: `make test` installs them (scripts/system-packages.sh)"
    pipe = two_model_template.copy_to(tmp_path / "lake")
    port, exporter_port, prom_port, am_port = free_port(), free_port(), free_port(), free_port()
    config = config_with_router(pipe.config_path, port=port, workers=2, threads=4)
    settings = yaml.safe_load(config.read_text())
    settings["exporter"] = {"host": "127.0.0.1", "port": exporter_port}
    config.write_text(yaml.safe_dump(settings, sort_keys=False))
    router = RouterServer(config, pipe.paths.root, port, tmp_path / "gunicorn.log")

    # the shipped files, pointed at this test's ports; only the timings shrink to seconds
    scrape = yaml.safe_load((OPS / "prometheus.yml").read_text())
    scrape["global"].update(scrape_interval="1s", evaluation_interval="1s")
    targets = {"lakehouse-router": port, "lakehouse-lake": exporter_port}
    for job in scrape["scrape_configs"]:
        job["static_configs"] = [{"targets": [f"127.0.0.1:{targets[job['job_name']]}"]}]
    scrape["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{am_port}"]}]
    scrape["rule_files"] = [str(OPS / "alerts.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(scrape))
    webhook = ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    _Webhook.received = []
    route = yaml.safe_load((ALERTMANAGER / "alertmanager.yml").read_text())
    route["route"].update(group_wait="1s", group_interval="1s")
    for sub in route["route"]["routes"]:
        sub["group_wait"] = "1s"
    route["receivers"][0]["webhook_configs"][0]["url"] = f"http://127.0.0.1:{webhook.server_port}/alerts"
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(route))
    api = f"http://127.0.0.1:{prom_port}/api/v1"

    threading.Thread(target=webhook.serve_forever, daemon=True).start()
    router.start()
    with (tmp_path / "exporter.log").open("wb") as out:
        exporter = subprocess.Popen([sys.executable, "run.py", "-mode", "exporter", "--config", str(config),
                                     "--data", str(pipe.paths.root)], cwd=PROJECT_ROOT, stdout=out, stderr=out)
    # --cluster.listen-address= : no gossip port (a single Alertmanager; loopback only)
    alertmanager = _start(alertmanager_bin, [f"--config.file={tmp_path / 'alertmanager.yml'}",
                                             f"--storage.path={tmp_path / 'am'}", "--cluster.listen-address=",
                                             f"--web.listen-address=127.0.0.1:{am_port}"], tmp_path / "am.log")
    prometheus = _start(prometheus_bin, [f"--config.file={tmp_path / 'prometheus.yml'}",
                                         f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                         f"--web.listen-address=127.0.0.1:{prom_port}"], tmp_path / "prometheus.log")
    try:
        with requests.Session() as session:
            for i in range(40):
                answer = session.post(f"{router.url}/predict", json={"user_id": f"u{i}", "features": ROW}, timeout=30)
                assert answer.status_code == 200, answer.text

            def targets_up():
                try:
                    active = session.get(f"{api}/targets", timeout=5).json()["data"]["activeTargets"]
                except requests.RequestException:
                    return None
                up = {t["labels"]["job"] for t in active if t["health"] == "up"}
                return up if up == set(targets) else None

            until("the router and the exporter scraped", targets_up)

            def query(expr: str) -> list[dict]:
                return session.get(f"{api}/query", params={"query": expr}, timeout=5).json()["data"]["result"]

            def requests_seen():
                result = query("sum(router_requests_total)")
                return result if result and float(result[0]["value"][1]) >= 40 else None

            assert float(until("router_requests_total in Prometheus", requests_seen)[0]["value"][1]) >= 40
            # the lake's figures as the exporter reads them: the instance's aliases, its running experiment
            aliases = {r["metric"]["alias"]: float(r["value"][1]) for r in query("lakehouse_model_alias_version")}
            assert aliases == {"prod": 1.0, "staging": 3.0, "fallback": 4.0}
            assert [float(r["value"][1]) for r in query("lakehouse_lake_up")] == [1.0]

            def rules_evaluated():
                groups = session.get(f"{api}/rules", timeout=5).json()["data"]["groups"]
                rules = [r for g in groups for r in g["rules"]]
                return rules if len(rules) == RULES and all(r.get("lastEvaluation", "").startswith("20")
                                                            for r in rules) else None

            rules = until("every rule evaluated", rules_evaluated)
            assert {r["health"] for r in rules} == {"ok"}, [(r["name"], r.get("lastError")) for r in rules]
            # every query of the Grafana dashboard runs on these series (its variables set to the jobs)
            dashboard = json.loads(DASHBOARD.read_text())
            exprs = {p["title"]: [t["expr"].replace("$router_job", "lakehouse-router").replace("$lake_job",
                                                                                                "lakehouse-lake")
                                  for t in p["targets"]] for p in dashboard["panels"] if p["type"] != "row"}
            with_data = ("Requests / s by variant", "Latency p50 / p99 by variant", "Served version per alias",
                         "Aliases", "Running experiment: share of users on B", "A/B guardrail breaches")

            def dashboard_answers():  # rate() needs two scrapes in its window: wait for them
                answers = {title: [session.get(f"{api}/query", params={"query": e}, timeout=5).json()
                                   for e in queries] for title, queries in exprs.items()}
                assert {a["status"] for group in answers.values() for a in group} == {"success"}, answers
                return answers if all(a["data"]["result"] for t in with_data for a in answers[t]) else None

            until("every dashboard query answered, the key panels with data", dashboard_answers)
            # a healthy system raises nothing
            assert session.get(f"{api}/alerts", timeout=5).json()["data"]["alerts"] == []

            # the A/B analysis rolls B back for its fallback share: one look appended to the lake
            until("the breach counter at 0 in Prometheus",
                   lambda: query('lakehouse_ab_guardrail_breaches_total{guardrail="fallback_share"} == 0'))
            store = ExperimentStore(pipe.lake)
            store.log_decision(store.running(), action="rollback", reason="guardrail: B's fallback share 9.0% "
                               "exceeds A's 1.0% + 5%", run_id="test", guardrail="fallback_share")

            def delivered():
                return [a for body in _Webhook.received for a in body["alerts"]
                        if a["labels"]["alertname"] == "LakehouseABGuardrailBreach" and a["status"] == "firing"]

            [alert] = until("the breach delivered to the webhook", delivered)
            assert alert["labels"] == {"alertname": "LakehouseABGuardrailBreach", "job": "lakehouse-lake",
                                       "guardrail": "fallback_share", "severity": "page"}
            assert alert["annotations"]["summary"].startswith("lakehouse-lake: A/B guardrail fallback_share")
            assert _Webhook.received[0]["receiver"] == "lakehouse-webhook"
            firing = {a["labels"]["alertname"] for a in delivered()}
            assert firing == {"LakehouseABGuardrailBreach"}  # nothing else went out
    finally:
        for process in (prometheus, alertmanager, exporter):
            process.terminate()
            process.wait(timeout=30)
        router.stop()
        webhook.shutdown()
        webhook.server_close()
