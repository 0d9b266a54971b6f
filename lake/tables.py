"""Table names and the schemas of the system tables: the one place that defines them.

The data tables (``raw``, ``cleaned``, ``features``) take their columns from the dataset's
schema contract (see :mod:`assets.ingest.contract`), so their Arrow schemas are built there; the
fixed tables below have the same columns for every dataset.
"""

from __future__ import annotations

import pyarrow as pa

# Data tables, one row per source row, partitioned on disk by batch.
RAW = "raw"
CLEANED = "cleaned"
FEATURES = "features"
# Metadata tables written by the ingestion pipeline.
BATCHES = "batches"
QUALITY = "quality"
SCHEMA_CONTRACT = "schema_contract"
# Tables of the model lifecycle and the A/B loop (ARCHITECTURE.md), written by later stages.
DRIFT = "drift"
LEADERBOARD = "leaderboard"
MODEL_REGISTRY = "model_registry"
MODEL_ALIASES = "model_aliases"
EXPERIMENTS = "experiments"
AB_EVENTS = "ab_events"
AB_FEEDBACK = "ab_feedback"
AB_DECISIONS = "ab_decisions"

BATCH_COLUMN = "_batch_id"
SOURCE_FILE_COLUMN = "_source_file"
INGESTED_AT_COLUMN = "_ingested_at"
EVENT_TIME_COLUMN = "event_time"
LINEAGE_COLUMNS = (BATCH_COLUMN, SOURCE_FILE_COLUMN, INGESTED_AT_COLUMN)

# Tables whose files are partitioned by batch, so a batch rewrite touches only its own files.
PARTITIONED_BY_BATCH = {RAW: BATCH_COLUMN, CLEANED: BATCH_COLUMN, FEATURES: BATCH_COLUMN}

TS = pa.timestamp("us", tz="UTC")

BATCHES_SCHEMA = pa.schema([
    ("batch_id", pa.string()),
    ("source_file", pa.string()),
    ("status", pa.string()),            # ingested | quarantined
    ("reason_code", pa.string()),       # machine-readable reason when quarantined
    ("reason", pa.string()),
    ("row_count", pa.int64()),
    ("time_min", TS),
    ("time_max", TS),
    ("columns", pa.string()),           # JSON list, in file order
    ("dtypes", pa.string()),            # JSON {column: dtype as read}
    ("missing_share", pa.float64()),    # share of missing cells
    ("duplicate_share", pa.float64()),  # share of fully duplicated rows
    ("type_errors", pa.string()),       # JSON {column: values that failed to parse}
    ("extra_columns", pa.string()),     # JSON list of columns not in the contract (dropped)
    ("file_sha256", pa.string()),
    ("file_bytes", pa.int64()),
    ("ingested_at", TS),
    ("run_id", pa.string()),
])

QUALITY_BATCH_ROW = "__batch__"  # the `column` value of the batch-totals row
QUALITY_SCHEMA = pa.schema([
    ("batch_id", pa.string()),
    ("column", pa.string()),
    ("role", pa.string()),
    ("row_count", pa.int64()),
    ("missing_share", pa.float64()),
    ("distinct_count", pa.int64()),
    ("min", pa.float64()),
    ("max", pa.float64()),
    ("mean", pa.float64()),
    ("out_of_range_share", pa.float64()),
    ("unseen_categories", pa.string()),  # JSON list (capped) of categories no other batch had
    ("unseen_share", pa.float64()),      # share of rows carrying an unseen category
    ("categories", pa.string()),         # JSON list of the most frequent categories (capped)
    ("duplicate_share", pa.float64()),
    ("score", pa.float64()),             # batch quality score in [0, 1] (batch row only)
    ("computed_at", TS),
])

SCHEMA_CONTRACT_SCHEMA = pa.schema([
    ("column", pa.string()),
    ("role", pa.string()),      # time | target | id | numeric | categorical | text | ignore
    ("dtype", pa.string()),     # float64 | string | timestamp
    ("position", pa.int32()),
    ("origin", pa.string()),    # config | inferred
    ("note", pa.string()),
    ("batch_id", pa.string()),  # the batch the contract was first built from
    ("created_at", TS),
])

