"""Parsing ``run.py``'s arguments and dispatching to its mode."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from cli import modes
from cli.environment import prepare_environment
from config import ConfigError, load_config
from lake.paths import DataPaths


def _demo(paths: DataPaths, args: argparse.Namespace) -> int:
    from cli.demo import run_demo  # the demo's narrative loads only for the demo

    return run_demo(paths, args.batches, args.initial_batches)


# every mode in the order `-h` lists them; each gets the prepared data root and the arguments
MODES: dict[str, Callable[[DataPaths, argparse.Namespace], int]] = {
    "update": lambda paths, args: modes.update(paths),
    "stream": lambda paths, args: modes.stream(paths),
    "ingest": lambda paths, args: modes.ingest(paths),
    "demo": _demo,
    "dev": lambda paths, args: modes.dev(paths),
    "exporter": lambda paths, args: modes.exporter(paths),
    "inference": lambda paths, args: modes.inference(paths, args.file),
    "summary": lambda paths, args: modes.summary(paths),
    "analyse": lambda paths, args: modes.analyse_experiment(paths),
    "promote": lambda paths, args: modes.decide(paths, "promote", args.reason),
    "rollback": lambda paths, args: modes.decide(paths, "rollback", args.reason),
    "simulate": modes.simulate,
}


def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    """The arguments of every mode; ``description`` is the usage text ``-h`` shows (run.py's docstring)."""
    parser = argparse.ArgumentParser(prog="run.py", description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-mode", "--mode", required=True, choices=list(MODES))
    parser.add_argument("-file", "--file", help="inference: the CSV / XLSX / Parquet file to score")
    parser.add_argument("-reason", "--reason", default="", help="promote / rollback: why (recorded)")
    parser.add_argument("--users", type=int, default=1000, help="simulate: users to play (one request each)")
    parser.add_argument("--rate", type=float, default=0.0, help="simulate: requests per second (0: as fast "
                        "as the router answers)")
    parser.add_argument("--duration", type=float, default=300.0, help="simulate: stop after this many seconds")
    parser.add_argument("--label-delay", type=float, default=0.0, help="simulate: seconds before the labels")
    parser.add_argument("--label-share", type=float, default=1.0, help="simulate: share of requests labelled")
    parser.add_argument("--batch-size", type=int, default=1, help="simulate: rows per /predict_batch call "
                        "(1: one /predict per user)")
    parser.add_argument("--url", default="", help="simulate: router URL (default: router.host:port)")
    parser.add_argument("-config", "--config",
                        help="configuration file (default: LAKEHOUSE_CONFIG or config/pipeline.yaml)")
    parser.add_argument("-data", "--data", help="data root (default: LAKEHOUSE_DATA or ./data)")
    parser.add_argument("-batches", "--batches", type=int, help="demo: only the first N batches")
    parser.add_argument("-initial-batches", "--initial-batches", type=int, default=None,
                        help="demo: batches ingested before the first model is trained (default: the first "
                        "half of the stream, at least two)")
    return parser


def main(argv: list[str] | None = None, description: str | None = None) -> int:
    """Parse ``argv``, export the environment, check the configuration, run the mode; the exit code."""
    args = build_parser(description).parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # Dagster's SQLite migrations
    try:
        paths = prepare_environment(args.config, args.data)
        load_config()  # fail at once on a bad configuration, before any work
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        print("False")
        return 1
    return MODES[args.mode](paths, args)
