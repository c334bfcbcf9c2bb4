#!/usr/bin/env python3
"""Benchmark datasets: reference and current, N rows x (10 numeric + 2 categorical), as Parquet
(snappy, pyarrow defaults) and CSV. Deterministic (numpy seed). Three numeric features and
one categorical feature drift in the current data.

    python bench/generate.py OUT_DIR 100000 1000000
writes OUT_DIR/{ref,cur}_{N}.{parquet,csv}
"""
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

NUMERIC = [f"num_{i}" for i in range(10)]
CATEGORICAL = ["cat_small", "cat_large"]
SMALL = np.array(["web", "mobile", "pos", "atm", "other"])
LARGE = np.array([f"merchant_{i:02d}" for i in range(40)])


def table(rng, n, drift):
    cols = {}
    shifts = {"num_0": 0.3, "num_3": 0.15, "num_7": 0.5} if drift else {}
    for i, name in enumerate(NUMERIC):
        s = shifts.get(name, 0.0)
        kind = i % 4
        if kind == 0:
            v = rng.normal(s, 1.0, n)
        elif kind == 1:
            v = np.round(rng.lognormal(3.5 + s, 0.8, n), 2)
        elif kind == 2:
            v = rng.gamma(2.0, 100.0 * (1 + s), n).astype(np.int64).astype(np.float64)
        else:
            v = rng.uniform(0.0 + s, 1.0 + s, n)
        cols[name] = v
    p_small = [0.4, 0.3, 0.2, 0.07, 0.03]
    if drift:
        p_small = [0.3, 0.4, 0.2, 0.07, 0.03]
    cols["cat_small"] = rng.choice(SMALL, n, p=p_small)
    cols["cat_large"] = rng.choice(LARGE, n)
    return pa.table(cols)


def main():
    out = sys.argv[1]
    sizes = [int(x) for x in sys.argv[2:]] or [100_000, 1_000_000]
    os.makedirs(out, exist_ok=True)
    for n in sizes:
        for side, drift, seed in (("ref", False, 1), ("cur", True, 2)):
            base = os.path.join(out, f"{side}_{n}")
            if os.path.exists(base + ".parquet") and os.path.exists(base + ".csv"):
                continue
            t = table(np.random.default_rng(seed * 1000 + n % 997), n, drift)
            pq.write_table(t, base + ".parquet")
            pacsv.write_csv(t, base + ".csv")
    print(f"datasets in {out}")


if __name__ == "__main__":
    main()
