"""``inbox_sensor``: every new file in the inbox becomes a dynamic partition and an ``ingest_job`` run.

The cursor (stored by the Dagster instance, so it survives daemon restarts) maps each inbox file
already requested to its size and modification time. A file is requested once; a file replaced
by a new version (other size or mtime) is requested again, which re-ingests that batch in place.
Files leave the inbox when ingested (archive) or rejected (quarantine), and leave the cursor then.
"""


import json
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from assets.ingest.batch import batch_id_of, is_batch_file, valid_batch_id
from assets.ingest.reader import BatchRejected, quarantine_file
from assets.jobs import INGEST_JOB
from assets.partitions import batches_partitions
from assets.resources import LakehouseResource
from assets.run_health import fail_dead_runs


@dataclass(frozen=True)
class InboxFile:
    path: Path
    batch_id: str
    signature: str  # size:mtime_ns, changes when the file is replaced


def scan_inbox(inbox: Path) -> list[InboxFile]:
    """Batch files in the inbox, oldest batch id first."""
    if not inbox.exists():
        return []
    files = []
    for path in sorted(inbox.iterdir()):
        if is_batch_file(path):
            st = path.stat()
            files.append(InboxFile(path, batch_id_of(path), f"{st.st_size}:{st.st_mtime_ns}"))
    return files


def plan_inbox(files: list[InboxFile], cursor: dict[str, str], limit: int) -> tuple[list[InboxFile], dict[str, str]]:
    """Which files to request now, and the next cursor.

    The next cursor keeps the files still in the inbox that were requested (now or before),
    so it stays as small as the inbox; at most ``limit`` new files are requested per tick.
    """
    new = [f for f in files if cursor.get(f.path.name) != f.signature][:limit]
    present = {f.path.name for f in files}
    nxt = {name: sig for name, sig in cursor.items() if name in present}
    nxt.update({f.path.name: f.signature for f in new})
    return new, nxt


def quarantine_invalid_names(files: list[InboxFile], quarantine: Path) -> list[InboxFile]:
    """Quarantine files whose name cannot be a batch id / partition key; return the others."""
    for f in files:
        if not valid_batch_id(f.batch_id):
            quarantine_file(f.path, quarantine, f.batch_id, BatchRejected(
                "invalid_name", f"file name {f.path.name!r} does not give a valid batch id "
                                "(letters, digits, '_', '.', '-' before the first dot)"))
    return [f for f in files if valid_batch_id(f.batch_id)]


def build_inbox_sensor(poll_seconds: int, max_runs_per_tick: int) -> dg.SensorDefinition:
    @dg.sensor(name="inbox_sensor", job_name=INGEST_JOB, minimum_interval_seconds=poll_seconds,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="New batch file in data/inbox -> dynamic partition + ingest_job run "
                           "(once per file version).")
    def inbox_sensor(context: dg.SensorEvaluationContext, lakehouse: LakehouseResource) -> dg.SensorResult:
        paths = lakehouse.paths()
        # a run of a killed command-line process would hold the one-ingest-at-a-time queue for good
        for run_id in fail_dead_runs(context.instance):
            context.log.warning("run %s: its process is gone (killed mid-run); marked failed", run_id)
        cursor = json.loads(context.cursor) if context.cursor else {}
        files = quarantine_invalid_names(scan_inbox(paths.inbox), paths.quarantine)
        new, nxt = plan_inbox(files, cursor, max_runs_per_tick)
        if new:
            context.log.info("inbox: requesting %s", [f.path.name for f in new])
        return dg.SensorResult(
            run_requests=[dg.RunRequest(run_key=f"{f.batch_id}:{f.signature}", partition_key=f.batch_id,
                                        tags={"lakehouse/source_file": f.path.name})
                          for f in new],
            dynamic_partitions_requests=[batches_partitions.build_add_request(sorted({f.batch_id for f in new}))]
            if new else [],
            cursor=json.dumps(nxt, sort_keys=True),
        )

    return inbox_sensor
