#!/usr/bin/env python3
"""Reference cases for tests/drift_scipy.rs, computed with numpy + scipy.

Prints ONE JSON document on stdout (about 2 MB). Everything is seeded, so the
output is deterministic for a given numpy/scipy version.

  numeric      two samples + scipy.stats.ks_2samp(a, b) (method='auto')
               + the seed's PSI for a few (bins, smoothing) settings
  categorical  reference/current counts + chi2_contingency(correction=False)
               + Cramer's V + categorical PSI (seed formula over the union)
  kstwo        scipy.stats.kstwo.sf(d, n) on a grid covering every branch
  chi2_sf      scipy.stats.chi2.sf(x, dof) down to tiny tails

Sample values are rounded to a few decimals so that they print short and
parse back to the identical double on the Rust side.
"""

import json
import sys
import warnings

import numpy as np
import scipy
from scipy import stats
from scipy.stats.contingency import association

SEED = 20240607
MAX_BYTES = 3_000_000


def seed_psi(reference, current, n_bins=10, smoothing=0.001):
    """The seed's PSI, verbatim apart from the parameter names."""
    reference = np.asarray(reference, dtype=float)
    current = np.asarray(current, dtype=float)
    quantiles = np.percentile(reference, np.linspace(0, 100, n_bins + 1))
    quantiles[0] = -np.inf
    quantiles[-1] = np.inf
    ref_counts = np.histogram(reference, bins=quantiles)[0]
    cur_counts = np.histogram(current, bins=quantiles)[0]
    ref_pct = (ref_counts + smoothing) / (len(reference) + smoothing * n_bins)
    cur_pct = (cur_counts + smoothing) / (len(current) + smoothing * n_bins)
    return float(np.sum((cur_pct - ref_pct) * np.log(cur_pct / ref_pct)))


def categorical_psi(ref_counts, cur_counts, smoothing=0.001):
    cats = sorted(k for k in set(ref_counts) | set(cur_counts)
                  if ref_counts.get(k, 0) + cur_counts.get(k, 0) > 0)
    r = np.array([ref_counts.get(k, 0) for k in cats])
    c = np.array([cur_counts.get(k, 0) for k in cats])
    k = len(cats)
    rp = (r + smoothing) / (r.sum() + smoothing * k)
    cp = (c + smoothing) / (c.sum() + smoothing * k)
    return float(np.sum((cp - rp) * np.log(cp / rp)))


def to_json_list(x):
    x = np.asarray(x, dtype=float)
    if np.all(x == np.round(x)) and np.all(np.abs(x) < 2**53):
        return [int(v) for v in x]
    return [float(v) for v in x]


rng = np.random.default_rng(SEED)
numeric = []


def add_numeric(name, a, b, psi_settings=((10, 0.001),)):
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns when exact falls back to asymp
        res = stats.ks_2samp(a, b)
    numeric.append({
        "name": name,
        "a": to_json_list(a),
        "b": to_json_list(b),
        "ks_statistic": float(res.statistic),
        "ks_pvalue": float(res.pvalue),
        "psi": [{"bins": nb, "smoothing": s, "value": seed_psi(a, b, nb, s)}
                for nb, s in psi_settings],
    })


def normal(n, shift=0.0, scale=1.0, decimals=3):
    return np.round(rng.normal(shift, scale, n), decimals)


# --- the brief's fixed vectors
add_numeric("brief_1_100_vs_21_120", np.arange(1, 101), np.arange(21, 121))
add_numeric("brief_0_49_vs_10_79", np.arange(0, 50), np.arange(10, 80))

# --- exact path: max(n1, n2) <= 10,000
exact_sizes = [(1, 1), (1, 7), (3, 3), (5, 7), (10, 10), (20, 35), (50, 50), (60, 45),
               (100, 80), (300, 300), (700, 1000), (2000, 2000), (5000, 3000),
               (10000, 10000), (10000, 9000), (10000, 50)]
