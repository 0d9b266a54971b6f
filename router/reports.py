"""The published HTML reports (EDA, summary, A/B) over HTTP: the plain part of ``/reports``.

The Flask views (``router.views``) serve only the three report names (a name is looked up in
:data:`lake.report_files.REPORT_ASSETS`, never joined into a path), read from where the jobs
publish them (the data root's ``reports/`` on one machine, ``<root>/reports`` on a shared root), so
the links in the Dagster metadata open in a browser on any machine. With
``router.reports_token_env`` set, a browser is asked for the token as the password of HTTP Basic
authentication (any user name), and a program may send it as a bearer token; unset, the reports
are open like ``/model_info``.
"""

from __future__ import annotations

import base64
import binascii
import html

from lake.report_files import REPORT_ASSETS, ReportFiles

REALM = "lakehouse reports"


def presented_secret(authorization: str) -> str | None:
    """The secret in an Authorization header: a bearer token, or the password of HTTP Basic."""
    if authorization.startswith("Bearer "):
        return authorization[len("Bearer "):]
    if authorization.startswith("Basic "):
        try:
            decoded = base64.b64decode(authorization[len("Basic "):], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2]
    return None


def index_page(files: ReportFiles) -> str:
    """The reports with links; the ones not published yet say which asset publishes them."""
    items = []
    for name, asset in REPORT_ASSETS.items():
        try:
            files.read(name)
            items.append(f'<li><a href="/reports/{name}">{html.escape(name)}</a> (from <code>{asset}</code>)</li>')
        except FileNotFoundError:
            items.append(f"<li>{html.escape(name)}: not published yet (materialize <code>{asset}</code>)</li>")
    return ('<!doctype html><html><head><meta charset="utf-8"><title>Reports</title></head><body>'
            f"<h1>Reports</h1><ul>{''.join(items)}</ul></body></html>")
