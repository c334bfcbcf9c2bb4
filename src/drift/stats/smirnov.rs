//! One-sided Smirnov survival function, `scipy.special.smirnov(n, x)`.
//!
//! scipy evaluates the Birnbaum–Tingey sum in double-double arithmetic
//! (`xsf/cephes/kolmogorov.h`). All terms of the lower sum are positive, so
//! here each term is evaluated in log space with the binomial coefficient kept
//! as mantissa/exponent; that keeps ~1e-10 relative accuracy in plain `f64`,
//! which is what the KS p-value needs. Same special cases and the same
//! early-termination rule as scipy.

use std::f64::consts::LN_2;

use super::float::{clip_prob, frexp};

/// cephes `MINLOG` = log(2^-1022).
const CEPHES_MINLOG: f64 = -7.083_964_185_322_641e2;
const SMIRNOV_MAX_COMPUTE_N: u64 = 1_000_000;

/// floor(n*x) and its fractional part, computed exactly (cephes `modNX`).
fn mod_nx(n: u64, x: f64) -> (i64, f64) {
    let nf = n as f64;
    let hi = nf * x;
    let lo = nf.mul_add(x, -hi); // exact error of the product
    let mut fl = hi.floor();
    let mut alpha = (hi - fl) + lo;
    if alpha < 0.0 {
        fl -= 1.0;
        alpha += 1.0;
    }
    if alpha >= 1.0 {
        fl += 1.0;
        alpha = 0.0;
    }
    (fl as i64, alpha)
}

/// Survival function of the one-sided Smirnov statistic D_n^+:
/// `scipy.special.smirnov(n, x)` = Pr(D_n^+ >= x). `NaN` outside
/// `n >= 1, 0 <= x <= 1`.
pub fn smirnov_sf(n: u64, x: f64) -> f64 {
    if n == 0 || !(0.0..=1.0).contains(&x) {
        return f64::NAN;
    }
    if n == 1 {
        return 1.0 - x;
    }
    if x == 0.0 {
        return 1.0;
    }
    if x == 1.0 {
        return 0.0;
    }
    let nf = n as f64;
    let ni = i64::try_from(n).unwrap_or(i64::MAX);
    let (nxfl, alpha) = mod_nx(n, x);
    if nxfl == 0 || (nxfl == 1 && alpha == 0.0) {
        // x <= 1/n: cdf = x (1+x)^(n-1)
        let t = ((nf - 1.0) * x.ln_1p()).exp();
        return clip_prob(1.0 - x * t);
    }
    if -2.0 * nf * x * x < CEPHES_MINLOG {
        return 0.0;
    }
    if nxfl >= ni - 1 {
        return clip_prob((nf * (-x).ln_1p()).exp());
    }
    if n > SMIRNOV_MAX_COMPUTE_N {
        let logp = -(6.0 * nf * x + 1.0).powi(2) / 18.0 / nf;
        let sf = if logp < -LN_2 {
            logp.exp()
        } else {
            1.0 + logp.exp_m1()
        };
        return clip_prob(sf);
    }
    clip_prob(lower_sum(n, x, nxfl, alpha))
}

/// The Birnbaum–Tingey lower sum
/// `sf = sum_{v=0}^{n-nxfl-1} C(n,v) x (x+v/n)^(v-1) (1-x-v/n)^(n-v)`, with
/// `(nxfl, alpha)` = [`mod_nx`]`(n, x)`, stopping as scipy does once the terms are negligible.
fn lower_sum(n: u64, x: f64, nxfl: i64, alpha: f64) -> f64 {
    let nf = n as f64;
    let ni = i64::try_from(n).unwrap_or(i64::MAX);
    let n_terms = ni - nxfl;
    let vmid = ni / 2;
    let ln_x = x.ln();
    let ln_n = nf.ln();
    // Binomial coefficient C(n, v) = cman * 2^cexp with cman in [0.5, 1).
    let mut cman = 1.0f64;
    let mut cexp: i64 = 0;
    let mut sum = 0.0f64;
    for v in 0..n_terms {
        if v > 0 {
            cman *= (ni - v + 1) as f64 / v as f64;
            let (m, e) = frexp(cman);
            cman = m;
            cexp += e;
        }
        // y1 = x + v/n = (nxfl + v + alpha)/n ; y2 = 1 - y1 = (n - nxfl - v - alpha)/n
        let num1 = (nxfl + v) as f64 + alpha;
        let num2 = (ni - nxfl - v) as f64 - alpha;
        let y1 = num1 / nf;
        let ln_y1 = if v == 0 { ln_x } else { num1.ln() - ln_n };
        let ln_y2 = if y1 < 0.5 {
            (-y1).ln_1p()
        } else {
            num2.ln() - ln_n
        };
        let ln_term = cman.ln()
            + cexp as f64 * LN_2
            + ln_x
            + (v as f64 - 1.0) * ln_y1
            + (nf - v as f64) * ln_y2;
        let term = ln_term.exp();
        if term.is_finite() && term != 0.0 {
            sum += term;
        }
        if term != 0.0 {
            if 4.0 * (n_terms - v) as f64 * term < f64::EPSILON * sum && v != n_terms - 1 {
                break;
            }
        } else if v > vmid {
            break;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(a: f64, b: f64) -> f64 {
        if a == b {
            0.0
        } else {
            (a - b).abs() / b.abs().max(1e-300)
        }
    }

    #[test]
    fn mod_nx_is_exact() {
        // 0.1 * 30 = 3.0000000000000004 in f64 arithmetic, but the exact
        // product of the double 0.1 and 30 is slightly above 3.
        let (fl, alpha) = mod_nx(30, 0.1);
        assert_eq!(fl, 3);
        assert!(alpha > 0.0 && alpha < 1e-15);
        assert_eq!(mod_nx(4, 0.25), (1, 0.0));
    }

    const SMIRNOV_CASES: [(u64, f64, f64); 11] = [
        (5, 0.3, 0.34282),
        (10, 0.35, 0.066_986_594_066_015_65),
        (100, 0.05, 0.587_145_338_080_533_7),
        (100, 0.3, 8.859_934_946_331_458e-9),
        (140, 0.5, 3.434_650_219_138_493e-33),
        (1000, 0.05, 0.006_506_037_390_545_166),
        (1000, 0.1, 1.851_843_548_408_855_4e-9),
        (20000, 0.02, 1.109_063_503_502_487_2e-7),
        (500_000, 0.003, 1.231_615_061_959_337_7e-4),
        (999_999, 0.002, 3.350_165_353_074_802e-4),
        (3, 0.5, 0.166_666_666_666_666_66),
    ];

    // Reference values: scipy 1.17.1 scipy.special.smirnov(n, x)
    #[test]
    fn smirnov_matches_scipy() {
        assert!(rel(smirnov_sf(2, 0.25), 0.6875) < 1e-15);
        assert!(rel(smirnov_sf(4, 0.8), 0.2f64.powi(4)) < 1e-12);
        let cases: &[(u64, f64, f64)] = &SMIRNOV_CASES;
        for &(n, x, want) in cases {
            let got = smirnov_sf(n, x);
            assert!(
                rel(got, want) < 1e-9,
                "n={n} x={x}: got {got:e}, want {want:e}"
            );
        }
        assert_eq!(smirnov_sf(3, 1.0), 0.0);
        assert_eq!(smirnov_sf(3, 0.0), 1.0);
        assert!(smirnov_sf(3, 1.5).is_nan());
        assert!(smirnov_sf(0, 0.5).is_nan());
    }
}
