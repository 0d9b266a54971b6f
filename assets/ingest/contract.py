"""The schema contract: each column's role and storage type, fixed by config or the first batch.

Roles given in the configuration win; columns the configuration leaves open are inferred from
the first batch that reaches the lake and then frozen, so every later batch is typed and checked
the same way (a column that parsed as numbers in January must parse as numbers in July)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa

from config.schema import PipelineConfig
from lake.tables import LINEAGE_COLUMNS, SCHEMA_CONTRACT, SCHEMA_CONTRACT_SCHEMA, TS
from serving.parsing import parse_numeric

FEATURE_ROLES = ("numeric", "categorical", "text")


ARROW_TYPES = {"float64": pa.float64(), "string": pa.string(), "timestamp": TS}


TEXT_MIN_WORDS = 4.0


TEXT_MIN_UNIQUE_SHARE = 0.5


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    role: str
    dtype: str  # float64 | string | timestamp
    origin: str = "config"
    note: str = ""


@dataclass(frozen=True)
class Contract:
    """Ordered column specs of the dataset's data tables."""

    columns: tuple[ColumnSpec, ...]

    def names(self, *roles: str) -> list[str]:
        return [c.name for c in self.columns if not roles or c.role in roles]

    def role_of(self, name: str) -> str:
        return self.spec(name).role

    def spec(self, name: str) -> ColumnSpec:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"column {name!r} is not in the schema contract")

    @property
    def time(self) -> str:
        return self.names("time")[0]

    @property
    def target(self) -> str:
        return self.names("target")[0]

    @property
    def required(self) -> list[str]:
        """Columns every batch must carry (ignored columns may be absent)."""
        return [c.name for c in self.columns if c.role != "ignore"]

    def arrow_schema(self, with_lineage: bool = True) -> pa.Schema:
        """Schema of ``raw`` and ``cleaned``: contract columns plus the lineage columns."""
        fields = [pa.field(c.name, ARROW_TYPES[c.dtype]) for c in self.columns]
        if with_lineage:
            fields += [pa.field(LINEAGE_COLUMNS[0], pa.string()), pa.field(LINEAGE_COLUMNS[1], pa.string()),
                       pa.field(LINEAGE_COLUMNS[2], TS)]
        return pa.schema(fields)

    def to_frame(self, batch_id: str) -> pd.DataFrame:
        now = datetime.now(UTC)
        return pd.DataFrame([{"column": c.name, "role": c.role, "dtype": c.dtype, "position": i,
                              "origin": c.origin, "note": c.note, "batch_id": batch_id,
                              "created_at": now} for i, c in enumerate(self.columns)])

    @classmethod
    def from_frame(cls, df: pd.DataFrame) -> Contract:
        df = df.sort_values("position")
        return cls(tuple(ColumnSpec(r.column, r.role, r.dtype, r.origin, r.note or "")
                         for r in df.itertuples(index=False)))


def _infer_role(values: pd.Series, max_error_share: float) -> tuple[str, str, str]:
    """(role, dtype, note) of a column the configuration does not name."""
    present = values.dropna()
    if present.empty:
        return "ignore", "string", "all values missing in the first batch: role cannot be inferred"
    if values.dtype == bool or pd.api.types.is_bool_dtype(values):
        return "categorical", "string", "boolean"
    numeric = parse_numeric(present)
    if numeric.notna().mean() >= 1 - max_error_share:
        return "numeric", "float64", ""
    text = present.astype(str)
    if text.str.split().str.len().mean() >= TEXT_MIN_WORDS and text.nunique() / len(text) >= TEXT_MIN_UNIQUE_SHARE:
        return "text", "string", "many distinct multi-word values"
    return "categorical", "string", ""


def declared_roles(cfg: PipelineConfig) -> dict[str, str]:
    """Column -> role as the configuration declares them (time, target, id and explicit lists)."""
    ds = cfg.dataset
    declared: dict[str, str] = {ds.time_column: "time", ds.target: "target"}
    if ds.id_column:
        declared[ds.id_column] = "id"
    for role in ("numeric", "categorical", "text", "ignore"):
        for col in getattr(ds, role) or []:
            declared[col] = role
    return declared


def build_contract(df: pd.DataFrame, cfg: PipelineConfig) -> Contract:
    """Contract for a dataset from config roles plus inference on a first batch ``df``."""
    ds = cfg.dataset
    explicit = declared_roles(cfg)
    all_roles_explicit = all(getattr(ds, r) is not None for r in FEATURE_ROLES)
    specs: list[ColumnSpec] = []
    for col in df.columns:
        if col in LINEAGE_COLUMNS:
            continue
        if col in explicit:
            role = explicit[col]
            if role == "ignore":
                _, dtype, _ = _infer_role(df[col], cfg.ingest.max_type_error_share)
            else:
                dtype = _dtype_for(role, cfg)
            specs.append(ColumnSpec(col, role, dtype, "config"))
        elif all_roles_explicit:
            continue  # not named anywhere while every role list is explicit: an extra column
        else:
            role, dtype, note = _infer_role(df[col], cfg.ingest.max_type_error_share)
            specs.append(ColumnSpec(col, role, dtype, "inferred", note))
    missing = [c for c, r in explicit.items() if r != "ignore" and c not in df.columns]
    if missing:
        raise ValueError(f"configured column(s) {missing} are not in the batch (columns: {list(df.columns)})")
    return Contract(tuple(specs))


def _dtype_for(role: str, cfg: PipelineConfig) -> str:
    if role == "time":
        return "timestamp"
    if role == "numeric" or (role == "target" and cfg.dataset.task == "regression"):
        return "float64"
    return "string"


def contract_conflicts(contract: Contract, cfg: PipelineConfig) -> list[str]:
    """Differences between a stored contract and the roles the configuration now declares."""
    declared = declared_roles(cfg)
    problems = []
    stored = {c.name: c.role for c in contract.columns}
    for col, role in declared.items():
        if col in stored and stored[col] != role:
            problems.append(f"{col}: config says {role}, the lake's contract says {stored[col]}")
        if col not in stored and role != "ignore":
            problems.append(f"{col}: config declares it as {role}, the lake's contract has no such column")
    return problems


def load_contract(lake) -> Contract | None:
    """The stored contract, or None before the first batch."""
    if not lake.exists(SCHEMA_CONTRACT):
        return None
    return Contract.from_frame(lake.read(SCHEMA_CONTRACT))


def ensure_contract(lake, df: pd.DataFrame, cfg: PipelineConfig, batch_id: str) -> Contract:
    """The lake's contract, created from ``df`` if this is the first batch.

    Raises ValueError when the configuration contradicts the stored contract: changing a
    column's role needs a new data root (or a migration), not a silent re-typing.
    """
    contract = load_contract(lake)
    if contract is None:
        fresh = build_contract(df, cfg).to_frame(batch_id)
        # compare-and-swap: if another run created the contract meanwhile, theirs stays
        lake.rewrite(SCHEMA_CONTRACT, SCHEMA_CONTRACT_SCHEMA, lambda current: current if len(current) else fresh)
        contract = load_contract(lake)
        assert contract is not None
    conflicts = contract_conflicts(contract, cfg)
    if conflicts:
        raise ValueError("configuration contradicts the schema contract stored in the lake: "
                         + "; ".join(conflicts))
    return contract