MODEL_REGISTRY_SCHEMA = pa.schema([
    ("version", pa.int64()),
    ("created_at", TS),
    ("task", pa.string()),
    ("algorithm", pa.string()),          # estimator class, e.g. RandomForestClassifier
    ("model_id", pa.string()),           # PyCaret id, e.g. rf
    ("variant", pa.string()),            # preprocessing variant of the search
    ("hyperparameters", pa.string()),    # JSON
    ("metric", pa.string()),             # the metric the search sorted by
    ("cv_metrics", pa.string()),         # JSON {metric: mean over time-series folds}
    ("holdout_metrics", pa.string()),    # JSON {metric: value on the held-out recent batches}
    ("training_batches", pa.string()),   # JSON list
    ("holdout_batches", pa.string()),    # JSON list
    ("features_version", pa.int64()),    # Delta version of `features` read for training
    ("training_rows", pa.int64()),
    ("config_hash", pa.string()),
    ("library_versions", pa.string()),   # JSON
    ("artifact_path", pa.string()),
    ("sha256", pa.string()),
    ("artifact_bytes", pa.int64()),
    ("input_schema", pa.string()),       # JSON: FeatureSpec, dtypes, categories seen, numeric ranges
    ("latency_single_ms", pa.float64()),  # median single-row predict
    ("latency_batch_ms", pa.float64()),  # median 1,000-row predict
    ("peak_memory_mb", pa.float64()),    # peak traced memory while predicting 1,000 rows
    ("gate", pa.string()),               # JSON: gate inputs and outcome
    ("interpretation", pa.string()),     # JSON {kind: path}: importance, coefficients, tree
    ("role", pa.string()),               # candidate (AutoML winner) | fallback
    ("run_id", pa.string()),
    # the compiled scorer (serving/compiled.py): "compiled" when verified equal to the pipeline,
    # "pipeline" when a step has no translation or the check failed (scorer_check says which / why)
    ("scorer", pa.string()),
    ("scorer_sha256", pa.string()),      # of <artifact folder>/scorer.joblib
    ("scorer_max_diff", pa.float64()),   # largest |compiled - pipeline| output on the checked rows
    ("scorer_check", pa.string()),       # JSON: rows checked, tolerance, kernel, step and reason
])

MODEL_ALIASES_SCHEMA = pa.schema([
    ("change_id", pa.int64()),
    ("alias", pa.string()),              # prod | staging | previous | fallback
    ("version", pa.int64()),             # null: alias cleared
    ("from_version", pa.int64()),
    ("changed_at", TS),
    ("actor", pa.string()),              # who or what changed it (job, run id, user)
    ("reason", pa.string()),
    ("experiment_id", pa.string()),
])

LEADERBOARD_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("trained_at", TS),
    ("rank", pa.int64()),
    ("model_id", pa.string()),
    ("model", pa.string()),
    ("variant", pa.string()),
    ("stage", pa.string()),              # compare | tuned
    ("hyperparameters", pa.string()),    # JSON
    ("metrics", pa.string()),            # JSON: every CV metric PyCaret reports
    ("sort_metric", pa.string()),
    ("sort_value", pa.float64()),
    ("fit_seconds", pa.float64()),
])

DRIFT_BATCH_ROW = "__batch__"          # the `feature` value of the batch verdict row
DRIFT_PREDICTION_ROW = "__prediction__"  # prod's predictions on reference vs batch
DRIFT_TARGET_ROW = "__target__"        # the label distribution, where the batch has labels
DRIFT_SCHEMA = pa.schema([
    ("batch_id", pa.string()),
    ("feature", pa.string()),            # a feature, or one of the special rows above
    ("kind", pa.string()),               # numeric | categorical | batch
    ("prod_version", pa.int64()),        # the model whose training data is the reference
    ("reference_features_version", pa.int64()),  # Delta version of `features` read (time travel)
    ("n_reference", pa.int64()),
    ("n_current", pa.int64()),
    ("psi", pa.float64()),
    ("test", pa.string()),               # ks | chi2 | none
    ("statistic", pa.float64()),
    ("p_value", pa.float64()),
    ("p_adjusted", pa.float64()),        # corrected for the number of features tested
    ("wasserstein_std", pa.float64()),   # Wasserstein distance / reference std (numeric)
    ("js_distance", pa.float64()),       # Jensen-Shannon distance of the binned shares
    ("effect", pa.float64()),            # the configured effect size
    ("reference_mean", pa.float64()),
    ("current_mean", pa.float64()),
    ("missing_reference", pa.float64()),
    ("missing_current", pa.float64()),
    ("unseen_share", pa.float64()),
    ("importance", pa.float64()),        # prod's permutation importance of the feature
    ("drifted", pa.bool_()),             # feature rows: drifted; batch row: the batch verdict
    # batch row only
    ("drifted_share", pa.float64()),
    ("data_drifted", pa.bool_()),
    ("model_metric", pa.string()),
    ("model_metric_current", pa.float64()),
    ("model_metric_reference", pa.float64()),
    ("model_drop", pa.float64()),        # relative deterioration of the metric (positive = worse)
    ("model_drifted", pa.bool_()),
    ("consecutive_drifted", pa.int64()),
    ("retrain_requested", pa.bool_()),   # drifted for `persistence_batches` batches in a row
    ("reason", pa.string()),
    ("computed_at", TS),
    ("run_id", pa.string()),
])

