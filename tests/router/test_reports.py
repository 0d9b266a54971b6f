"""``/reports``: the published reports over HTTP, open or behind the reports token."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from config import load_config
from lake.paths import data_paths
from router.app import create_app
from router.reports import presented_secret
from tests.conftest import write_config

REPORT = "<!doctype html><html><body><h1>Summary</h1><p>v3 accuracy 0.8123</p></body></html>"


def _app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, token: str | None = None, override: dict | None = None):
    cfg = load_config(write_config(tmp_path / "cfg", override))
    if token is None:
        monkeypatch.delenv(cfg.router.reports_token_env, raising=False)
    else:
        monkeypatch.setenv(cfg.router.reports_token_env, token)
    root = tmp_path / "data"
    reports = data_paths(str(root)).ensure().reports
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "summary.html").write_text(REPORT)
    (reports / "secrets.txt").write_text("not a report")
    return create_app(cfg, str(root), poll=False)


def test_a_published_report_is_served_and_a_missing_one_names_its_asset(tmp_path, monkeypatch) -> None:
    client = _app(tmp_path, monkeypatch).test_client()
    r = client.get("/reports/summary.html")
    assert r.status_code == 200 and r.mimetype == "text/html" and r.get_data(as_text=True) == REPORT
    assert r.headers["Cache-Control"] == "no-cache"
    missing = client.get("/reports/ab_report.html")
    assert missing.status_code == 404
    assert missing.get_json()["errors"] == [{"field": "name", "problem": "materialize ab_analysis to publish it"}]
    for name in ("secrets.txt", "..%2Fpipeline.yaml", "%2e%2e"):  # only the three names, never a path
        r = client.get(f"/reports/{name}")
        assert r.status_code == 404 and "not a report" not in r.get_data(as_text=True), name
    index = client.get("/reports").get_data(as_text=True)
    assert '<a href="/reports/summary.html">' in index
    assert "eda_report.html: not published yet (materialize <code>eda_report</code>)" in index


def test_with_a_token_a_browser_is_asked_for_it(tmp_path, monkeypatch) -> None:
    client = _app(tmp_path, monkeypatch, token="s3cret").test_client()
    r = client.get("/reports/summary.html")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith('Basic realm="lakehouse reports"')
    basic = base64.b64encode(b"reviewer:s3cret").decode()
    assert client.get("/reports/summary.html", headers={"Authorization": f"Basic {basic}"}).status_code == 200
    assert client.get("/reports", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    wrong = base64.b64encode(b"reviewer:guess").decode()
    r = client.get("/reports/summary.html", headers={"Authorization": f"Basic {wrong}"})
    assert r.status_code == 403 and REPORT not in r.get_data(as_text=True)


def test_presented_secret() -> None:
    assert presented_secret("Bearer abc") == "abc"
    assert presented_secret("Basic " + base64.b64encode(b"u:p:q").decode()) == "p:q"  # a password may hold ':'
    assert presented_secret("Basic !!!") is None and presented_secret("") is None


def test_the_links_point_at_the_router(tmp_path) -> None:
    from assets.metadata import report_links

    cfg = load_config(write_config(tmp_path / "cfg", {"router": {"host": "0.0.0.0", "port": 8123}}))
    assert cfg.router.base_url() == "http://127.0.0.1:8123"
    links = report_links("s3://bucket/lake-root/reports/summary.html", cfg.router.base_url())
    assert links["report_url"].value == "http://127.0.0.1:8123/reports/summary.html"
    assert links["report"].value == "s3://bucket/lake-root/reports/summary.html"
    behind = load_config(write_config(tmp_path / "cfg2", {"router": {"public_url": "https://ml.example.org/ab/"}}))
    assert report_links("/data/reports/eda_report.html", behind.router.base_url())["report_url"].value == \
        "https://ml.example.org/ab/reports/eda_report.html"


def test_a_browser_asking_for_an_icon_gets_no_content(tmp_path, monkeypatch) -> None:
    r = _app(tmp_path, monkeypatch).test_client().get("/favicon.ico")
    assert r.status_code == 204 and r.get_data() == b""
