"""The one validated configuration model, loaded from ``config/*.yaml``.

Every component (stream emulator, Dagster assets and sensors, command line, later the router)
reads its settings from a :class:`PipelineConfig`. Unknown keys are rejected so that a typo
fails at load time instead of silently falling back to a default.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

TIME_FEATURES = ("hour", "day_of_week", "day_of_month", "month", "day_of_year", "is_weekend")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceFile(_Strict):
    """A tabular file: CSV, XLSX or Parquet, given by path or as data shipped in a package."""

    path: str = Field(description="File path; relative paths resolve against the config file's "
                      "folder, or against the package root when `package` is set.")
    package: str | None = Field(
        default=None, description="Python package that ships the file as package data.")
    format: Literal["csv", "xlsx", "parquet"] | None = Field(
        default=None, description="File format; inferred from the extension when absent.")
    sheet: str | int | None = Field(default=None, description="XLSX sheet name or index.")
    read_options: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Extra keyword arguments for the pandas reader.")


class JoinSpec(_Strict):
    """A lookup source joined onto the main source before streaming."""

    source: SourceFile
    keys: list[str] = Field(min_length=1, description="Key columns present in both tables "
                            "(not `on`: YAML 1.1 reads a bare `on` as true).")
    how: Literal["left", "inner"] = "left"
    columns: list[str] | None = Field(
        default=None, description="Columns of the lookup to keep (keys are added); all if absent.")
    prefix: str = Field(default="", description="Prefix for the lookup's non-key columns.")


class DatasetConfig(_Strict):
    """What the data is: where it comes from, which column is time and which is the target."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    source: SourceFile
    joins: list[JoinSpec] = Field(default_factory=list)
    derived_columns: dict[str, str] = Field(
        default_factory=dict,
        description="name -> pandas `DataFrame.eval` expression, evaluated after the joins.")
    time_column: str
    target: str
    task: Literal["classification", "regression"]
    id_column: str | None = None
    numeric: list[str] | None = Field(default=None, description="Explicit numeric features.")
    categorical: list[str] | None = Field(default=None, description="Explicit categorical features.")
    text: list[str] | None = Field(default=None, description="Explicit free-text features.")
    ignore: list[str] = Field(default_factory=list, description="Columns never used as features.")

    @model_validator(mode="after")
    def _roles_disjoint(self) -> DatasetConfig:
        special = [c for c in (self.time_column, self.target, self.id_column) if c]
        if len(set(special)) != len(special):
            raise ValueError("time_column, target and id_column must be different columns")
        seen: dict[str, str] = {}
        for role in ("numeric", "categorical", "text", "ignore"):
            for col in getattr(self, role) or []:
                if col in special:
                    raise ValueError(f"column {col!r} is listed in {role} but is the time, target or id column")
                if col in seen:
                    raise ValueError(f"column {col!r} is listed in both {seen[col]} and {role}")
                seen[col] = role
        return self


class StreamConfig(_Strict):
    """How the emulator cuts the source into batches."""

    batch_by: Literal["rows", "time"] = "time"
    batch_rows: int = Field(default=5000, gt=0, description="Rows per batch when batch_by=rows.")
    batch_window: str = Field(
        default="1MS", description="pandas offset alias when batch_by=time, e.g. 7D, 1MS.")
    file_format: Literal["csv", "parquet"] = "csv"
    max_batches: int | None = Field(default=None, gt=0, description="Stop after this many batches.")

    @field_validator("batch_window")
    @classmethod
    def _valid_offset(cls, value: str) -> str:
        from pandas.tseries.frequencies import to_offset

        try:
            to_offset(value)
        except ValueError as exc:
            raise ValueError(f"not a pandas offset alias ({exc})") from exc
        return value


