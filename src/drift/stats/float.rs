//! Floating-point helpers shared by the Kolmogorov ([`super::kolmogorov`]) and Smirnov
//! ([`super::smirnov`]) distributions: clipping to a probability and exact power-of-two
//! scaling, which keeps long products in range without rounding.

/// `p` clamped to `[0, 1]`; NaN stays NaN.
pub(super) fn clip_prob(p: f64) -> f64 {
    if p.is_nan() { p } else { p.clamp(0.0, 1.0) }
}

/// `x * 2^e` without intermediate overflow/underflow for large |e|.
pub(super) fn ldexp(x: f64, e: i64) -> f64 {
    let mut x = x;
    let mut e = e;
    while e > 1000 {
        x *= 2f64.powi(1000);
        e -= 1000;
        if x.is_infinite() || x == 0.0 {
            return x;
        }
    }
    while e < -1000 {
        x *= 2f64.powi(-1000);
        e += 1000;
        if x == 0.0 || x.is_infinite() {
            return x;
        }
    }
    x * 2f64.powi(e as i32)
}

/// Decompose a positive finite `x` into `m * 2^e` with `m` in `[0.5, 1)`.
pub(super) fn frexp(x: f64) -> (f64, i64) {
    if x == 0.0 || !x.is_finite() {
        return (x, 0);
    }
    let bits = x.to_bits();
    let exp_bits = ((bits >> 52) & 0x7ff) as i64;
    if exp_bits == 0 {
        // subnormal: normalise first
        let (m, e) = frexp(x * 2f64.powi(54));
        return (m, e - 54);
    }
    let e = exp_bits - 1022;
    let m = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (m, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frexp_roundtrip() {
        for &x in &[1.0, 0.75, 3.0, 1e-310, 1e300, 0.5] {
            let (m, e) = frexp(x);
            assert!((0.5..1.0).contains(&m), "{x} -> {m}");
            assert_eq!(ldexp(m, e), x);
        }
    }

    #[test]
    fn clip_prob_keeps_nan() {
        assert_eq!(clip_prob(-0.5), 0.0);
        assert_eq!(clip_prob(1.5), 1.0);
        assert_eq!(clip_prob(0.25), 0.25);
        assert!(clip_prob(f64::NAN).is_nan());
    }
}
