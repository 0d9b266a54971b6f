"""Synthetic datasets with the structure real tables have: a time trend and a weekly cycle, skewed
categories whose effect on the target is real, numeric features with missing values, free text,
labels that arrive for some rows only. Deterministic for a seed.

Each function returns one DataFrame holding the time column, the features and the target, in the
target's raw spelling (``"YES"``/``"NO"``, booleans, ``0.0``/``1.0``, class names, prices).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

WEEKDAY_EFFECT = np.array([0.1, 0.0, 0.0, 0.05, 0.2, -0.3, -0.4])  # Monday .. Sunday


def _times(rng: np.random.Generator, start: str, periods_days: int, n: int) -> pd.DatetimeIndex:
    """``n`` sorted arrival times over ``periods_days`` days, busier in working hours."""
    day = rng.integers(0, periods_days, n)
    hour = np.clip(rng.normal(13, 3.5, n), 0, 23.99)
    stamps = pd.Timestamp(start) + pd.to_timedelta(day, unit="D") + pd.to_timedelta(hour * 3600, unit="s")
    return pd.DatetimeIndex(np.sort(stamps.values)).floor("s")


def _skewed(rng: np.random.Generator, names: list[str], n: int, alpha: float = 1.2) -> np.ndarray:
    """Categories with Zipf-like frequencies (a few common ones, a long tail)."""
    weights = 1.0 / np.arange(1, len(names) + 1) ** alpha
    return rng.choice(names, n, p=weights / weights.sum())


def _effect(rng: np.random.Generator, values: np.ndarray, scale: float) -> np.ndarray:
    """A random but fixed effect per category level."""
    levels = sorted(set(values))
    table = dict(zip(levels, rng.normal(0, scale, len(levels)), strict=True))
    return np.array([table[v] for v in values])


def records(n: int = 6000, seed: int = 1) -> pd.DataFrame:
    """A public-records log: mostly categorical, a YES/NO target missing on 16% of rows (not yet
    decided), times with a UTC offset (+02:00). Binary classification."""
    rng = np.random.default_rng(seed)
    t = _times(rng, "2024-01-01", 240, n)
    agency = _skewed(rng, [f"agency_{i:02d}" for i in range(18)], n)
    kind = _skewed(rng, ["permit", "complaint", "inspection", "license", "appeal", "variance"], n, 0.8)
    district = _skewed(rng, [f"D{i}" for i in range(1, 13)], n, 0.5)
    channel = rng.choice(["online", "counter", "mail", "phone"], n, p=[0.55, 0.25, 0.1, 0.1])
    pages = rng.poisson(4, n).astype(float)
    pages[rng.random(n) < 0.08] = np.nan
    logit = (-0.2 + _effect(rng, agency, 0.8) + _effect(rng, kind, 1.0) + 0.3 * (channel == "online")
             - 0.08 * np.nan_to_num(pages, nan=4) + WEEKDAY_EFFECT[t.dayofweek] + rng.normal(0, 0.5, n))
    outcome = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "YES", "NO").astype(object)
    outcome[rng.random(n) < 0.16] = None  # undecided: no label yet
    stamps = t.tz_localize("UTC").tz_convert("Europe/Berlin")
    return pd.DataFrame({"filed_at": stamps.strftime("%Y-%m-%dT%H:%M:%S%z").str.replace(r"(\d\d)$", r":\1",
                                                                                          regex=True),
                         "agency": agency, "request_type": kind, "district": district, "channel": channel,
                         "pages": pages, "granted": outcome})


def bookings(n: int = 4000, seed: int = 2) -> pd.DataFrame:
    """A bookings table: the price in cents (regression on a scale of 10^4 .. 10^6), identical rows
    that are separate real bookings, naive local times. Roles left to inference."""
    rng = np.random.default_rng(seed)
    t = _times(rng, "2023-03-01", 300, n)
    room = _skewed(rng, ["standard", "double", "suite", "family", "studio"], n, 0.7)
    nights = rng.integers(1, 8, n).astype(float)
    guests = rng.integers(1, 5, n).astype(float)
    lead_days = rng.gamma(2.0, 15.0, n).round()
    season = 1 + 0.25 * np.sin(2 * np.pi * (t.dayofyear - 100) / 365)
    base = pd.Series(room).map({"standard": 9000, "double": 12000, "suite": 30000, "family": 18000,
                                "studio": 10000}).to_numpy()
    price = base * nights * season * (1 + 0.1 * (guests - 1)) * np.exp(rng.normal(0, 0.15, n)) \
        * (1 + 0.15 * (t.dayofweek >= 4)) * (1 - 0.002 * np.minimum(lead_days, 60))
    df = pd.DataFrame({"booked_at": t.strftime("%Y-%m-%d %H:%M"), "room_type": room, "nights": nights,
                       "guests": guests, "lead_days": lead_days, "price_cents": price.round()})
    repeats = df.sample(frac=0.06, random_state=seed)  # the same booking made twice: real, separate rows
    return pd.concat([df, repeats]).sort_values("booked_at", kind="stable").reset_index(drop=True)


SPAM = ["win a free prize now", "limited offer click here", "cheap meds online", "you have been selected",
        "claim your reward", "urgent account verification", "lowest price guaranteed"]
HAM = ["meeting moved to thursday", "please review the attached report", "lunch tomorrow?",
       "minutes of the weekly call", "invoice for march attached", "can you send the slides",
       "the build is green again", "happy birthday from the team"]
FILL = ["hello", "regards", "thanks", "see below", "fyi", "best", "", "as discussed"]


def emails(n: int = 3000, seed: int = 3) -> pd.DataFrame:
    """An e-mail corpus: subject and body free text (some empty, some missing), a boolean target
    (spam), batches by rows. Binary classification on text."""
    rng = np.random.default_rng(seed)
    t = _times(rng, "2024-02-01", 120, n)
    spam = rng.random(n) < 0.3
    subjects, bodies = [], []
    for s in spam:
        bank = SPAM if s else HAM
        other = HAM if s else SPAM
        words = list(rng.choice(bank, rng.integers(1, 3))) + list(rng.choice(other, rng.integers(0, 2)))
        words += list(rng.choice(FILL, 2))
        rng.shuffle(words)
        bodies.append(" ".join(w for w in words if w))
        subjects.append(str(rng.choice(bank)) if rng.random() < 0.7 else str(rng.choice(FILL)))
    subject = np.array(subjects, dtype=object)
    body = np.array(bodies, dtype=object)
    subject[rng.random(n) < 0.1] = ""       # empty subject line
    subject[rng.random(n) < 0.03] = "   "   # whitespace only
    body[rng.random(n) < 0.05] = None       # body missing (attachment only)
    return pd.DataFrame({"received": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "sender_domain":
                         _skewed(rng, ["corp.example", "mail.example", "shop.example", "news.example"], n),
                         "subject": subject, "body": body, "is_spam": spam})


def sensors(n: int = 5000, seed: int = 4) -> pd.DataFrame:
    """Machine sensors: mostly numeric, heavy missingness (a sensor offline for days), a
    three-class condition in words. Multiclass classification."""
    rng = np.random.default_rng(seed)
    t = _times(rng, "2023-06-01", 200, n)
    wear = np.cumsum(rng.normal(0.02, 0.05, n)) % 10
    temp = 60 + 3 * wear + rng.normal(0, 4, n)
    vibration = 0.5 + 0.2 * wear + rng.gamma(2, 0.1, n)
    pressure = 100 - 0.8 * wear + rng.normal(0, 3, n)
    current = 12 + 0.3 * wear + rng.normal(0, 1, n)
    humidity = rng.uniform(20, 80, n)
    frame = pd.DataFrame({"measured_at": t.strftime("%Y-%m-%d %H:%M:%S"), "temperature": temp,
                          "vibration": vibration, "pressure": pressure, "current": current,
                          "humidity": humidity, "line": rng.choice(["L1", "L2", "L3"], n)})
    offline = (t.dayofyear % 17) < 4  # the pressure sensor is offline four days in seventeen
    frame.loc[offline, "pressure"] = np.nan
    for col in ("temperature", "vibration", "current", "humidity"):
        frame.loc[rng.random(n) < 0.25, col] = np.nan
    score = wear + rng.normal(0, 0.8, n)
    frame["condition"] = np.select([score < 3.5, score < 7], ["ok", "worn"], "failing")
    return frame


def products(n: int = 4000, seed: int = 5) -> pd.DataFrame:
    """Orders to classify into four departments, a fifth (``garden``) that appears only in the
    last months; integer-coded store ids. Multiclass classification with string classes."""
    rng = np.random.default_rng(seed)
    t = _times(rng, "2024-01-01", 210, n)
    late = t >= pd.Timestamp("2024-05-15")
    dept = rng.choice(["food", "toys", "tools", "books"], n, p=[0.4, 0.2, 0.2, 0.2]).astype(object)
    dept[late & (rng.random(n) < 0.15)] = "garden"
    price = pd.Series(dept).map({"food": 8, "toys": 25, "tools": 40, "books": 15, "garden": 30}).to_numpy() \
        * np.exp(rng.normal(0, 0.4, n))
    weight = pd.Series(dept).map({"food": 1.0, "toys": 0.6, "tools": 2.5, "books": 0.5, "garden": 4.0}
                                 ).to_numpy() * np.exp(rng.normal(0, 0.3, n))
    return pd.DataFrame({"ordered_at": t.strftime("%Y-%m-%d %H:%M:%S"), "store_id": rng.integers(1, 9, n),
                         "price": price.round(2), "weight_kg": weight.round(3),
                         "gift_wrap": rng.random(n) < 0.1, "department": dept})


def failure_rate(n: int = 3000, seed: int = 6) -> pd.DataFrame:
    """Hourly defect rates of a production line: a regression target on a scale of 10^-4 .. 10^-2."""
    rng = np.random.default_rng(seed)
    t = pd.date_range("2024-01-01", periods=n, freq="2h")
    load = rng.uniform(0.3, 1.0, n)
    ambient = 18 + 6 * np.sin(2 * np.pi * t.dayofyear / 365) + rng.normal(0, 2, n)
    shift = np.select([t.hour < 8, t.hour < 16], ["night", "day"], "evening")
    rate = 0.001 * np.exp(1.6 * load + 0.04 * (ambient - 18) + 0.3 * (shift == "night") + rng.normal(0, 0.2, n))
    return pd.DataFrame({"hour_start": t.strftime("%Y-%m-%d %H:%M"), "load": load.round(3),
                         "ambient_c": ambient.round(1), "shift": shift, "defect_rate": rate.round(6)})


def churn(n: int = 4000, seed: int = 7) -> pd.DataFrame:
    """Monthly subscription records with an integer-coded 0.0 / 1.0 churn flag, one month in which
    every record is a non-churner (the feed was filtered). Binary classification."""
    rng = np.random.default_rng(seed)
    t = _times(rng, "2023-01-01", 300, n)
    tenure = rng.gamma(2, 10, n).round()
    plan = _skewed(rng, ["basic", "plus", "pro"], n, 0.6)
    tickets = rng.poisson(1.2, n).astype(float)
    logit = -1.0 - 0.05 * tenure + 0.5 * tickets + 0.4 * (plan == "basic") + rng.normal(0, 0.3, n)
    churned = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    single = (t >= pd.Timestamp("2023-07-01")) & (t < pd.Timestamp("2023-08-01"))
    churned[single] = 0.0
    return pd.DataFrame({"period_end": t.strftime("%Y-%m-%d"), "tenure_months": tenure, "plan": plan,
                         "support_tickets": tickets, "monthly_fee": pd.Series(plan).map(
                             {"basic": 9.99, "plus": 19.99, "pro": 49.99}).to_numpy(), "churned": churned})
