//! Inline SVG charts of one feature's two distributions, overlaid: per bin (or category) a
//! wide reference bar and, over it, a narrower current bar, both as shares of their side's
//! non-missing values. Numeric features get vertical bars over the PSI bins (the reference's
//! quantiles, so the reference bars are about level and the current bars show where the
//! mass moved); categorical features get one horizontal row per category.

use std::fmt::Write as _;

use super::{CURRENT_COLOUR, REFERENCE_COLOUR, compact, escape, text};
use crate::drift::stats::Histogram;

/// Width of every chart, in pixels.
pub const WIDTH: f64 = 600.0;
/// Longest category label drawn (characters).
const CATEGORY_LABEL: usize = 22;

/// One bar pair: a label, both counts, the tooltip's description of the bin.
struct Pair {
    label: String,
    reference: u64,
    current: u64,
    tooltip: String,
}

/// The chart of a histogram (empty when it has no bins).
pub fn chart(histogram: &Histogram) -> String {
    match histogram {
        Histogram::Numeric {
            edges,
            reference,
            current,
            reference_range,
            current_range,
        } => numeric(edges, reference, current, reference_range, current_range),
        Histogram::Categorical {
            categories,
            reference,
            current,
            other_categories,
            other_reference,
            other_current,
        } => {
            let mut pairs: Vec<Pair> = categories
                .iter()
                .zip(reference.iter().zip(current))
                .map(|(name, (&r, &c))| Pair {
                    label: format!(
                        "{}{}",
                        text(name, CATEGORY_LABEL),
                        if r == 0 { " (new)" } else { "" }
                    ),
                    reference: r,
                    current: c,
                    tooltip: text(name, 200),
                })
                .collect();
            if *other_categories > 0 {
                pairs.push(Pair {
                    label: format!("{other_categories} other"),
                    reference: *other_reference,
                    current: *other_current,
                    tooltip: format!("{other_categories} less frequent categories together"),
                });
            }
            categorical(&pairs)
        }
    }
}

fn share(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 / total as f64
    }
}

/// The axis maximum and tick step for shares up to `max` (at most 5 ticks).
fn axis(max: f64) -> (f64, f64) {
    const STEPS: [f64; 8] = [0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0];
    let step = STEPS
        .iter()
        .copied()
        .find(|s| max <= s * 5.0)
        .unwrap_or(1.0);
    let top = ((max / step - 1e-9).ceil() * step).clamp(step, 1.0);
    (top, step)
}

/// Legend (top right): the two swatches with their sides' totals.
fn legend(out: &mut String, total_r: u64, total_c: u64) {
    let x = WIDTH - 320.0;
    let _ = write!(
        out,
        r#"<g class="legend" font-size="12"><rect x="{x}" y="4" width="14" height="14" fill="{REFERENCE_COLOUR}"/><text x="{}" y="15">reference (n={total_r})</text><rect x="{}" y="7" width="14" height="8" fill="{CURRENT_COLOUR}"/><text x="{}" y="15">current (n={total_c})</text></g>"#,
        x + 19.0,
        x + 165.0,
        x + 184.0,
    );
}

/// Vertical bars over the PSI bins; edge values at the bin boundaries, the data's range at
/// both ends.
fn numeric(
    edges: &[f64],
    reference: &[u64],
    current: &[u64],
    reference_range: &[f64; 2],
    current_range: &[f64; 2],
) -> String {
    let low = reference_range[0].min(current_range[0]);
    let high = reference_range[1].max(current_range[1]);
    let n = reference.len();
    let bound = |i: usize| match i {
        0 => low,
        i if i >= n => high,
        i => edges.get(i - 1).copied().unwrap_or(f64::NAN),
    };
    let pairs: Vec<Pair> = (0..n)
        .map(|i| {
            let close = if i + 1 == n { "]" } else { ")" };
            Pair {
                label: String::new(),
                reference: reference[i],
                current: current.get(i).copied().unwrap_or(0),
                tooltip: format!(
                    "bin {}: [{}, {}{close}",
                    i + 1,
                    compact(bound(i)),
                    compact(bound(i + 1))
                ),
            }
        })
        .collect();
    let labels: Vec<String> = (0..=n).map(|i| compact(bound(i))).collect();
    vertical(&pairs, &labels)
}