class IngestConfig(_Strict):
    """Acceptance rules for a batch file; a batch that breaks them is quarantined."""

    encoding: str = "utf-8"
    max_type_error_share: float = Field(
        default=0.05, ge=0, le=1,
        description="Share of non-empty values of a typed column that may fail to parse before "
        "the batch counts as having the wrong type (below it they become missing).")
    extra_columns: Literal["drop", "reject"] = Field(
        default="drop", description="Columns not in the schema contract: dropped (and listed in "
        "the batch record) or the batch is rejected.")
    # Bounds checked before pandas parses a batch (assets/ingest/limits.py, docs/architecture.md
    # "Bounded reading"). Each default comes from a resource the reader spends, not from one dataset.
    max_file_bytes: int = Field(
        default=512 * 2**20, gt=0, description="Largest file, in bytes the parser reads (the file; for "
        "XLSX and compressed CSV the decompressed bytes), else `too_large`. The batch is held as text "
        "cells: 10x the CSV's bytes in memory (measured on the monthly flights batch, 5.2 MB -> 53 MB), "
        "so 512 MiB is ~5 GiB of frame before typing, what one ingest run may take on an 8-16 GiB worker; "
        "files of a few hundred MB pass.")
    max_line_bytes: int = Field(
        default=4 * 2**20, gt=0, description="Longest CSV record in bytes (a logical record: line breaks "
        "inside quotes belong to it), else `line_too_long`. Room for one cell at `max_cell_chars` in "
        "4-byte UTF-8 characters; it lets the scan stop a file without line breaks after 4 MiB instead "
        "of handing pandas one endless line.")
    max_cell_chars: int = Field(
        default=2**20, gt=0, description="Longest text cell in characters, else `cell_too_long`. Equals "
        "the router's default `max_body_bytes` (1 MiB): a longer value could never be sent to /predict, "
        "so a model must not learn from it; 1 Mi characters are ~150,000 words, beyond any free-text field.")
    max_rows: int = Field(
        default=10_000_000, gt=0, description="Most data rows, else `too_many_rows`. A CSV at "
        "`max_file_bytes` with ten short cells per row (54 bytes) has 10 M rows; Parquet is compressed, "
        "so its bytes bound nothing, and 10 M rows x 10 text cells at the measured 60 bytes per cell are "
        "~6 GB, the same memory as the largest CSV.")
    max_columns: int = Field(
        default=16_384, gt=0, description="Most columns (fields of the header and of every CSV record), "
        "else `too_many_columns`. pandas' CSV parser costs per field, superlinearly in the header "
        "(measured: 16,384 columns 0.65 s, 65,536 6.1 s); 16,384 is also Excel's sheet width, the widest "
        "a spreadsheet export can be.")
    max_runtime_seconds: float | None = Field(
        default=None, gt=0, description="Timeout of one ingest run (Dagster's `dagster/max_runtime`, enforced "
        "by the daemon's run monitoring: a run past it is failed and the queue moves on). By default derived "
        "per run: `runtime_margin` x the slowest of the last 20 successful ingestions, scaled up to this "
        "file's size; none until one ingestion succeeded (assets/run_health.py).")
    runtime_margin: float = Field(
        default=10.0, gt=1, description="How many times the slowest successful ingestion (scaled to the "
        "file's size) a run may take: the same run varies within ~3x on a loaded machine, so an order of "
        "magnitude beyond it is a run that stopped making progress.")


class RangeSpec(_Strict):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> RangeSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


QUALITY_CHECKS = ("missing_within_limits", "duplicates_within_limit", "values_in_range",
                  "unseen_categories_within_limit", "quality_score_above_min")


class QualityConfig(_Strict):
    """Thresholds of the data-quality checks on every batch."""

    max_missing_share: float = Field(default=0.5, ge=0, le=1)
    max_missing_share_by_column: dict[str, float] = Field(default_factory=dict)
    max_duplicate_share: float = Field(
        default=0.01, ge=0, le=1, description="Limit of the share of rows repeating the duplicate key "
        "(`cleaning.duplicate_keys`, by default the id column); not checked when there is no key.")
    ranges: dict[str, RangeSpec] = Field(default_factory=dict)
    max_out_of_range_share: float = Field(default=0.01, ge=0, le=1)
    max_unseen_category_share: float = Field(default=0.05, ge=0, le=1)
    max_tracked_categories: int = Field(default=1000, gt=0)
    min_score: float = Field(default=0.8, ge=0, le=1)
    blocking_checks: list[str] = Field(default_factory=lambda: ["quality_score_above_min"])

    @field_validator("blocking_checks")
    @classmethod
    def _known_checks(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(QUALITY_CHECKS))
        if unknown:
            raise ValueError(f"unknown check(s) {unknown}; expected names from {list(QUALITY_CHECKS)}")
        return value


class CleaningConfig(_Strict):
    """Rules that turn a raw batch into the cleaned batch, applied in this order."""

    drop_missing_time: bool = True
    drop_missing_target: bool = True
    drop_duplicates: bool = Field(
        default=True, description="Drop rows repeating the duplicate key (`duplicate_keys`) of a later row "
        "of the same batch, keeping the last (the file is in time order: the latest version of a record). "
        "Without a key nothing is dropped: identical rows of data without an id can be real, separate "
        "events (two equal bookings), so the count of identical rows is reported instead.")
    duplicate_keys: list[str] | Literal["all_columns"] | None = Field(
        default=None, description="Columns that identify a record, for duplicate removal and the "
        "`duplicates_within_limit` check; absent: `dataset.id_column` when set, else no key (no removal, "
        "check not applicable). `all_columns` opts into exact-row duplicates (only for data whose rows "
        "cannot legitimately repeat).")
    max_row_missing_share: float = Field(default=0.5, ge=0, le=1)
    out_of_range: Literal["clip", "drop", "null", "keep"] = "clip"
    normalize_categories: bool = Field(
        default=True, description="Trim whitespace and turn empty strings into missing values.")

    @field_validator("duplicate_keys")
    @classmethod
    def _keys_given(cls, value: list[str] | str | None) -> list[str] | str | None:
        if isinstance(value, list) and not value:
            raise ValueError("an empty key list identifies nothing: name the key columns, `all_columns`, or "
                             "leave it out (the id column, or no duplicate removal)")
        return value


