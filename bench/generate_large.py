#!/usr/bin/env python3
"""Datasets larger than memory for bench/drift_large.sh: reference and current of N rows x
(10 numeric + 2 categorical), the columns of bench/generate.py, written 1M rows at a time
(Parquet row groups of 1M rows, CSV appended), so the generator itself stays small.

    python bench/generate_large.py OUT_DIR 50000000 [parquet|csv ...]
writes OUT_DIR/{ref,cur}_{N}.{parquet,csv}
"""
import os
import sys

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from generate import table  # noqa: E402

CHUNK = 1_000_000


def write(base, n, drift, seed, formats):
    rng = np.random.default_rng(seed)
    writers = {}
    try:
        for start in range(0, n, CHUNK):
            t = table(rng, min(CHUNK, n - start), drift)
            if "parquet" in formats:
                if "parquet" not in writers:
                    writers["parquet"] = pq.ParquetWriter(base + ".parquet", t.schema)
                writers["parquet"].write_table(t)
            if "csv" in formats:
                if "csv" not in writers:
                    writers["csv"] = pacsv.CSVWriter(base + ".csv", t.schema)
                writers["csv"].write_table(t)
    finally:
        for w in writers.values():
            w.close()


def main():
    out, n = sys.argv[1], int(sys.argv[2])
    formats = sys.argv[3:] or ["parquet", "csv"]
    os.makedirs(out, exist_ok=True)
    for side, drift, seed in (("ref", False, 1), ("cur", True, 2)):
        base = os.path.join(out, f"{side}_{n}")
        todo = [f for f in formats if not os.path.exists(f"{base}.{f}")]
        if todo:
            write(base, n, drift, seed * 7919 + n % 997, todo)
    print(f"datasets in {out}")


if __name__ == "__main__":
    main()
