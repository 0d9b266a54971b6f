"""``inbox_sensor``: every new file in the inbox becomes a dynamic partition and an ``ingest_job`` run.

The cursor (stored by the Dagster instance, so it survives daemon restarts) maps each inbox file
already requested to its size and modification time. A file is requested once; a file replaced
by a new version (other size or mtime) is requested again, which re-ingests that batch in place.
Files leave the inbox when their batch is complete (archive) or rejected (quarantine), and leave
the cursor then. A file still in the inbox whose run failed (its process was killed, a step
failed) is an incomplete batch: it is requested again, up to :data:`MAX_INGEST_ATTEMPTS` runs of
that file version, each replacing what the last one wrote.
"""


import json

import dagster as dg

from assets.ingest.batch import valid_batch_id
from assets.ingest.reader import BatchRejected, quarantine_file
from assets.jobs import INGEST_JOB
from assets.partitions import batches_partitions
from assets.resources import LakehouseResource
from assets.run_health import fail_dead_runs, ingest_run_tags
from lake.batch_files import INBOX, BatchFile, BatchFiles


def scan_inbox(files: BatchFiles) -> list[BatchFile]:
    """Batch files in the inbox (one listing of the storage root), oldest batch id first."""
    return files.list(INBOX)


def plan_inbox(files: list[BatchFile], cursor: dict[str, str], limit: int) -> tuple[list[BatchFile], dict[str, str]]:
    """Which files to request now, and the next cursor.

    The next cursor keeps the files still in the inbox that were requested (now or before),
    so it stays as small as the inbox; at most ``limit`` new files are requested per tick.
    """
    new = [f for f in files if cursor.get(f.name) != f.signature][:limit]
    present = {f.name for f in files}
    nxt = {name: sig for name, sig in cursor.items() if name in present}
    nxt.update({f.name: f.signature for f in new})
    return new, nxt


def quarantine_invalid_names(root: BatchFiles, files: list[BatchFile]) -> list[BatchFile]:
    """Quarantine files whose name cannot be a batch id / partition key; return the others."""
    for f in files:
        if not valid_batch_id(f.batch_id):
            quarantine_file(root, f, BatchRejected(
                "invalid_name", f"file name {f.name!r} does not give a valid batch id "
                                "(letters, digits, '_', '.', '-' before the first dot)"))
    return [f for f in files if valid_batch_id(f.batch_id)]


# A batch whose run failed and whose file is still in the inbox (its process crashed, or a step
# failed) is requested again, at most this many runs of the same file version in all: a crash is
# rare, so a third failure in a row is a bug or a broken dependency a person must look at (the
# batch stays `ingesting` in the batches table and its runs' failures say why).
MAX_INGEST_ATTEMPTS = 3


def retry_attempt(instance: dg.DagsterInstance, f: BatchFile) -> int | None:
    """The attempt number to request for a file already requested, or None: it still runs (or
    waits in the queue), its last run did not fail, or it failed :data:`MAX_INGEST_ATTEMPTS` times.
    Only runs of this file version count (the run key holds its signature)."""
    records = instance.get_run_records(filters=dg.RunsFilter(
        job_name=INGEST_JOB, tags={"dagster/partition": f.batch_id, "lakehouse/source_file": f.name}))
    runs = [r.dagster_run for r in records
            if (r.dagster_run.tags.get("dagster/run_key") or "").startswith(f"{f.batch_id}:{f.signature}")]
    if not runs or any(not run.is_finished for run in runs):
        return None
    if runs[0].status != dg.DagsterRunStatus.FAILURE or len(runs) >= MAX_INGEST_ATTEMPTS:
        return None  # newest first: the last one succeeded, or the attempts are spent
    return len(runs) + 1


def build_inbox_sensor(poll_seconds: int, max_runs_per_tick: int) -> dg.SensorDefinition:
    @dg.sensor(name="inbox_sensor", job_name=INGEST_JOB, minimum_interval_seconds=poll_seconds,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="New batch file in the inbox (<storage root>/inbox, or data/inbox on one "
                           "machine) -> dynamic partition + ingest_job run (once per file version).")
    def inbox_sensor(context: dg.SensorEvaluationContext, lakehouse: LakehouseResource) -> dg.SensorResult:
        root = lakehouse.batch_files()
        # a run of a killed command-line process would hold the one-ingest-at-a-time queue for good
        for run_id in fail_dead_runs(context.instance):
            context.log.warning("run %s: its process is gone (killed mid-run); marked failed", run_id)
        cursor = json.loads(context.cursor) if context.cursor else {}
        files = quarantine_invalid_names(root, scan_inbox(root))
        new, nxt = plan_inbox(files, cursor, max_runs_per_tick)
        requests = [(f, f"{f.batch_id}:{f.signature}") for f in new]
        # a file requested before and still in the inbox whose run failed: its batch is incomplete
        fresh = {f.name for f in new}
        for f in files:
            if len(requests) >= max_runs_per_tick:
                break
            if f.name in fresh or cursor.get(f.name) != f.signature:
                continue
            attempt = retry_attempt(context.instance, f)
            if attempt is not None:
                context.log.warning("inbox: %s is still in the inbox after a failed run: attempt %d of %d",
                                    f.name, attempt, MAX_INGEST_ATTEMPTS)
                requests.append((f, f"{f.batch_id}:{f.signature}:attempt{attempt}"))
        if requests:
            context.log.info("inbox: requesting %s", [key for _, key in requests])
        ingest = lakehouse.cfg().ingest
        return dg.SensorResult(
            run_requests=[dg.RunRequest(run_key=key, partition_key=f.batch_id, tags=ingest_run_tags(
                context.instance, f.name, f.size, ingest.runtime_margin, ingest.max_runtime_seconds))
                          for f, key in requests],
            dynamic_partitions_requests=[batches_partitions.build_add_request(sorted({f.batch_id for f in new}))]
            if new else [],
            cursor=json.dumps(nxt, sort_keys=True),
        )

    return inbox_sensor
