#!/usr/bin/env python3
"""Writes the example datasets of examples/fraud-detector.yaml (numpy only, deterministic).

    python3 examples/data/generate.py            # writes next to this script

- reference.csv: what the model was trained on (5,000 rows).
- current.csv:   live data (5,000 rows) where `amount` has drifted (about 1.65x larger,
                 lognormal location +0.5); every other feature keeps its distribution.
- labelled.csv:  live data with the true label (3,000 rows); fraud patterns changed, so the
                 model's accuracy falls below the 0.85 threshold (concept drift).

Columns: amount, merchant_risk, account_age_days, hour (numerical), channel (categorical),
prediction (the model's fraud score in [0, 1]); labelled.csv adds label (0/1).
"""
import os

import numpy as np

SEED = 20261126
CHANNELS = np.array(["web", "mobile", "pos", "atm"])
CHANNEL_P = [0.40, 0.30, 0.22, 0.08]
CHANNEL_RISK = {"web": 0.5, "mobile": 0.3, "pos": -0.4, "atm": 0.1}


def features(rng, n, amount_shift=0.0):
    amount = np.round(rng.lognormal(mean=3.8 + amount_shift, sigma=0.9, size=n), 2)
    merchant_risk = np.round(rng.beta(2.0, 5.0, size=n), 4)
    account_age_days = rng.gamma(shape=2.0, scale=300.0, size=n).astype(int)
    hour = (np.round(rng.normal(14.0, 5.0, size=n)) % 24).astype(int)
    channel = rng.choice(CHANNELS, size=n, p=CHANNEL_P)
    return amount, merchant_risk, account_age_days, hour, channel


def model_score(amount, merchant_risk, account_age_days, hour, channel):
    """The deployed model: a fixed logistic score."""
    night = ((hour < 6) | (hour >= 22)).astype(float)
    ch = np.array([CHANNEL_RISK[c] for c in channel])
    z = (
        -1.6
        + 0.9 * (np.log(amount) - 3.8)
        + 4.0 * (merchant_risk - 0.28)
        - 0.0012 * (account_age_days - 600)
        + 0.8 * night
        + ch
    )
    return 1.0 / (1.0 + np.exp(-z))


def write(path, header, columns):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(",".join(header) + "\n")
        for row in zip(*columns):
            f.write(",".join(fmt(v) for v in row) + "\n")


def fmt(v):
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.6g}"
    return str(v)


def main():
    out = os.path.dirname(os.path.abspath(__file__))
    rng = np.random.default_rng(SEED)
    header = ["amount", "merchant_risk", "account_age_days", "hour", "channel", "prediction"]

    ref = features(rng, 5000)
    write(os.path.join(out, "reference.csv"), header, [*ref, model_score(*ref)])

    cur = features(rng, 5000, amount_shift=0.5)
    write(os.path.join(out, "current.csv"), header, [*cur, model_score(*cur)])

    lab = features(rng, 3000, amount_shift=0.5)
    pred = model_score(*lab)
    # the world changed: fraud now concentrates on young accounts and mobile, not on amount
    amount, merchant_risk, age, hour, channel = lab
    z_true = (
        -2.0
        + 0.9 * (np.log(amount) - 3.8)
        + 4.0 * (merchant_risk - 0.28)
        - 0.002 * (age - 600)
        + 0.8 * (channel == "mobile")
    )
    label = (rng.random(3000) < 1.0 / (1.0 + np.exp(-z_true))).astype(int)
    write(os.path.join(out, "labelled.csv"), header + ["label"], [*lab, pred, label])
    acc = float(np.mean((pred >= 0.5).astype(int) == label))
    print(f"wrote reference.csv, current.csv, labelled.csv to {out} (labelled accuracy {acc:.3f})")


if __name__ == "__main__":
    main()
