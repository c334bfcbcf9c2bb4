#!/usr/bin/env python3
"""Evidently 0.7 data-drift report with KS forced for numeric and chi-square for categorical
columns (its default at this size would be Wasserstein / Jensen-Shannon).

    python bench/evidently_baseline.py REF CUR    (CSV or Parquet by extension)
Prints one JSON line: drifted columns and in-process timings.
"""
import json
import sys
import time

T0 = time.perf_counter()
import pandas as pd  # noqa: E402
from evidently import DataDefinition, Dataset, Report  # noqa: E402
from evidently.presets import DataDriftPreset  # noqa: E402

IMPORT_S = time.perf_counter() - T0


def read(path):
    return pd.read_csv(path) if path.endswith(".csv") else pd.read_parquet(path)


def main():
    t0 = time.perf_counter()
    ref, cur = read(sys.argv[1]), read(sys.argv[2])
    t_read = time.perf_counter() - t0
    numeric = [c for c in ref.columns if pd.api.types.is_numeric_dtype(ref[c])]
    categorical = [c for c in ref.columns if c not in numeric]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    t1 = time.perf_counter()
    report = Report([DataDriftPreset(num_method="ks", cat_method="chisquare")])
    snapshot = report.run(
        reference_data=Dataset.from_pandas(ref, data_definition=definition),
        current_data=Dataset.from_pandas(cur, data_definition=definition),
    )
    result = snapshot.dict()
    t_compute = time.perf_counter() - t1
    drifted = []
    for m in result.get("metrics", []):
        config = m.get("config", {})
        if config.get("type", "").endswith(":ValueDrift"):
            # ks and chisquare: the value is the p-value, drift below the threshold
            if float(m["value"]) < float(config.get("threshold", 0.05)):
                drifted.append(config["column"])
    print(json.dumps({
        "drifted": drifted, "import_s": IMPORT_S, "read_s": t_read, "compute_s": t_compute,
    }))


if __name__ == "__main__":
    main()
