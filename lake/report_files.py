"""The HTML reports (EDA, summary, A/B) on the storage root.

A report is rendered into the data root's ``reports/`` folder of the host that ran the job (the
renderers write files, and a person on that host can open it), then published whole to
``<root>/reports/<name>`` when there is a shared root, so a reviewer on any machine reads the
newest one from the same place. Its location (a path on one machine, the object's URI on a shared
root) is what the Dagster metadata and the command line show.
"""

from __future__ import annotations

import logging
from pathlib import Path

from lake.files import FileRoot

log = logging.getLogger(__name__)

REPORTS = "reports"
# the reports' file names, one per report asset (eda_report, summary_report, ab_analysis)
EDA_REPORT, SUMMARY_REPORT, AB_REPORT = "eda_report.html", "summary.html", "ab_report.html"
# the asset that publishes each report (what to materialize when one is missing)
REPORT_ASSETS = {EDA_REPORT: "eda_report", SUMMARY_REPORT: "summary_report", AB_REPORT: "ab_analysis"}


class ReportFiles:
    """Reports rendered under ``local_dir`` and published to ``root`` (None: one machine)."""

    def __init__(self, local_dir: Path, root: FileRoot | None) -> None:
        self.local_dir = local_dir
        self.root = root

    def render_path(self, name: str) -> Path:
        """Where to render report ``name`` on this host."""
        self.local_dir.mkdir(parents=True, exist_ok=True)
        return self.local_dir / name

    def location(self, name: str) -> str:
        """Where readers find report ``name``: the shared root's object, else the local file."""
        if self.root is None:
            return str(self.local_dir / name)
        return f"{self.root.uri}/{REPORTS}/{name}"

    def publish(self, name: str) -> str:
        """Put the rendered report on the shared root (whole or not at all); returns its location."""
        rendered = self.local_dir / name
        if not rendered.is_file():
            raise FileNotFoundError(f"report {name} was not rendered into {self.local_dir}")
        if self.root is not None:
            self.root.put_file(rendered, f"{REPORTS}/{name}")
            log.info("published report %s to %s", name, self.location(name))
        return self.location(name)

    def read(self, name: str) -> bytes:
        """The published report's bytes (FileNotFoundError when there is none)."""
        if self.root is None:
            return (self.local_dir / name).read_bytes()
        return self.root.read_bytes(f"{REPORTS}/{name}")
