//! A drift report to look at: one self-contained HTML page (inline SVG charts, inline CSS, no
//! script, no network reference) rendered from a [`DriftReport`](crate::drift::engine::DriftReport).
//!
//! - [`html`]: the page: the verdict, a summary table, one card per feature.
//! - [`svg`]: the charts: reference and current proportions per PSI bin or per category.
//!
//! Every string from the data (feature names, categories) is untrusted: it passes through
//! [`text`], which drops control and bidirectional-override characters, caps the length and
//! escapes it for HTML.

pub mod html;
pub mod svg;

pub use html::render_html;

/// Colour of the reference side (bars, legend).
pub const REFERENCE_COLOUR: &str = "#8fb8de";
/// Colour of the current side (bars, legend).
pub const CURRENT_COLOUR: &str = "#e8590c";

/// Escape for HTML text and attribute values (also inside inline SVG).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

use crate::drift::data::is_bidi_control;

/// Untrusted text from the data, ready for the page: control and bidi characters replaced,
/// at most `max` characters (an ellipsis marks a cut), HTML-escaped.
pub fn text(s: &str, max: usize) -> String {
    let clean = |c: char| {
        if c.is_control() || is_bidi_control(c) {
            '\u{fffd}'
        } else {
            c
        }
    };
    let mut cut: String = s.chars().take(max).map(clean).collect();
    if s.chars().nth(max).is_some() {
        cut.pop();
        cut.push('…');
    }
    escape(&cut)
}

/// A statistic for people: 4 decimals, scientific below 1e-3, `–` when absent.
pub fn number(x: Option<f64>) -> String {
    match x {
        None => "–".into(),
        Some(v) if !v.is_finite() => "–".into(),
        Some(v) if v != 0.0 && v.abs() < 1e-3 => format!("{v:.2e}"),
        Some(v) => format!("{v:.4}"),
    }
}

/// A data value in little room (an axis label): about 4 significant digits.
pub fn compact(x: f64) -> String {
    if !x.is_finite() {
        return if x > 0.0 {
            "+∞"
        } else if x < 0.0 {
            "−∞"
        } else {
            "?"
        }
        .into();
    }
    let a = x.abs();
    if a == 0.0 {
        return "0".into();
    }
    if !(1e-3..1e5).contains(&a) {
        return format!("{x:.2e}");
    }
    let decimals = (3 - a.log10().floor() as i32).clamp(0, 4) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// A share as a percentage: `12.3%`.
pub fn percent(part: u64, total: u64) -> String {
    if total == 0 {
        return "–".into();
    }
    format!("{:.1}%", part as f64 * 100.0 / total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_limits_untrusted_text() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(text("<script>", 100), "&lt;script&gt;");
        assert_eq!(text("abcdef", 4), "abc…");
        assert_eq!(text("abcd", 4), "abcd");
        assert_eq!(text("a\u{202e}b\nc\0", 10), "a\u{fffd}b\u{fffd}c\u{fffd}");
        // the cut counts characters, not bytes
        assert_eq!(text("ééééé", 3), "éé…");
    }

    #[test]
    fn numbers_for_people() {
        assert_eq!(compact(12.3456), "12.35");
        assert_eq!(compact(-0.5), "-0.5");
        assert_eq!(compact(1234.0), "1234");
        assert_eq!(compact(0.0001234), "1.23e-4");
        assert_eq!(compact(2.5e7), "2.50e7");
        assert_eq!(compact(f64::NEG_INFINITY), "−∞");
        assert_eq!(number(Some(0.00001)), "1.00e-5");
        assert_eq!(number(None), "–");
        assert_eq!(percent(1, 8), "12.5%");
        assert_eq!(percent(1, 0), "–");
    }
}
