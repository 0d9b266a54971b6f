"""A toy e-mail stream: two free-text columns (some missing, empty or whitespace-only), a sender
domain (categorical, a new domain appearing only late), a length and a spam/ham label."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from tests.conftest import BASE_CONFIG, deep_merge

HAM = ["meeting", "report", "lunch", "project", "schedule", "team", "review", "notes", "budget", "agenda"]
SPAM = ["winner", "free", "prize", "offer", "click", "cash", "urgent", "deal", "bonus", "claim"]


def make_mail(n: int = 900, seed: int = 0) -> pd.DataFrame:
    """Hourly e-mails; words of the spam vocabulary are about three times likelier in spam.

    ``subject`` and ``body`` are each missing (NaN) in 5% of rows, empty in 4% and whitespace-only
    in 3%; the domain ``new.example`` appears only in the last tenth of the stream."""
    rng = np.random.default_rng(seed)
    spam = rng.random(n) < 0.4

    def words(k: int, is_spam: bool) -> str:
        pool = (SPAM if is_spam else HAM) * 2 + HAM + SPAM
        return " ".join(rng.choice(pool, k))

    domain = rng.choice(["corp.example", "mail.example", "shop.example"], n).astype(object)
    domain[int(0.9 * n):][rng.random(n - int(0.9 * n)) < 0.3] = "new.example"
    df = pd.DataFrame({
        "ts": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ"),
        "subject": [words(3, s) for s in spam], "body": [words(12, s) for s in spam],
        "domain": domain, "length": rng.gamma(2.0, 50.0, n).round(0), "msg_id": [f"m{i}" for i in range(n)],
        "spam": np.where(spam, "yes", "no"),
    })
    for col in ("subject", "body"):
        r = rng.random(n)
        df.loc[r < 0.05, col] = np.nan
        df.loc[(r >= 0.05) & (r < 0.09), col] = ""
        df.loc[(r >= 0.09) & (r < 0.12), col] = "   "
    return df


MAIL_OVERRIDE: dict[str, Any] = {
    "dataset": {"name": "mail", "target": "spam", "id_column": "msg_id", "numeric": ["length"],
                "categorical": ["domain"], "text": ["subject", "body"]},
}


def write_mail_config(folder: Path, training: dict[str, Any]) -> Path:
    """source.csv and pipeline.yaml of the mail stream in ``folder`` (no quality ranges: the toy's
    ``temp`` range does not apply); return the config path."""
    folder.mkdir(parents=True, exist_ok=True)
    make_mail().to_csv(folder / "source.csv", index=False)
    conf = deep_merge(BASE_CONFIG, {**MAIL_OVERRIDE, "training": training})
    conf["quality"]["ranges"] = {}
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(conf, sort_keys=False))
    return path
