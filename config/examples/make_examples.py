"""Generate the two small text datasets of the example configs (deterministic, seed 0).

    python config/examples/make_examples.py

reviews.csv: product reviews, free-text review -> star rating (regression).
tickets.csv: support tickets, free-text message -> category (classification).
Synthetic (phrase banks with noise), small enough to commit; they exist to show that a text
column declared in the config is vectorised (TF-IDF) by the pipeline with no code change.
"""

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
rng = np.random.default_rng(0)

GOOD = ["works perfectly", "great value", "exceeded my expectations", "would buy again", "excellent quality",
        "fast delivery and well packed", "my kids love it", "sturdy and well made"]
BAD = ["broke after a week", "waste of money", "arrived damaged", "does not work as described",
       "cheap plastic", "returned it", "stopped working", "very disappointed"]
FILLER = ["bought this last month", "for my office", "as a gift", "after reading reviews", "on sale",
          "to replace an old one", "", "for the kitchen"]


def reviews(n: int = 1200) -> pd.DataFrame:
    sentiment = rng.normal(0, 1.2, n)
    texts, ratings = [], []
    for s in sentiment:
        k_good = max(0, round(1.5 + s))
        k_bad = max(0, round(1.5 - s))
        words = list(rng.choice(GOOD, k_good)) + list(rng.choice(BAD, k_bad)) + [rng.choice(FILLER)]
        rng.shuffle(words)
        texts.append(", ".join(w for w in words if w).capitalize() + ".")
        ratings.append(float(np.clip(round(3 + 1.2 * s + rng.normal(0, 0.4)), 1, 5)))
    df = pd.DataFrame({
        "review_time": pd.date_range("2023-01-01", periods=n, freq="7h").strftime("%Y-%m-%d %H:%M"),
        "product_category": rng.choice(["books", "electronics", "kitchen", "toys"], n),
        "verified_purchase": rng.choice(["yes", "no"], n, p=[0.8, 0.2]),
        "helpful_votes": rng.poisson(2, n).astype(float),
        "review_text": texts,
        "rating": ratings,
    })
    df.loc[rng.random(n) < 0.05, "helpful_votes"] = np.nan
    return df


TOPICS = {
    "billing": ["charged twice", "refund for my invoice", "wrong amount on my bill", "update my credit card",
                "cancel the subscription fee"],
    "technical": ["app crashes on start", "error 500 when saving", "cannot connect to the server",
                  "page loads forever", "sync fails with timeout"],
    "account": ["reset my password", "change the email on my account", "locked out after login attempts",
                "delete my profile", "two factor code not arriving"],
    "shipping": ["package not delivered", "tracking number does not work", "parcel arrived late",
                 "change delivery address", "order stuck in transit"],
}
OPENERS = ["Hello,", "Hi team,", "Urgent:", "Good morning,", "", "Please help,"]


def tickets(n: int = 1200) -> pd.DataFrame:
    categories = rng.choice(list(TOPICS), n, p=[0.3, 0.3, 0.2, 0.2])
    messages = []
    for cat in categories:
        main = rng.choice(TOPICS[cat])
        other = rng.choice(TOPICS[rng.choice(list(TOPICS))]) if rng.random() < 0.2 else ""
        messages.append(" ".join(p for p in [rng.choice(OPENERS), main, other, "thanks"] if p))
    return pd.DataFrame({
        "created_at": pd.date_range("2024-03-01", periods=n, freq="3h").strftime("%Y-%m-%dT%H:%M:%SZ"),
        "channel": rng.choice(["email", "chat", "phone"], n),
        "customer_tier": rng.choice(["free", "pro", "enterprise"], n, p=[0.6, 0.3, 0.1]),
        "message": messages,
        "category": categories,
    })


if __name__ == "__main__":
    reviews().to_csv(HERE / "reviews.csv", index=False)
    tickets().to_csv(HERE / "tickets.csv", index=False)
