"""Batches through the inbox of a shared storage root on a real S3-compatible object store: the
emulator drops files into ``<root>/inbox``, inbox_sensor requests them, ingestion archives or
quarantines them on the root, and the data root's own folders stay empty (another machine sees
the same inbox)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from assets.resources import LakehouseResource
from devservers.object_store import ObjectStore, throwaway_object_store
from lake.batch_files import ARCHIVE, INBOX, QUARANTINE
from lake.tables import BATCHES, RAW
from tests.support.pipeline import Pipeline

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store() -> Iterator[ObjectStore]:
    with throwaway_object_store() as started:
        yield started


def _evaluate(pipe: Pipeline, cursor: str | None) -> dg.SensorResult:
    sensor = pipe.defs.resolve_sensor_def("inbox_sensor")
    resource = LakehouseResource(config_path=str(pipe.config_path), data_root=str(pipe.paths.root))
    with dg.build_sensor_context(instance=pipe.instance, cursor=cursor, resources={"lakehouse": resource}) as ctx:
        return sensor(ctx)


def test_batches_flow_through_the_inbox_on_the_object_store(store: ObjectStore, tmp_path: Path) -> None:
    pipe = Pipeline(tmp_path, {"storage": {"root_uri": store.uri("inbox-test"),
                                           "storage_options": store.storage_options}})
    files = pipe.batch_files()
    assert files.location(INBOX) == f"{store.uri('inbox-test')}/inbox"
    first, second = pipe.emulator.emit_next(), pipe.emulator.emit_next()
    assert first.location == f"{store.uri('inbox-test')}/inbox/{first.name}"
    # a malformed delivery by another upstream, straight into the bucket
    files.root.write_bytes(f"{INBOX}/batch_09999.csv", b"ts,city\n")

    tick = _evaluate(pipe, None)
    requested = [r.partition_key for r in tick.run_requests]
    assert requested == [first.batch_id, second.batch_id, "batch_09999"]
    assert json.loads(tick.cursor).keys() == {first.name, second.name, "batch_09999.csv"}

    for batch_id in requested:
        pipe.run(batch_id)
    assert [f.name for f in files.list(INBOX)] == []
    assert [f.name for f in files.list(ARCHIVE)] == [first.name, second.name]
    assert [f.name for f in files.list(QUARANTINE)] == ["batch_09999.csv"]
    assert files.reason("batch_09999.csv")["code"] in {"missing_columns", "empty"}
    status = pipe.lake.read(BATCHES).set_index("batch_id")["status"].to_dict()
    assert status == {first.batch_id: "ingested", second.batch_id: "ingested", "batch_09999": "quarantined"}
    assert pipe.count(RAW) == first.rows + second.rows

    # the empty inbox empties the cursor; the data root's own folders were never used
    assert _evaluate(pipe, tick.cursor).cursor == "{}"
    for folder in (pipe.paths.inbox, pipe.paths.archive, pipe.paths.quarantine):
        assert not list(folder.iterdir()), folder
    assert not list((pipe.paths.root / "cache" / "root" / INBOX).glob("*"))  # ingested copies dropped