for i, (n1, n2) in enumerate(exact_sizes):
    for shift in (0.0, 0.15, 0.6):
        if n1 * n2 > 2e7 and shift > 0.3:
            continue  # keep the O(n1*n2*D) exact recursion cheap in debug builds
        settings = ((10, 0.001), (5, 0.01), (20, 0.001)) if i % 3 == 0 else ((10, 0.001),)
        add_numeric(f"exact_{n1}x{n2}_shift{shift}", normal(n1), normal(n2, shift), settings)

# ties: coarse rounding, small-integer (Poisson) data, mixed
add_numeric("ties_round1_400x300", normal(400, decimals=1), normal(300, 0.1, decimals=1))
add_numeric("ties_poisson_1000x1000", rng.poisson(1.5, 1000), rng.poisson(1.5, 1000))
add_numeric("ties_poisson_shift_800x900", rng.poisson(1.5, 800), rng.poisson(1.9, 900))
add_numeric("ties_poisson_3000x2500", rng.poisson(0.3, 3000), rng.poisson(0.35, 2500),
            ((10, 0.001), (4, 0.001), (20, 0.05)))
add_numeric("ties_binary_500x600", rng.integers(0, 2, 500), rng.integers(0, 2, 600))
# constant columns
add_numeric("constant_same_200x150", np.full(200, 2.5), np.full(150, 2.5))
add_numeric("constant_other_200x150", np.full(200, 2.5), np.full(150, 3.5))
add_numeric("constant_below_100x100", np.full(100, 5.0), np.full(100, 4.0))
add_numeric("constant_ref_vs_normal", np.full(300, 0.0), normal(250))
add_numeric("normal_vs_constant", normal(250), np.full(300, 0.0))
add_numeric("mostly_constant_ref", np.concatenate([np.zeros(900), normal(100)]),
            np.concatenate([np.zeros(800), normal(200)]))
# interleaved samples: D = 1/n, where scipy's exact computation fails and it
# falls back to the asymptotic distribution for many n
for n in (5, 7, 13, 14, 100):
    a = np.arange(n) * 2.0
    add_numeric(f"interleaved_{n}", a, a + 1)
# separated samples: tiny exact p-values
add_numeric("separated_30x40", normal(30), normal(40, 10.0))
add_numeric("separated_200x200", normal(200), normal(200, 10.0))

# --- asymptotic path: max(n1, n2) > 10,000 (total values per case <= 20,000)
asym = [
    (10001, 60, 0.0), (10001, 60, 0.4), (10001, 60, 1.5),     # n_eff <= 140
    (10500, 130, 0.0), (10500, 130, 0.35), (10500, 130, 0.9),
    (12000, 3000, 0.0), (12000, 3000, 0.05), (12000, 3000, 0.3),
    (16000, 4000, 0.02), (11000, 9000, 0.0), (11000, 9000, 0.1),
    (19000, 1000, 0.2), (15000, 5000, 1.0), (10001, 9999, 0.03),
]
for n1, n2, shift in asym:
    add_numeric(f"asym_{n1}x{n2}_shift{shift}", normal(n1), normal(n2, shift))
add_numeric("asym_ties_poisson_15000x5000", rng.poisson(2.0, 15000), rng.poisson(2.05, 5000),
            ((10, 0.001), (5, 0.001)))

# --- categorical
categorical = []


def add_categorical(name, ref_counts, cur_counts, smoothing=0.001):
    ref_counts = {k: int(v) for k, v in ref_counts.items()}
    cur_counts = {k: int(v) for k, v in cur_counts.items()}
    cats = sorted(k for k in set(ref_counts) | set(cur_counts)
                  if ref_counts.get(k, 0) + cur_counts.get(k, 0) > 0)
    table = np.array([[ref_counts.get(k, 0) for k in cats],
                      [cur_counts.get(k, 0) for k in cats]])
    res = stats.chi2_contingency(table, correction=False)
    v = None
    if len(cats) >= 2:
        v = float(association(table, method="cramer", correction=False))
    categorical.append({
        "name": name,
        "reference": ref_counts,
        "current": cur_counts,
        "chi2_statistic": float(res.statistic),
        "chi2_pvalue": float(res.pvalue),
        "dof": int(res.dof),
        "cramers_v": v,
        "smoothing": smoothing,
        "psi": categorical_psi(ref_counts, cur_counts, smoothing),
    })