/// Bars standing on an x axis with `labels` at the `pairs.len() + 1` slot boundaries.
fn vertical(pairs: &[Pair], labels: &[String]) -> String {
    let (height, left, right, top, bottom) = (250.0, 50.0, 24.0, 26.0, 44.0);
    let plot_w = WIDTH - left - right;
    let plot_h = height - top - bottom;
    let total_r: u64 = pairs.iter().map(|p| p.reference).sum();
    let total_c: u64 = pairs.iter().map(|p| p.current).sum();
    let max = pairs
        .iter()
        .map(|p| share(p.reference, total_r).max(share(p.current, total_c)))
        .fold(0.0, f64::max);
    let (ymax, step) = axis(max);
    let y = |s: f64| top + plot_h * (1.0 - s / ymax);
    let mut out = format!(
        r#"<svg class="chart numeric" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="reference and current shares per PSI bin">"#
    );
    legend(&mut out, total_r, total_c);
    let ticks = (ymax / step).round() as usize;
    for t in 0..=ticks {
        let s = t as f64 * step;
        let _ = write!(
            out,
            r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#e3e3e3"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end" fill="#555">{:.0}%</text>"##,
            WIDTH - right,
            left - 6.0,
            y(s) + 4.0,
            s * 100.0,
            y = y(s),
        );
    }
    let slot = plot_w / pairs.len().max(1) as f64;
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let rotate = longest as f64 * 7.0 > slot - 4.0;
    for (i, p) in pairs.iter().enumerate() {
        let x0 = left + slot * i as f64;
        bar_pair_vertical(&mut out, p, x0, slot, &y, (total_r, total_c));
    }
    for (i, l) in labels.iter().enumerate() {
        let x = left + slot * i as f64;
        let ly = top + plot_h + 16.0;
        let transform = if rotate {
            format!(r#" transform="rotate(-35 {x:.1} {ly:.1})" text-anchor="end""#)
        } else {
            r#" text-anchor="middle""#.to_owned()
        };
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}" stroke="#999"/><text x="{x:.1}" y="{ly:.1}" font-size="11" fill="#333"{transform}>{}</text>"##,
            top + plot_h,
            top + plot_h + 4.0,
            escape(l)
        );
    }
    let _ = write!(
        out,
        r##"<line x1="{left}" x2="{}" y1="{b:.1}" y2="{b:.1}" stroke="#777"/></svg>"##,
        WIDTH - right,
        b = top + plot_h
    );
    out
}

/// One slot: the wide reference bar, the narrow current bar over it, a tooltip on both.
fn bar_pair_vertical(
    out: &mut String,
    p: &Pair,
    x0: f64,
    slot: f64,
    y: &dyn Fn(f64) -> f64,
    (total_r, total_c): (u64, u64),
) {
    let (sr, sc) = (share(p.reference, total_r), share(p.current, total_c));
    let base = y(0.0);
    let tip = format!(
        "{}: reference {:.1}% ({}), current {:.1}% ({})",
        p.tooltip,
        sr * 100.0,
        p.reference,
        sc * 100.0,
        p.current
    );
    let _ = write!(
        out,
        r#"<g><title>{tip}</title><rect class="ref" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{REFERENCE_COLOUR}"/><rect class="cur" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{CURRENT_COLOUR}"/></g>"#,
        x0 + slot * 0.08,
        y(sr),
        slot * 0.84,
        base - y(sr),
        x0 + slot * 0.3,
        y(sc),
        slot * 0.4,
        base - y(sc),
    );
}

