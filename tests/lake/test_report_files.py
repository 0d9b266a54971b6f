"""Reports rendered on the host that ran the job and published to the storage root: a local file on
one machine, an object in the bucket (slow: a real SeaweedFS) that another host reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from devservers.object_store import throwaway_object_store
from lake.files import FileRoot
from lake.report_files import SUMMARY_REPORT, ReportFiles


def test_one_machine_reads_the_rendered_file_itself(tmp_path: Path) -> None:
    reports = ReportFiles(tmp_path / "reports", None)
    reports.render_path(SUMMARY_REPORT).write_text("<html>v1</html>")
    assert reports.publish(SUMMARY_REPORT) == str(tmp_path / "reports" / SUMMARY_REPORT)
    assert reports.read(SUMMARY_REPORT) == b"<html>v1</html>"
    with pytest.raises(FileNotFoundError, match="was not rendered"):
        reports.publish("ab_report.html")


@pytest.mark.slow
def test_a_report_published_on_one_host_is_read_on_another(tmp_path: Path) -> None:
    with throwaway_object_store() as store:
        def host(name: str) -> ReportFiles:
            root = FileRoot(store.uri("team"), store.storage_options, cache_dir=tmp_path / name / "cache")
            return ReportFiles(tmp_path / name / "reports", root)

        trainer, reviewer = host("trainer"), host("reviewer")
        trainer.render_path(SUMMARY_REPORT).write_text("<html>v1</html>")
        assert trainer.publish(SUMMARY_REPORT) == f"{store.uri('team')}/reports/{SUMMARY_REPORT}"
        assert reviewer.read(SUMMARY_REPORT) == b"<html>v1</html>"
        trainer.render_path(SUMMARY_REPORT).write_text("<html>v2</html>")  # the next run replaces it whole
        trainer.publish(SUMMARY_REPORT)
        assert reviewer.read(SUMMARY_REPORT) == b"<html>v2</html>"
        assert not (tmp_path / "reviewer" / "reports").exists()
