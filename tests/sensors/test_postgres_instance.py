"""The Dagster instance on PostgreSQL (``dagster.instance_storage: postgres``), with a real
server and a real daemon: runs, sensor ticks, run keys and cursors live in the database, and a
daemon restarted as another process goes on from them (nothing re-run, nothing missed); the
instance home on disk holds no SQLite storage."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import psycopg2
import pytest
import yaml

from assets.jobs import INGEST_JOB
from cli.environment import instance_settings
from lake.tables import BATCHES
from tests.support.daemon import daemon_runs, home_instance, run_daemon_until
from tests.support.pipeline import Pipeline
from tests.support.postgres import throwaway_postgres

pytestmark = pytest.mark.slow  # a real PostgreSQL server and dagster-daemon

WAIT_SECONDS = 240
URL_ENV = "LAKEHOUSE_DAGSTER_POSTGRES_URL"


def test_instance_settings_name_postgres_by_its_variable_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    pipe = Pipeline(tmp_path, {"dagster": {"instance_storage": "postgres"}})
    monkeypatch.delenv(URL_ENV, raising=False)
    with pytest.raises(RuntimeError, match=f"{URL_ENV} is not set"):
        instance_settings(pipe.cfg)
    monkeypatch.setenv(URL_ENV, "postgresql://u:secret@127.0.0.1:5/db")
    with pytest.raises(RuntimeError, match="must use the psycopg2 driver"):
        instance_settings(pipe.cfg)
    monkeypatch.setenv(URL_ENV, "postgresql+psycopg2://u:secret@127.0.0.1:5/db")
    settings = instance_settings(pipe.cfg)
    assert settings["storage"] == {"postgres": {"postgres_url": {"env": URL_ENV}}}
    assert "secret" not in yaml.safe_dump(settings)
    assert settings["run_queue"]["max_concurrent_runs"] == 4  # the project's file underneath
    assert "storage" not in instance_settings(Pipeline(tmp_path / "sqlite").cfg)


@pytest.mark.timeout(2 * WAIT_SECONDS + 180)
def test_runs_and_cursors_live_in_postgres_across_a_daemon_restart(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with throwaway_postgres() as url:
        monkeypatch.setenv(URL_ENV, url)
        pipe = Pipeline(tmp_path, {"dagster": {"inbox_poll_seconds": 1, "instance_storage": "postgres"},
                                   "ab": {"sensor_poll_seconds": 1}})

        def drop(expected: str):
            def emit() -> None:
                batch = pipe.emulator.emit_next()
                assert batch is not None and batch.batch_id == expected
            return emit

        def ingested(n: int):
            return lambda: sum(r.status == dg.DagsterRunStatus.SUCCESS
                               for r in daemon_runs(pipe).get(INGEST_JOB, [])) >= n

        run_daemon_until(pipe, ingested(1), "batch 1's ingestion", WAIT_SECONDS, before=drop("batch_00001"))
        # the daemon is stopped; a new daemon process picks up from what PostgreSQL holds
        run_daemon_until(pipe, ingested(2), "batch 2's ingestion", WAIT_SECONDS, before=drop("batch_00002"))

        with home_instance(pipe) as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
            assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
            runs = instance.get_runs(dg.RunsFilter(job_name=INGEST_JOB))
            states = {s.instigator_name: s for s in instance.all_instigator_state()}
            inbox_ticks = instance.get_ticks(states["inbox_sensor"].instigator_origin_id,
                                             states["inbox_sensor"].selector_id, limit=1000)
        # one run per batch: the restarted daemon's sensor did not launch batch 1 again
        assert sorted(r.tags["dagster/partition"] for r in runs) == ["batch_00001", "batch_00002"]
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        assert len({r.tags["dagster/run_key"] for r in runs}) == 2
        assert any(t.run_ids for t in inbox_ticks) and len(inbox_ticks) >= 2
        assert states["ab_sensor"].instigator_data.cursor  # a sensor cursor, written and kept in the database

        with psycopg2.connect(url.replace("+psycopg2", "")) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM runs WHERE pipeline_name = %s", (INGEST_JOB,))
            assert cur.fetchone()[0] == 2
            cur.execute("SELECT count(*) FROM jobs WHERE job_type = 'SENSOR'")
            assert cur.fetchone()[0] >= 4  # inbox, event_log, drift, ab
        conn.close()
        assert pipe.lake.read(BATCHES)["status"].tolist() == ["ingested", "ingested"]
        # SQLite storage would sit under the instance home (history/, schedules/, storage/)
        assert not [p for p in pipe.paths.dagster_home.rglob("*") if p.suffix in (".db", ".sqlite")]
