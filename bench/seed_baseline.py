#!/usr/bin/env python3
"""The seed pipeline (the article's own code): pyarrow read, numpy percentile/histogram PSI,
scipy.stats.ks_2samp per numeric feature; chi-square via scipy.stats.chi2_contingency for the
categoricals (category counts with pyarrow's value_counts).

    python bench/seed_baseline.py REF CUR     (CSV or Parquet by extension)
Prints one JSON line: drifted features and in-process timings.
"""
import json
import sys
import time

T0 = time.perf_counter()
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.csv as pacsv  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from scipy import stats  # noqa: E402

IMPORT_S = time.perf_counter() - T0


# ---- the seed's code, verbatim ----
def compute_psi(reference, current, n_bins=10):
    quantiles = np.percentile(reference, np.linspace(0, 100, n_bins + 1))
    quantiles[0] = -np.inf
    quantiles[-1] = np.inf
    ref_counts = np.histogram(reference, bins=quantiles)[0]
    cur_counts = np.histogram(current, bins=quantiles)[0]
    ref_pct = (ref_counts + 0.001) / (len(reference) + 0.001 * n_bins)
    cur_pct = (cur_counts + 0.001) / (len(current) + 0.001 * n_bins)
    psi = np.sum((cur_pct - ref_pct) * np.log(cur_pct / ref_pct))
    return float(psi)


def detect_drift(reference_data, current_data, psi_threshold=0.2):
    reports = []
    for feature_name in reference_data:
        if feature_name not in current_data:
            continue
        ref = reference_data[feature_name]
        cur = current_data[feature_name]
        psi = compute_psi(ref, cur)
        ks_stat, p_value = stats.ks_2samp(ref, cur)
        drift_detected = psi > psi_threshold or p_value < 0.05
        severity = "high" if psi > 0.25 else "medium" if drift_detected else "ok"
        reports.append((feature_name, drift_detected, psi, ks_stat, p_value, severity))
    return reports
# ---- end of the seed's code ----


def read(path):
    if path.endswith(".csv"):
        return pacsv.read_csv(path)
    return pq.read_table(path)


def counts(col):
    vc = pc.value_counts(col)
    return dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()))


def main():
    t0 = time.perf_counter()
    ref, cur = read(sys.argv[1]), read(sys.argv[2])
    t_read = time.perf_counter() - t0
    numeric = [f.name for f in ref.schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)]
    categorical = [f.name for f in ref.schema if f.name not in numeric]
    t1 = time.perf_counter()
    reports = detect_drift(
        {c: ref.column(c).to_numpy() for c in numeric},
        {c: cur.column(c).to_numpy() for c in numeric},
    )
    cat = []
    for c in categorical:
        r, k = counts(ref.column(c)), counts(cur.column(c))
        keys = sorted(set(r) | set(k))
        table = np.array([[r.get(x, 0) for x in keys], [k.get(x, 0) for x in keys]])
        chi2, p, dof, _ = stats.chi2_contingency(table, correction=False)
        cat.append((c, p < 0.05, chi2, p))
    t_compute = time.perf_counter() - t1
    print(json.dumps({
        "drifted": [r[0] for r in reports if r[1]] + [c[0] for c in cat if c[1]],
        "import_s": IMPORT_S, "read_s": t_read, "compute_s": t_compute,
    }))


if __name__ == "__main__":
    main()
