"""A/B experiments in the lake: the `experiments` table is the control plane of the router.

One row per experiment (prod version = variant A, staging version = variant B, the share of users
sent to B, status). Every change is a compare-and-swap rewrite of this small table
(:meth:`Lake.rewrite`), so the training job, the router's admin route and the A/B assets can
change it concurrently without losing an update. The router's workers poll the table's Delta
version and pick up a new split or experiment within a poll interval.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd

from lake.delta import Lake
from lake.tables import AB_DECISIONS, AB_DECISIONS_SCHEMA, EXPERIMENTS, EXPERIMENTS_SCHEMA

log = logging.getLogger(__name__)
RUNNING = "running"
# the decisions of one look of the A/B analysis (assets/ab/stats.py decide) and the guardrails a
# rollback can name: the rows of ab_decisions hold these, the lake exporter gives each a series
PROMOTE, ROLLBACK, CONTINUE = "promote", "rollback", "continue"
DECISION_ACTIONS = (PROMOTE, ROLLBACK, CONTINUE)
GUARDRAILS = ("error_rate", "model_p95_ms", "latency_p95_ms", "fallback_share")


@dataclass(frozen=True)
class Experiment:
    experiment_id: str
    prod_version: int
    staging_version: int
    ab_split_b: float
    status: str

    @classmethod
    def from_row(cls, row: pd.Series) -> Experiment:
        return cls(str(row["experiment_id"]), int(row["prod_version"]), int(row["staging_version"]),
                   float(row["ab_split_b"]), str(row["status"]))


class ExperimentStore:
    """Read and change the `experiments` table of one lake."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake

    def all(self) -> pd.DataFrame:
        return self.lake.read(EXPERIMENTS, missing_ok=True)

    def running(self) -> Experiment | None:
        """The running experiment, if any (at most one runs at a time)."""
        rows = self.all()
        if rows.empty:
            return None
        running = rows[rows["status"] == RUNNING].sort_values("created_at")
        return Experiment.from_row(running.iloc[-1]) if len(running) else None

    def ensure(self, prod: int, staging: int, split_b: float, *, actor: str) -> Experiment:
        """The experiment of prod vs staging: the existing one (running, or already decided), else
        a new running one; a running one of another pair is closed as ``superseded`` in the same
        commit (a newer staging replaced it)."""
        found: dict[str, Experiment] = {}

        def change(rows: pd.DataFrame) -> pd.DataFrame | None:
            now = datetime.now(UTC)
            running = rows[rows["status"] == RUNNING] if len(rows) else rows
            # the pair's experiment, open or decided (a rolled-back staging is not tried again)
            pair = rows[(rows["prod_version"] == prod) & (rows["staging_version"] == staging)
                        & (rows["status"] != "superseded")] if len(rows) else rows
            if len(pair):
                found["experiment"] = Experiment.from_row(pair.sort_values("created_at").iloc[-1])
                return None  # already there: no commit
            rows = rows.copy()
            if len(running):
                rows.loc[running.index, ["status", "updated_at", "actor", "reason"]] = [
                    "superseded", now, actor, f"staging v{staging} replaced it"]
            new = {"experiment_id": f"exp-{now:%Y%m%d%H%M%S}-{uuid.uuid4().hex[:6]}", "prod_version": prod,
                   "staging_version": staging, "ab_split_b": split_b, "status": RUNNING, "created_at": now,
                   "updated_at": now, "actor": actor, "reason": f"prod v{prod} vs staging v{staging}",
                   "decision": None}
            found["experiment"] = Experiment.from_row(pd.Series(new))
            log.info("experiment %s opened: prod v%d vs staging v%d, %.0f%% to B", new["experiment_id"], prod,
                     staging, 100 * split_b)
            return pd.concat([rows, pd.DataFrame([new])], ignore_index=True) if len(rows) else pd.DataFrame([new])

        self.lake.rewrite(EXPERIMENTS, EXPERIMENTS_SCHEMA, change)
        return found["experiment"]

    def set_split(self, split_b: float, *, actor: str, reason: str = "") -> Experiment:
        """Change the running experiment's share of users sent to B (one commit)."""
        if not 0.0 <= split_b <= 1.0:
            raise ValueError(f"ab_split_b must be within [0, 1], got {split_b}")
        found: dict[str, Experiment] = {}

        def change(rows: pd.DataFrame) -> pd.DataFrame:
            running = rows[rows["status"] == RUNNING] if len(rows) else rows
            if running.empty:
                raise LookupError("no running experiment: there is no staging model to split traffic with")
            idx = running.sort_values("created_at").index[-1]
            rows = rows.copy()
            rows.loc[idx, ["ab_split_b", "updated_at", "actor", "reason"]] = [
                split_b, datetime.now(UTC), actor, reason or f"split set to {split_b}"]
            found["experiment"] = Experiment.from_row(rows.loc[idx])
            return rows

        if not self.lake.exists(EXPERIMENTS):
            raise LookupError("no running experiment: there is no staging model to split traffic with")
        self.lake.rewrite(EXPERIMENTS, EXPERIMENTS_SCHEMA, change)
        return found["experiment"]

    def get(self, experiment_id: str) -> Experiment:
        rows = self.all()
        match = rows[rows["experiment_id"] == experiment_id] if len(rows) else rows
        if match.empty:
            raise KeyError(f"no experiment {experiment_id!r}")
        return Experiment.from_row(match.iloc[-1])

    def last_decision(self, experiment_id: str) -> tuple[str | None, str]:
        """(decision, reason) the experiment's last analysis recorded: ``promote``, ``rollback``,
        ``continue``, ... or None before any analysis."""
        rows = self.all()
        match = rows[rows["experiment_id"] == experiment_id] if len(rows) else rows
        if match.empty:
            raise KeyError(f"no experiment {experiment_id!r}")
        row = match.iloc[-1]
        decision = row["decision"]
        return (None if decision is None or pd.isna(decision) else str(decision)), str(row["reason"] or "")

    def update(self, experiment_id: str, *, actor: str, reason: str, status: str | None = None,
               decision: str | None = None, split_b: float | None = None) -> Experiment:
        """Change one experiment's status, decision and / or split in one commit (no commit when
        nothing changes)."""
        found: dict[str, Experiment] = {}

        def change(rows: pd.DataFrame) -> pd.DataFrame | None:
            match = rows.index[rows["experiment_id"] == experiment_id] if len(rows) else []
            if len(match) == 0:
                raise KeyError(f"no experiment {experiment_id!r}")
            idx = match[-1]
            wanted = {k: v for k, v in (("status", status), ("decision", decision), ("ab_split_b", split_b))
                      if v is not None}
            if all(rows.at[idx, k] == v for k, v in wanted.items()):
                found["experiment"] = Experiment.from_row(rows.loc[idx])
                return None
            rows = rows.copy()
            for key, value in {**wanted, "updated_at": datetime.now(UTC), "actor": actor, "reason": reason}.items():
                rows.at[idx, key] = value
            found["experiment"] = Experiment.from_row(rows.loc[idx])
            return rows

        self.lake.rewrite(EXPERIMENTS, EXPERIMENTS_SCHEMA, change)
        return found["experiment"]

    def log_decision(self, experiment: Experiment, *, action: str, reason: str, run_id: str,
                     blocked: bool = False, guardrail: str | None = None,
                     always_valid_p: float | None = None) -> None:
        """Append one look of the analysis to `ab_decisions` (append-only: `experiments` keeps the
        last decision only). A blind append is safe for concurrent writers: appends never conflict."""
        self.lake.append(AB_DECISIONS, pd.DataFrame([{
            "experiment_id": experiment.experiment_id, "prod_version": experiment.prod_version,
            "staging_version": experiment.staging_version, "decided_at": datetime.now(UTC), "action": action,
            "blocked": blocked, "guardrail": guardrail, "always_valid_p": always_valid_p, "reason": reason,
            "run_id": run_id}]), schema=AB_DECISIONS_SCHEMA)

    def decisions(self) -> pd.DataFrame:
        """Every logged look, oldest first (empty before the first analysis)."""
        rows = self.lake.read(AB_DECISIONS, missing_ok=True)
        return rows.sort_values("decided_at", kind="stable") if len(rows) else rows