class FeaturesConfig(_Strict):
    time_features: list[str] = Field(default_factory=lambda: ["hour", "day_of_week", "month"])
    timezone: str = Field(default="UTC", description="IANA zone in which time features are read, "
                          "e.g. America/New_York for local hour of day.")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("time_features")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(TIME_FEATURES))
        if unknown:
            raise ValueError(f"unknown time feature(s) {unknown}; expected names from {list(TIME_FEATURES)}")
        return value


CLASSIFICATION_METRICS = ("Accuracy", "AUC", "F1", "LogLoss")
REGRESSION_METRICS = ("MAE", "RMSE", "R2")
LOWER_IS_BETTER = {"LogLoss", "MAE", "RMSE"}


class PreprocessingVariant(_Strict):
    """One preprocessing set-up of PyCaret's pipeline; every variant is searched and compared."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    numeric_imputation: Literal["mean", "median", "mode", "knn"] = "median"
    categorical_imputation: Literal["mode"] | str = "mode"
    normalize: bool = False
    normalize_method: Literal["zscore", "minmax", "maxabs", "robust"] = "zscore"
    rare_to_value: float | None = Field(default=None, gt=0, lt=1,
                                        description="Group categories rarer than this share into one.")
    max_encoding_ohe: int = Field(default=25, ge=0, description="One-hot up to this many categories, "
                                  "target-style encoding above.")


class GateConfig(_Strict):
    """A candidate is registered only if it passes both rules on the same hold-out rows."""

    min_score: float | None = Field(default=None, description="Absolute floor of the sort metric on the "
                                    "hold-out (a ceiling for metrics where lower is better). By default "
                                    "the floor is the naive baseline on the same hold-out (the training "
                                    "majority class / class shares, or the training median): a model "
                                    "must beat ignoring the features, on any scale of the target.")
    tolerance: float = Field(default=0.01, ge=0, description="How much worse than prod's metric the "
                             "candidate's may be, as a share of prod's (0.01 = 1% of prod's log loss, MAE or "
                             "AUC): a share means the same on any scale of the target, where an absolute number "
                             "would not (0.01 of a price in cents is nothing; of a failure rate near 0.001 it "
                             "admits a model ten times worse).")


class TrainingConfig(_Strict):
    """PyCaret AutoML over a window of the `features` table, validated in time order."""

    window_batches: int | None = Field(default=None, gt=0, description="Train on the last N batches "
                                       "before the hold-out; all batches so far when absent.")
    holdout_share: float = Field(default=0.2, gt=0, lt=1, description="The most recent batches holding at "
                                 "least this share of the labelled rows are held out for evaluation (the "
                                 "conventional 80/20 split, in time order; at least one batch, and at least "
                                 "one batch is left to train on).")
    holdout_min_rows: int | None = Field(default=None, gt=0, description="An explicit size instead of the "
                                         "share: the most recent batches holding at least this many labelled "
                                         "rows are held out.")
    max_train_rows: int | None = Field(default=60000, gt=0, description="Keep the most recent rows "
                                       "of the window (bounds training time).")
    models: list[str] = Field(default_factory=lambda: ["lr", "knn", "dt", "rf", "et", "lightgbm"],
                              min_length=1, description="PyCaret model ids to compare.")
    metric: str | None = Field(default=None, description="Sort metric; LogLoss (classification) or MAE "
                               "(regression) when absent: log loss is a strictly proper scoring rule, so "
                               "it ranks the probabilities /predict returns; AUC only ranks rows and lets "
                               "an overconfident model win (docs/lifecycle.md).")
    folds: int = Field(default=3, ge=2, description="Time-series CV folds (expanding window).")
    train_fraction: float = Field(default=0.8, gt=0.1, lt=1.0,
                                  description="Earlier share used for CV; the later rest is PyCaret's test split.")
    budget_time_minutes: float = Field(default=2.0, gt=0, description="Bound of compare_models per variant, "
                                       "and of the tuning: no further leader is tuned once it is spent.")
    tune_top: int = Field(default=6, ge=0, description="How many of the leaders (by their figure over CV folds "
                          "and the test split) are tuned, best first, within `budget_time_minutes`: PyCaret's "
                          "default hyperparameters are one point of each family's space, and a family that "
                          "loses by its defaults can win tuned (the zoo's sensors: LightGBM fourth by its "
                          "defaults, log loss 0.62; tuned, 0.45 on the hold-out and the winner).")
    tune_iterations: int = Field(default=10, ge=1, description="Random-search draws per tuned model.")
    calendar_min_cycles: float = Field(
        default=2.0, ge=0, description="A calendar feature (hour, day_of_week, month, ...) is a model input only "
        "when the training window spans at least this many of its periods: under one the hold-out's phases were "
        "never seen and a model extrapolates the last one (a clock, not a season); with one each phase is seen "
        "once, so a one-off event becomes that phase's rule. 0: every configured feature is an input.")
    select_top: int = Field(default=6, ge=1, description="The CV leaders of each variant re-scored on all "
                            "validation rows (CV folds and PyCaret's test split, pooled by rows) to pick "
                            "the model: a small window's three folds are too few rows to rank by alone.")
    serving_cost: Literal["latency", "size", "off"] = Field(
        default="latency", description="Among the leaders within the CV noise of the best (one standard error "
        "of its CV mean, the one-standard-error rule), prefer the one cheapest to serve: by its predict time on "
        "one row (`latency`) or its pickled size (`size`), when it is at least `serving_cost_factor` times "
        "cheaper than the best; `off` takes the best figure. Both costs are in the leaderboard's metrics.")
    serving_cost_factor: float = Field(
        default=2.0, ge=1.0, description="How much cheaper a model within the noise must be to be chosen over the "
        "best: 2x is beyond the timing noise of a shared machine (repeated bench/compiled_scorer.py runs on 2 "
        "busy cores varied by up to 1.5x), so the choice does not flip on noise.")
    serving_cost_min_saving_ms: float = Field(
        default=0.5, ge=0, description="With `latency`: the cheaper model must also save at least this much per "
        "row: about half of the router's own work per request (validation, request log, JSON; "
        "bench/serving_peers.py), so a few microseconds never cost accuracy within the noise.")
    serving_cost_min_saving_mib: float = Field(
        default=16.0, ge=0, description="With `size`: the smaller model must also be at least this much smaller "
        "(each router worker holds every served model in memory: prod, staging, previous and fallback).")
    variants: list[PreprocessingVariant] = Field(
        default_factory=lambda: [PreprocessingVariant(name="median_raw")], min_length=1,
        description="Preprocessing variants; the first is searched over all `models`, the others over "
        "the best `variant_models` of the first (the search stays within budget).")
    variant_models: int = Field(default=3, ge=1)
    gate: GateConfig = Field(default_factory=GateConfig)
    refresh_min_rows: int | None = Field(default=None, gt=0, description="New labelled rows since prod's "
                                         "data needed before an incremental refresh runs; by default as many "
                                         "as prod's own hold-out held (a refresh must be judged on a hold-out "
                                         "as large as the one prod was judged on).")
    refresh_trees: int = Field(default=50, gt=0, description="Trees added by an incremental refresh of a "
                               "tree ensemble (random forest, extra trees, LightGBM).")
    session_id: int = 0
    n_jobs: int = Field(default=1, description="Parallel jobs for PyCaret (1 keeps memory bounded).")

    @model_validator(mode="after")
    def _unique_variants(self) -> TrainingConfig:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique, got {names}")
        return self


class EdaConfig(_Strict):
    max_rows: int = Field(default=100_000, gt=0, description="Rows sampled for the plots.")
    max_columns: int = Field(default=24, gt=0, description="Columns plotted at most.")


EFFECT_DEFAULTS = {"psi": 0.2, "wasserstein": 0.1, "jensen_shannon": 0.1}


class DriftScheduleConfig(_Strict):
    """The daily drift check over the latest batches (the seeds' daily drift DAG)."""

    cron: str = Field(default="0 6 * * *", description="When the check runs (cron, in `timezone`).")
    timezone: str = "UTC"
    window_batches: int = Field(default=3, ge=1, description="How many of the latest batches it re-checks "
                                "against the current prod model.")
    enabled: bool = Field(default=False, description="Default state of the schedule in Dagster (it can be "
                          "switched on in the UI); off so that `make dev` does not start work by itself.")

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError(f"expected a cron expression with 5 fields (minute hour day month weekday), got {value!r}")
        return value


def _check_timedelta(name: str, value: str | None) -> None:
    """Fail fast when ``value`` is set and is not a pandas Timedelta."""
    if value is None:
        return
    import pandas as pd  # as the batch_window check does: config stays cheap to import

    try:
        pd.Timedelta(value)
    except ValueError as exc:
        raise ValueError(f"{name} {value!r} is not a pandas Timedelta: {exc}") from exc


class DriftConfig(_Strict):
    """When a batch counts as drifted against the prod model's training data, and what follows.

    Defaults and why: see README, "Drift monitoring".
    """

    bins: int = Field(default=10, ge=2, description="Quantile bins of the reference for numeric PSI.")
    epsilon: float = Field(default=1e-4, gt=0, lt=0.01, description="Additive smoothing of bin shares, so an "
                           "empty bin does not make PSI infinite.")
    max_categories: int = Field(default=50, ge=1, description="Most frequent reference categories kept; "
                                "rarer and unseen ones are pooled into `<other>`.")
    alpha: float = Field(default=0.01, gt=0, lt=1, description="Significance level after correction.")
    correction: Literal["holm", "bonferroni", "bh", "none"] = Field(
        default="holm", description="Correction of the per-feature p-values for the number of features.")
    effect: Literal["psi", "wasserstein", "jensen_shannon"] = Field(
        default="psi", description="Effect size that must also pass `min_effect` (large samples make every "
        "test significant).")
    min_effect: float | None = Field(default=None, gt=0, description="Minimum effect size; by measure when "
                                     "absent: PSI 0.2, Wasserstein 0.1 reference stds, Jensen-Shannon 0.1.")
    min_current_rows: int = Field(default=200, ge=1, description="A batch with fewer rows never flags drift.")
    share_threshold: float = Field(default=0.2, gt=0, le=1, description="The batch is drifted when this "
                                   "share of its features drifted.")
    weighting: Literal["uniform", "importance"] = Field(
        default="uniform", description="importance: weight each feature's vote by prod's permutation importance.")
    persistence_batches: int = Field(default=1, ge=1, description="Retraining is requested only after this "
                                     "many consecutive drifted batches.")
    persistence_event_time: str | None = Field(
        default=None, description="Instead of `persistence_batches`: retraining is requested only when the "
        "consecutive drifted batches span at least this much event time (a pandas Timedelta, e.g. '3D'), "
        "from the first one's first row to the current one's last: the same rule for hourly and monthly "
        "batches. Unset: count batches.")
    exclude_columns: list[str] = Field(
        default_factory=list,
        description="Input columns never tested. Calendar features need no entry: see `calendar_min_cycles`.")
    calendar_min_cycles: float = Field(
        default=2.0, ge=0, description="A calendar feature (hour, day_of_week, month, ...) votes only when the "
        "batch and the reference each span at least this many of its periods (1 day for hour, 7 for "
        "day_of_week / is_weekend, a month for day_of_month, a year for month / day_of_year); otherwise its "
        "distribution is set by the batching, not by the data. Why 2: with uniform traffic over the cycle, a "
        "batch of k whole periods plus a part has PSI at most 0.12 against the full cycle for k = 1 and 0.04 "
        "for k = 2 (a fifth of the 0.2 effect line); under one period it is unbounded. 0: all vote.")
    reference_max_rows: int = Field(default=100_000, ge=100, description="Reference rows sampled at most "
                                    "(fixed seed): statistics on more change nothing but the run time.")
    prediction_drift: bool = Field(default=True, description="Also compare prod's predictions on its "
                                   "hold-out (out of sample) and on the batch.")
    model_drift_tolerance: float | None = Field(
        default=None, ge=0, description="Relative drop of prod's metric on a labelled batch vs its hold-out "
        "metric that counts as model drift, when the drop is also beyond both samples' sampling noise "
        "(one-sided z-test at `alpha`, the hold-out's standard error recorded at registration). Unset: "
        "`training.gate.tolerance`, the drop the gate already treats as no worse.")
    cooldown_unit: Literal["batches", "event_time", "wall_clock"] = Field(
        default="batches", description="What the cool-down after a retraining request is measured in: "
        "batches of the stream (default), the stream's event time, or wall-clock minutes (a live deployment "
        "where batches arrive in real time). Batches and event time plan the same runs at any replay speed.")
    cooldown_batches: int | None = Field(
        default=None, ge=0, description="cooldown_unit batches: drift events of this many newer batches (event "
        "time) after a request start no other one. Unset (default): the cool-down lasts until the newer "
        "batches hold as many labelled rows as a model trained now is judged on (its hold-out: "
        "`training.holdout_share` of the labelled rows, or `training.holdout_min_rows`) against the one it "
        "would replace; retraining before that replaces a model nobody could judge yet.")
    cooldown_event_time: str | None = Field(
        default=None, description="cooldown_unit event_time: a pandas Timedelta ('14D', '6h'): a drifted "
        "batch ending less than this after the requesting batch starts no retraining. Required for that unit.")
    cooldown_minutes: float = Field(default=60.0, ge=0, description="cooldown_unit wall_clock: after a "
                                    "retraining request, drift events within this many minutes start no "
                                    "other one (longer than one retraining run).")
    refresh_when_stable: bool = Field(default=True, description="A batch without drift requests an "
                                      "incremental refresh of prod (when enough new rows arrived).")
    sensor_poll_seconds: int = Field(default=30, ge=1)
    schedule: DriftScheduleConfig = Field(default_factory=DriftScheduleConfig)

    @property
    def effect_threshold(self) -> float:
        return self.min_effect if self.min_effect is not None else EFFECT_DEFAULTS[self.effect]

    @model_validator(mode="after")
    def _stream_durations_valid(self) -> DriftConfig:
        if self.cooldown_unit == "event_time" and self.cooldown_event_time is None:
            raise ValueError("drift.cooldown_unit is event_time: set drift.cooldown_event_time (e.g. '14D')")
        for name in ("cooldown_event_time", "persistence_event_time"):
            _check_timedelta(f"drift.{name}", getattr(self, name))
        return self


class EventLogConfig(_Strict):
    """The router's append-only request log (one writer per gunicorn worker)."""

    fsync_interval_seconds: float = Field(default=0.2, gt=0, le=60, description="Grouped fsync: a machine "
                                          "crash loses at most this much; a killed process loses nothing.")
    segment_max_bytes: int = Field(default=16 * 2**20, ge=1024, description="Rotate a segment at this size.")
    segment_max_seconds: float = Field(default=60.0, gt=0, description="Rotate a segment this old, so "
                                       "`ab_events` sees events within about this delay.")
    ship_interval_seconds: float | None = Field(
        default=None, gt=0, description="With storage.root_uri: how often each worker ships the closed segments "
        "of its replica's spool to <root>/events/inbox (and seals those of dead workers). Default: "
        "segment_max_seconds, so a segment waits at most one rotation period locally before it ships.")

    @property
    def ship_every_seconds(self) -> float:
        return self.ship_interval_seconds or self.segment_max_seconds


class RouterConfig(_Strict):
    """The Flask A/B router (gunicorn in production)."""

    host: str = Field(default="127.0.0.1", description="Bind address; loopback unless you mean otherwise.")
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=2, ge=1)
    worker_class: Literal["gevent", "gthread"] = Field(
        default="gevent", description="gunicorn worker: gevent (each connection waits on the event loop, so "
        "slow clients hold no thread) or gthread (a thread per request being read; `threads` of them).")
    threads: int = Field(default=4, ge=1, description="Threads per gunicorn worker (gthread only).")
    worker_connections: int = Field(default=1000, ge=1, description="Open connections per worker (gevent), "
                                    "gunicorn's default: an idle or slow one costs a greenlet and a socket, "
                                    "tens of KiB, so this bounds a worker's memory for them to tens of MiB.")
    reuse_port: bool = Field(default=True, description="A listening socket per worker (SO_REUSEPORT): the "
                             "kernel spreads new connections over the workers, so keep-alive clients do not "
                             "all stick to the worker that was first to accept.")
    default_split_b: float = Field(default=0.5, ge=0, le=1, description="Share of users sent to staging "
                                   "when an experiment opens.")
    reload_poll_seconds: float = Field(default=2.0, gt=0, description="How often each worker checks the "
                                       "aliases and experiments tables' versions (a cheap log read).")
    max_body_bytes: int = Field(default=1 * 2**20, ge=1024, description="Larger bodies get 413.")
    max_batch_rows: int = Field(default=1000, ge=1, description="Rows accepted by /predict_batch.")
    unknown_fields: Literal["reject", "ignore"] = Field(default="reject", description="Fields the model does "
                                                        "not know: 422, or dropped.")
    unknown_categories: Literal["accept", "reject", "fallback"] = Field(
        default="accept", description="A category never seen in training: scored by the model (its encoder "
        "handles it), 422, or sent to the fallback model.")
    fallback_max_missing_share: float = Field(default=0.5, ge=0, le=1, description="Rows missing more than "
                                              "this share of their features go to the fallback model.")
    fallback_max_out_of_range_share: float = Field(default=0.2, ge=0, le=1, description="Rows with more than "
                                                   "this share of numeric values outside the training range "
                                                   "(widened by `range_margin`) go to the fallback model.")
    range_margin: float = Field(default=0.1, ge=0, description="Training range widened by this share of its "
                                "width on each side before a value counts as out of range.")
    shadow_share: float = Field(default=0.0, ge=0, le=1, description="Share of experiment requests also "
                                "scored by the other variant's model, logged (never returned) for the paired "
                                "tests of the A/B analysis; each costs one more model call.")
    admin_token_env: str = Field(default="LAKEHOUSE_ADMIN_TOKEN", description="Environment variable holding the "
                                 "bearer token of the admin routes; unset: admin routes are disabled.")
    feedback_token_env: str = Field(
        default="LAKEHOUSE_FEEDBACK_TOKEN", description="Environment variable holding the bearer token that "
        "/feedback and /feedback_batch require (labels decide promotions: whoever can send them steers the "
        "A/B test); unset: feedback is open to any caller, which the router logs at start and /model_info "
        "states under `feedback_auth`.")
    reports_token_env: str = Field(
        default="LAKEHOUSE_REPORTS_TOKEN", description="Environment variable holding the password of "
        "GET /reports/<name> (HTTP Basic, any user name, or a bearer token): the reports show the data's "
        "distributions and categories. Unset: the reports are open to whoever reaches the router, as on "
        "loopback; the router logs that at start.")
    public_url: str | None = Field(
        default=None, description="The router's address as people reach it (behind a load balancer, its "
        "URL): the Dagster metadata links the reports to <public_url>/reports/<name>. Default: "
        "http://<host>:<port>, with 127.0.0.1 for a wildcard bind.")
    event_log: EventLogConfig = Field(default_factory=EventLogConfig)

    def base_url(self) -> str:
        """Where people reach the router (no trailing slash)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"


class ABConfig(_Strict):
    """The A/B analysis and the promotion rule (see README, "A/B analysis and promotion")."""

    metric: Literal["accuracy", "log_loss", "mae"] | None = Field(
        default=None, description="Per-request loss compared: accuracy (1 - correct) or log_loss for "
        "classification, mae for regression; accuracy / mae when absent.")
    alpha: float = Field(default=0.05, gt=0, lt=0.5, description="Of the always-valid (mSPRT) p-value.")
    mde: float = Field(default=0.10, gt=0, description="Minimum detectable effect, in the unit `mde_unit` "
                       "names (by default relative: 0.10 = a tenth of A's observed mean loss, i.e. 1 point of "
                       "accuracy at 90%, or 4 of an MAE of 40 whatever the currency). Sets the planned sample "
                       "(from the observed variance) and the spread of the mSPRT mixture. The default: a retraining "
                       "worth a model swap removes at least a tenth of prod's loss; as a share it means the same "
                       "on every target scale.")
    mde_unit: Literal["relative", "standardised", "absolute"] = Field(
        default="relative", description="Unit of `mde` and `non_inferiority_margin`: relative = a share of "
        "A's observed mean loss; standardised = in standard deviations of A's per-request loss (Cohen's d); "
        "absolute = in the loss's own units (points of error rate, the target's units for mae: then the "
        "value depends on the dataset's scale).")
    power: float = Field(default=0.8, gt=0.5, lt=1)
    min_samples: int = Field(default=200, ge=10, description="Floor of labelled requests per variant before "
                             "any decision, whatever the power calculation says.")
    srm_alpha: float = Field(default=0.001, gt=0, lt=0.05)
    label_alpha: float = Field(default=0.001, gt=0, lt=0.05)
    non_inferiority_margin: float | None = Field(default=None, gt=0, description="Promote a B whose loss "
                                                 "is at most this much worse, in the unit `mde_unit` names (the "
                                                 "always-valid 95% upper bound; null: B must be significantly "
                                                 "better).")
    decision_basis: Literal["split", "paired"] = Field(
        default="split", description="What the decision reads: the randomized split (A's users against B's), or "
        "the shadow pairs (both models on the same requests; needs router.shadow_share > 0, and labels that do "
        "not depend on the answer, as for a forecast of an outcome that happens anyway). Guardrails, SRM and "
        "label balance always come from the split.")
    latency_p95_ratio: float = Field(default=1.25, ge=1)
    fallback_share_margin: float = Field(default=0.05, ge=0)
    error_rate_margin: float = Field(default=0.01, ge=0, description="Guardrail: B's error rate (requests on "
                                     "which its model raised) may exceed A's by at most this; else rollback.")
    look_every: int = Field(default=50, ge=1, description="The sequential test looks after every this many "
                            "labelled requests per variant (in time order).")
    auto_promote: bool = Field(default=False, description="ab_sensor launches promote_job itself on a "
                               "promote / rollback decision.")
    min_new_labels: int = Field(default=100, ge=1, description="ab_sensor analyses again after this many "
                                "more labelled requests of the running experiment.")
    sensor_poll_seconds: int = Field(default=60, ge=1)


class StorageConfig(_Strict):
    """Where the lake and the model files live. Local by default under the data root; an object
    store (``root_uri: s3://bucket/prefix``) for several machines."""

    root_uri: str | None = Field(default=None, description="One root for what the system keeps beyond a "
                                 "machine: the lake at <root>/lake, the model artifacts at <root>/artifacts, the "
                                 "batch files at <root>/{inbox,archive,quarantine} and the replicas' shipped request "
                                 "log at <root>/events (e.g. s3://bucket/lakehouse). Default: the data root's "
                                 "folders.")
    lake_uri: str | None = Field(default=None, description="The lake alone elsewhere (e.g. s3://bucket/lake); "
                                 "overrides <root_uri>/lake; default <data root>/lake")
    storage_options: dict[str, str] = Field(default_factory=dict)
    commit_retries: int = Field(default=8, ge=0, description="Retries of a Delta commit on conflict.")
    checkpoint_interval: int = Field(default=10, ge=1, description="Delta checkpoint every N commits "
                                     "(new tables), so opening a table stays cheap as commits pile up.")


class DagsterConfig(_Strict):
    instance_storage: Literal["sqlite", "postgres"] = Field(
        default="sqlite", description="Where the Dagster instance keeps runs, event logs, schedules and sensor "
        "cursors: SQLite files under DAGSTER_HOME (one machine), or PostgreSQL (dagster-postgres), which the "
        "webserver, the daemon and the code servers share from any host.")
    postgres_url_env: str = Field(
        default="LAKEHOUSE_DAGSTER_POSTGRES_URL", description="The environment variable holding the PostgreSQL "
        "URL (postgresql+psycopg2://user:password@host:5432/db) when instance_storage is postgres: the password stays "
        "out of the configuration file, and every Dagster process reads the variable itself.")
    inbox_poll_seconds: int = Field(default=15, ge=1)
    event_log_poll_seconds: int = Field(default=30, ge=1, description="How often event_log_sensor looks "
                                        "for closed segments of the router's request log.")
    max_runs_per_tick: int = Field(default=25, ge=1)


class ExporterConfig(_Strict):
    """The lake exporter (``run.py -mode exporter``): Prometheus series read from the lake (drift
    verdicts, retraining requests, A/B looks and guardrail breaches, aliases) for the alert rules
    of ops/prometheus. One per deployment: the series are the lake's, not a replica's."""

    host: str = Field(default="127.0.0.1", description="Bind address; loopback unless you mean otherwise.")
    port: int = Field(default=9108, ge=1, le=65535, description="Port of /metrics.")


class PipelineConfig(_Strict):
    """Root of the configuration file."""

    dataset: DatasetConfig
    stream: StreamConfig = Field(default_factory=StreamConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    cleaning: CleaningConfig = Field(default_factory=CleaningConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    eda: EdaConfig = Field(default_factory=EdaConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    router: RouterConfig = Field(default_factory=RouterConfig)
    ab: ABConfig = Field(default_factory=ABConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    dagster: DagsterConfig = Field(default_factory=DagsterConfig)
    exporter: ExporterConfig = Field(default_factory=ExporterConfig)

    @property
    def sort_metric(self) -> str:
        """The metric the search sorts by and the gate compares."""
        return self.training.metric or ("LogLoss" if self.dataset.task == "classification" else "MAE")

    @model_validator(mode="after")
    def _metric_fits_task(self) -> PipelineConfig:
        allowed = CLASSIFICATION_METRICS if self.dataset.task == "classification" else REGRESSION_METRICS
        if self.training.metric is not None and self.training.metric not in allowed:
            raise ValueError(f"training.metric {self.training.metric!r} does not fit task "
                             f"{self.dataset.task!r}; expected one of {list(allowed)}")
        if self.training.gate.min_score is not None and self.training.metric is None:
            # a floor is a number in one metric's units: read against another default it means nothing
            # (an AUC floor of 0.55 is a log-loss ceiling almost any model clears)
            raise ValueError(f"training.gate.min_score {self.training.gate.min_score} is in the units of the sort "
                             f"metric: set training.metric too (the default is {self.sort_metric})")
        return self

    @model_validator(mode="after")
    def _pairs_are_scored(self) -> PipelineConfig:
        if self.ab.decision_basis == "paired" and self.router.shadow_share == 0:
            raise ValueError("ab.decision_basis 'paired' needs shadow pairs: set router.shadow_share above 0 "
                             "(the share of requests both models score)")
        return self

    @model_validator(mode="after")
    def _range_columns_known(self) -> PipelineConfig:
        numeric = self.dataset.numeric
        if numeric is not None:
            unknown = sorted(set(self.quality.ranges) - set(numeric))
            if unknown:
                raise ValueError(f"quality.ranges names column(s) {unknown} that are not in dataset.numeric")
        return self


BATCH_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")