/// One row per category: the label, the wide reference bar, the narrow current bar over it,
/// both shares written at the right.
fn categorical(pairs: &[Pair]) -> String {
    let (row, left, right, top) = (24.0, 170.0, 110.0, 30.0);
    let height = top + row * pairs.len() as f64 + 26.0;
    let plot_w = WIDTH - left - right;
    let total_r: u64 = pairs.iter().map(|p| p.reference).sum();
    let total_c: u64 = pairs.iter().map(|p| p.current).sum();
    let max = pairs
        .iter()
        .map(|p| share(p.reference, total_r).max(share(p.current, total_c)))
        .fold(0.0, f64::max);
    let (xmax, step) = axis(max);
    let x = |s: f64| left + plot_w * s / xmax;
    let mut out = format!(
        r#"<svg class="chart categorical" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="reference and current shares per category">"#
    );
    legend(&mut out, total_r, total_c);
    let bottom = top + row * pairs.len() as f64;
    for t in 0..=(xmax / step).round() as usize {
        let s = t as f64 * step;
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{top}" y2="{bottom}" stroke="#e3e3e3"/><text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="#555">{:.0}%</text>"##,
            bottom + 15.0,
            s * 100.0,
            x = x(s),
        );
    }
    for (i, p) in pairs.iter().enumerate() {
        let y0 = top + row * i as f64;
        let (sr, sc) = (share(p.reference, total_r), share(p.current, total_c));
        let _ = write!(
            out,
            r##"<g><title>{}: reference {:.1}% ({}), current {:.1}% ({})</title><text x="{:.1}" y="{:.1}" font-size="12" text-anchor="end" fill="#222">{}</text><rect class="ref" x="{left}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{REFERENCE_COLOUR}"/><rect class="cur" x="{left}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{CURRENT_COLOUR}"/><text x="{:.1}" y="{:.1}" font-size="11" fill="#444">{:.1}% → {:.1}%</text></g>"##,
            p.tooltip,
            sr * 100.0,
            p.reference,
            sc * 100.0,
            p.current,
            left - 8.0,
            y0 + row * 0.5 + 4.0,
            p.label,
            y0 + 2.0,
            x(sr) - left,
            row - 4.0,
            y0 + row * 0.5 - 4.0,
            x(sc) - left,
            8.0,
            WIDTH - right + 8.0,
            y0 + row * 0.5 + 4.0,
            sr * 100.0,
            sc * 100.0,
        );
    }
    let _ = write!(
        out,
        r##"<line x1="{left}" x2="{left}" y1="{top}" y2="{bottom}" stroke="#777"/></svg>"##
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_histogram() -> Histogram {
        Histogram::Numeric {
            edges: vec![1.0, 2.0],
            reference: vec![30, 30, 40],
            current: vec![10, 20, 70],
            reference_range: [0.0, 3.0],
            current_range: [0.5, 9.0],
        }
    }

    #[test]
    fn numeric_chart_has_a_bar_pair_per_bin_and_the_edges() {
        let svg = chart(&numeric_histogram());
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches(r#"class="ref""#).count(), 3);
        assert_eq!(svg.matches(r#"class="cur""#).count(), 3);
        for label in [">0<", ">1<", ">2<", ">9<"] {
            assert!(svg.contains(label), "{label} in {svg}");
        }
        assert!(svg.contains("bin 3: [2, 9]: reference 40.0% (40), current 70.0% (70)"));
        assert!(svg.contains("reference (n=100)") && svg.contains("current (n=100)"));
        // the tallest share (70%) sets the axis: 80% in 20% steps
        assert!(svg.contains(">80%<") && !svg.contains(">100%<"));
    }

    #[test]
    fn categorical_chart_escapes_and_marks_new_categories() {
        let h = Histogram::Categorical {
            categories: vec!["<b>web</b>".into(), "pos".into()],
            reference: vec![0, 10],
            current: vec![5, 5],
            other_categories: 3,
            other_reference: 4,
            other_current: 1,
        };
        let svg = chart(&h);
        assert!(!svg.contains("<b>"), "{svg}");
        assert!(svg.contains("&lt;b&gt;web&lt;/b&gt; (new)"));
        assert!(svg.contains(">3 other<"));
        assert_eq!(svg.matches(r#"class="cur""#).count(), 3);
        // shares of each side's total: pos 10 of 14 reference rows
        assert!(svg.contains("71.4% → 45.5%"), "{svg}");
    }

    #[test]
    fn axis_steps() {
        assert_eq!(axis(0.7), (0.8, 0.2));
        assert_eq!(axis(0.1), (0.1, 0.02));
        assert_eq!(axis(0.0), (0.01, 0.01));
        assert_eq!(axis(1.0), (1.0, 0.2));
    }
}