EXPERIMENTS_SCHEMA = pa.schema([
    ("experiment_id", pa.string()),
    ("prod_version", pa.int64()),        # variant A
    ("staging_version", pa.int64()),     # variant B
    ("ab_split_b", pa.float64()),        # share of users sent to B
    ("status", pa.string()),             # running | promoted | rolled_back | superseded
    ("created_at", TS),
    ("updated_at", TS),
    ("actor", pa.string()),              # who made the last change
    ("reason", pa.string()),
    ("decision", pa.string()),           # promote | rollback | continue (A/B analysis), or null
])

# The router's event log (JSON lines, one segment file per worker at a time) lands here.
AB_EVENTS_SCHEMA = pa.schema([
    ("request_id", pa.string()),
    ("event_time", TS),
    ("user_id", pa.string()),            # null: assigned per request
    ("variant", pa.string()),            # A (prod) | B (staging)
    ("experiment_id", pa.string()),      # null when no experiment ran (no staging model)
    ("model_version", pa.int64()),       # the version that answered
    ("model_used", pa.string()),         # prod | staging | fallback
    ("fallback_reason", pa.string()),
    ("features", pa.string()),           # JSON object as received
    ("prediction", pa.string()),         # JSON scalar as answered
    ("prediction_value", pa.float64()),  # the prediction as a number when it is one
    ("probability", pa.float64()),       # classification: probability of the predicted class
    ("latency_ms", pa.float64()),        # the whole request, as the caller waited for it
    ("model_ms", pa.float64()),          # the scoring call that answered the row (the model's own time)
    ("shadow_version", pa.int64()),      # the other variant's model, scored in shadow (sampled), or null
    ("shadow_prediction", pa.string()),
    ("shadow_probability", pa.float64()),
    ("shadow_model_ms", pa.float64()),   # the shadow model's scoring call
    ("error", pa.string()),              # the assigned model raised: answered by the fallback, or not at all
                                         # (model_used "none"); the A/B error-rate guardrail counts these
    ("worker", pa.string()),             # host-pid of the writer
    ("segment", pa.string()),            # event-log file it came from
    ("ingested_at", TS),
])

AB_FEEDBACK_SCHEMA = pa.schema([
    ("feedback_id", pa.string()),
    ("request_id", pa.string()),
    ("event_time", TS),
    ("label", pa.string()),              # JSON scalar as received
    ("label_value", pa.float64()),       # the label as a number when it is one
    ("worker", pa.string()),
    ("segment", pa.string()),
    ("ingested_at", TS),
])

# Every look of the A/B analysis, append-only: `experiments` keeps only an experiment's last
# decision, this keeps each one with what caused it (the audit trail, and what alerts count).
AB_DECISIONS_SCHEMA = pa.schema([
    ("experiment_id", pa.string()),
    ("prod_version", pa.int64()),        # variant A at the look
    ("staging_version", pa.int64()),     # variant B at the look
    ("decided_at", TS),
    ("action", pa.string()),             # promote | rollback | continue
    ("blocked", pa.bool_()),             # SRM or uneven labels: no decision possible
    ("guardrail", pa.string()),          # the breached guardrail of a rollback (error_rate, model_p95_ms,
                                         # latency_p95_ms, fallback_share), else null
    ("always_valid_p", pa.float64()),
    ("reason", pa.string()),
    ("run_id", pa.string()),             # the Dagster run (or the command line's id) that looked
])