def multinomial_counts(n, probs, prefix="c"):
    counts = rng.multinomial(n, probs)
    return {f"{prefix}{i}": int(c) for i, c in enumerate(counts)}


add_categorical("brief_table", {"a": 40, "b": 40, "c": 20}, {"a": 30, "b": 50, "c": 20})
for k in (1, 2, 3, 5, 10, 30):
    p = rng.dirichlet(np.ones(k) * 2.0)
    for n_ref, n_cur in ((50, 60), (1000, 800), (100000, 120000)):
        add_categorical(f"same_k{k}_{n_ref}x{n_cur}", multinomial_counts(n_ref, p),
                        multinomial_counts(n_cur, p))
        q = 0.9 * p + 0.1 * rng.dirichlet(np.ones(k))
        add_categorical(f"shift_k{k}_{n_ref}x{n_cur}", multinomial_counts(n_ref, p),
                        multinomial_counts(n_cur, q), 0.01 if k == 5 else 0.001)
# new category in current, vanished category, disjoint supports, zero columns
base = np.array([0.5, 0.3, 0.2])
add_categorical("new_category", multinomial_counts(5000, base),
                multinomial_counts(5000, np.append(base * 0.95, 0.05)))
add_categorical("vanished_category", multinomial_counts(3000, np.append(base * 0.9, 0.1)),
                multinomial_counts(3000, base))
add_categorical("disjoint", {"x": 100, "y": 50}, {"z": 70})
add_categorical("zero_entries", {"a": 10, "b": 0, "c": 5}, {"a": 12, "c": 9, "d": 0})
add_categorical("tiny_p_large_n", multinomial_counts(200000, base),
                multinomial_counts(200000, np.array([0.47, 0.31, 0.22])))
add_categorical("moderate_tail", {"a": 520, "b": 480}, {"a": 420, "b": 580})

# --- kstwo.sf grid
kstwo = []
for n in (1, 2, 3, 5, 10, 37, 60, 100, 139, 140, 141, 200, 1000, 2400, 5000, 10000,
          60000, 99999, 100000, 100001, 500000, 2_000_000):
    ds = {0.5 / n, 0.75 / n, 1.0 / n, 0.3, 0.5, 0.6, 0.9, 0.999}
    ds |= {z / np.sqrt(n) for z in (0.2, 0.4, 0.6, 0.8, 0.9, 1.0, 1.2, 1.48, 1.6, 2.0,
                                    2.5, 3.0, 4.0, 5.0, 6.0, 8.0)}
    for d in sorted(ds):
        if 0.0 < d < 1.0:
            kstwo.append({"n": n, "d": float(d), "sf": float(stats.kstwo.sf(d, n))})

# --- chi2.sf down to tiny tails
chi2_sf = []
for dof in (1, 2, 3, 4, 5, 9, 10, 29, 50, 100, 499):
    for p in (0.9, 0.5, 0.05, 1e-3, 1e-6, 1e-9, 1e-12, 1e-15, 1e-30, 1e-100):
        x = float(np.round(stats.chi2.isf(p, dof), 6))
        chi2_sf.append({"x": x, "dof": dof, "sf": float(stats.chi2.sf(x, dof))})

doc = {
    "meta": {"numpy": np.__version__, "scipy": scipy.__version__, "seed": SEED},
    "numeric": numeric,
    "categorical": categorical,
    "kstwo": kstwo,
    "chi2_sf": chi2_sf,
}
text = json.dumps(doc, separators=(",", ":"), allow_nan=False)
if len(text) > MAX_BYTES:
    sys.exit(f"scipy_cases.py: output is {len(text)} bytes, over the {MAX_BYTES} budget")
print(f"scipy_cases.py: {len(numeric)} numeric, {len(categorical)} categorical, "
      f"{len(kstwo)} kstwo, {len(chi2_sf)} chi2_sf cases, {len(text)} bytes",
      file=sys.stderr)
sys.stdout.write(text)
sys.stdout.write("\n")
