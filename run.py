"""Command line of the lakehouse (the seeds' course interface, extended).

    python run.py -mode update    emit the next stream batch into the inbox, ingest everything pending
                                  through ingest_job (in process), then train a first model or
                                  refresh prod as the policy says; prints True / False
    python run.py -mode stream    emit all remaining batches into the inbox (nothing ingested)
    python run.py -mode ingest    ingest every file waiting in the inbox; prints True / False
    python run.py -mode demo      restart the stream, ingest the first batches, train prod, then stream
                                  the rest with a drift check per batch (drift -> retraining -> staging)
    python run.py -mode dev       start `dagster dev` (webserver + daemon) on 127.0.0.1
    python run.py -mode exporter  serve the lake's Prometheus series (drift, retraining requests,
                                  A/B looks and guardrail breaches, aliases) on exporter.port
    python run.py -mode inference -file PATH
                                  score a CSV/XLSX/Parquet file with the prod model; prints the path
                                  of a CSV with `predict` (and `probability`) and `error` columns
    python run.py -mode summary   HTML report of quality, metrics, hyperparameters, latency over
                                  batches and model versions; prints its path
    python run.py -mode analyse   ingest the router's request log and analyse the running A/B
                                  experiment (ab_analysis_job); prints the decision and the report path
    python run.py -mode promote --reason TEXT     staging -> prod now (promote_job), reason recorded
    python run.py -mode rollback --reason TEXT    stop the experiment: split 0, closed as rolled back
    python run.py -mode simulate [--users N --rate R --duration S --label-delay D --label-share F]
                                  play users from the latest batch against the running router
                                  (loopback), then post their true labels after the delay

``--config PATH`` (or LAKEHOUSE_CONFIG) selects the configuration, ``--data DIR`` (or
LAKEHOUSE_DATA) the data root; both are passed on to Dagster through the environment.
"""

from __future__ import annotations

import sys

from cli.main import main as run_command_line


def main(argv: list[str] | None = None) -> int:
    """The command line above: parse ``argv`` (default: sys.argv), run the mode, return the exit code."""
    return run_command_line(argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
