//! Typed errors of the data layer.

use crate::api::Reason;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Which dataset of a check a problem is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Reference,
    Current,
    Labelled,
    /// The predictions the proxy captured, joined with labels.
    Captured,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Reference => "reference",
            Side::Current => "current",
            Side::Labelled => "labelled",
            Side::Captured => "captured",
        })
    }
}

/// Everything that can be wrong with a dataset. Messages are one line and name the dataset
/// side, the column and the row where they apply; [`DataError::reason`] is a stable
/// PascalCase string for status conditions and Events.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DataError {
    /// The file, URL or artifact does not exist.
    #[error("{side} data '{uri}' not found{}", detail_suffix(detail))]
    NotFound {
        side: Side,
        uri: String,
        detail: String,
    },
    /// The location could not be read right now (connection refused, timeout, HTTP 5xx,
    /// permission denied, ...). May succeed later.
    #[error("{side} data '{uri}' could not be read: {detail}")]
    Unreachable {
        side: Side,
        uri: String,
        detail: String,
    },
    /// The object store refused the request: a wrong key or signature, or no permission.
    #[error(
        "{side} data '{uri}' could not be read: access denied ({detail}; check the object-store credentials: spec.storage.secretRef, or the AWS_*, GOOGLE_* or AZURE_* variables of mlrollout drift)"
    )]
    AccessDenied {
        side: Side,
        uri: String,
        detail: String,
    },
    /// A URI scheme this build cannot read (`hdfs://`, ...).
    #[error(
        "{side} data '{uri}': unsupported scheme '{scheme}' (supported: plain paths, file://, http://, https://, runs:/, mlflow-artifacts:/, models:/, s3://, gs://, az://)"
    )]
    UnsupportedScheme {
        side: Side,
        uri: String,
        scheme: String,
    },
    /// A URI of a supported scheme that cannot be used (no path, no MLflow tracking URI, ...).
    #[error("{side} data '{uri}': invalid URI: {reason}")]
    InvalidUri {
        side: Side,
        uri: String,
        reason: String,
    },
    /// Neither the resource nor the extension says whether it is CSV or Parquet.
    #[error(
        "{side} data '{uri}': unknown format (use a .csv, .parquet or .pq extension or set the format explicitly)"
    )]
    UnknownFormat { side: Side, uri: String },
    /// No data rows (an empty file, or a header only).
    #[error("{side} data '{uri}' has no rows")]
    Empty { side: Side, uri: String },
    /// A requested column is absent.
    #[error("column '{column}' is missing from the {side} data")]
    MissingColumn { column: String, side: Side },
    /// A numerical column holds something that is not a number. `row` is the 1-based data row
    /// (the header is not counted).
    #[error(
        "column '{column}' of the {side} data is numerical but row {row} holds '{value}' (declare the column categorical if it is not a number)"
    )]
    WrongType {
        side: Side,
        column: String,
        row: u64,
        value: String,
    },
    /// A column type the engine cannot use (e.g. a Parquet timestamp or binary column).
    #[error("column '{column}' of the {side} data has type {data_type}, which cannot be compared")]
    UnsupportedType {
        side: Side,
        column: String,
        data_type: String,
    },
    /// The source is larger than the configured byte cap; nothing more was read.
    #[error(
        "{side} data '{uri}' is larger than the limit of {limit} bytes (raise it with --max-bytes, or the operator's --data-max-bytes)"
    )]
    TooLarge { side: Side, uri: String, limit: u64 },
    /// More rows than the label join holds in memory (of its smaller side; nothing was
    /// joined).
    #[error(
        "{side} data '{uri}' has {rows} rows, more than the {limit} the label join holds in memory (it holds the smaller of the captured predictions and the labels: narrow the captures with performance.labelled.join.lastDuration or lastRows, or --join-last-duration / --join-last-rows)"
    )]
    TooManyRows {
        side: Side,
        uri: String,
        rows: u64,
        limit: u64,
    },
    /// The source did not deliver its data within the configured time.
    #[error(
        "{side} data '{uri}' was not read within {after_seconds} s (raise it with --fetch-timeout, or the operator's --data-timeout)"
    )]
    TimedOut {
        side: Side,
        uri: String,
        after_seconds: u64,
    },
    /// The operator's data-source policy refuses this location; nothing was read.
    #[error("{side} data '{uri}' is not allowed: {why}")]
    NotAllowed {
        side: Side,
        uri: String,
        why: String,
    },
    /// Not valid CSV or Parquet.
    #[error("{side} data '{uri}' is malformed: {detail}")]
    Malformed {
        side: Side,
        uri: String,
        detail: String,
    },
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

/// Longest cell value quoted in an error message.
const MAX_VALUE_CHARS: usize = 40;

impl DataError {
    /// Stable PascalCase reason (used as a Kubernetes condition reason).
    pub fn reason(&self) -> Reason {
        match self {
            DataError::NotFound { .. } => Reason::DataNotFound,
            DataError::Unreachable { .. } => Reason::DataUnreachable,
            DataError::AccessDenied { .. } => Reason::DataAccessDenied,
            DataError::UnsupportedScheme { .. } => Reason::UnsupportedScheme,
            DataError::InvalidUri { .. } => Reason::InvalidDataUri,
            DataError::UnknownFormat { .. } => Reason::UnknownFormat,
            DataError::Empty { .. } => Reason::EmptyData,
            DataError::MissingColumn { .. } => Reason::MissingColumn,
            DataError::WrongType { .. } => Reason::WrongType,
            DataError::UnsupportedType { .. } => Reason::UnsupportedColumnType,
            DataError::Malformed { .. } => Reason::MalformedData,
            DataError::TooLarge { .. } | DataError::TooManyRows { .. } => Reason::DataTooLarge,
            DataError::TimedOut { .. } => Reason::DataTimedOut,
            DataError::NotAllowed { .. } => Reason::DataSourceNotAllowed,
        }
    }

    /// Whether reading the same location later may succeed (the data may appear, the server may
    /// come back). Format and content errors are permanent until the data changes.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            DataError::Unreachable { .. } | DataError::NotFound { .. } | DataError::TimedOut { .. }
        )
    }

    /// The dataset side the error is about.
    pub fn side(&self) -> Side {
        match self {
            DataError::NotFound { side, .. }
            | DataError::Unreachable { side, .. }
            | DataError::AccessDenied { side, .. }
            | DataError::UnsupportedScheme { side, .. }
            | DataError::InvalidUri { side, .. }
            | DataError::UnknownFormat { side, .. }
            | DataError::Empty { side, .. }
            | DataError::MissingColumn { side, .. }
            | DataError::WrongType { side, .. }
            | DataError::UnsupportedType { side, .. }
            | DataError::Malformed { side, .. }
            | DataError::TooLarge { side, .. }
            | DataError::TooManyRows { side, .. }
            | DataError::TimedOut { side, .. }
            | DataError::NotAllowed { side, .. } => *side,
        }
    }

    pub(crate) fn wrong_type(side: Side, column: &str, row: u64, value: &[u8]) -> Self {
        DataError::WrongType {
            side,
            column: excerpt(column, MAX_NAME_CHARS),
            row,
            value: excerpt(&String::from_utf8_lossy(value), MAX_VALUE_CHARS),
        }
    }

    pub(crate) fn malformed(side: Side, uri: &str, detail: impl fmt::Display) -> Self {
        DataError::Malformed {
            side,
            uri: uri.to_owned(),
            detail: one_line(&detail.to_string()),
        }
    }
}

/// Longest column or feature name taken from a data file into a message or the status.
pub const MAX_NAME_CHARS: usize = 128;

/// Characters that would reorder or hide the text around them.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Untrusted text from data (a cell, a column name) for a message, a status field or a metric
/// label: control and bidirectional-override characters written as `\u{..}` escapes (never
/// acted on by a terminal or a viewer), at most `max` characters of the original, `…` marking
/// a cut.
pub fn excerpt(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c.is_control() || is_bidi_control(c) {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// Collapse whitespace runs (newlines included) so that messages stay on one line.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_pascal_case_and_messages_one_line() {
        let errors = [
            DataError::NotFound {
                side: Side::Reference,
                uri: "a.csv".into(),
                detail: String::new(),
            },
            DataError::Unreachable {
                side: Side::Current,
                uri: "http://x".into(),
                detail: "connection refused".into(),
            },
            DataError::UnsupportedScheme {
                side: Side::Current,
                uri: "s3://b/k".into(),
                scheme: "s3".into(),
            },
            DataError::InvalidUri {
                side: Side::Current,
                uri: "runs:/".into(),
                reason: "no run id".into(),
            },
            DataError::UnknownFormat {
                side: Side::Reference,
                uri: "x.json".into(),
            },
            DataError::Empty {
                side: Side::Reference,
                uri: "e.csv".into(),
            },
            DataError::MissingColumn {
                column: "amount".into(),
                side: Side::Current,
            },
            DataError::wrong_type(Side::Current, "amount", 3, b"abc\ndef"),
            DataError::UnsupportedType {
                side: Side::Reference,
                column: "ts".into(),
                data_type: "Timestamp".into(),
            },
            DataError::malformed(Side::Current, "c.csv", "bad\nthing"),
        ];
        let mut reasons = std::collections::HashSet::new();
        for e in &errors {
            let r = e.reason().as_str();
            assert!(r.chars().next().unwrap().is_ascii_uppercase(), "{r}");
            assert!(r.chars().all(|c| c.is_ascii_alphanumeric()), "{r}");
            assert!(reasons.insert(r), "duplicate reason {r}");
            assert!(!e.to_string().contains('\n'), "{e}");
        }
        assert_eq!(
            errors[6].to_string(),
            "column 'amount' is missing from the current data"
        );
        assert!(errors[7].to_string().contains("row 3"));
        assert!(errors[7].to_string().contains("'amount'"));
        assert_eq!(errors[0].to_string(), "reference data 'a.csv' not found");
        assert!(errors[1].is_transient() && !errors[6].is_transient());
        assert_eq!(errors[6].side(), Side::Current);
    }

    #[test]
    fn long_values_are_cut() {
        let e = DataError::wrong_type(Side::Reference, "x", 1, "y".repeat(500).as_bytes());
        let DataError::WrongType { value, .. } = e else {
            unreachable!()
        };
        assert_eq!(value.chars().count(), MAX_VALUE_CHARS + 1);
    }
}

#[cfg(test)]
mod excerpt_tests {
    use super::*;

    #[test]
    fn untrusted_text_is_escaped_and_cut() {
        // A terminal escape, a newline, a right-to-left override: shown, never acted on.
        let hostile = "ok\u{1b}[31mred\nline\u{202e}txt";
        let shown = excerpt(hostile, 100);
        assert_eq!(shown, "ok\\u{1b}[31mred\\u{a}line\\u{202e}txt");
        assert!(!shown.chars().any(|c| c.is_control() || is_bidi_control(c)));
        assert_eq!(
            excerpt(&"x".repeat(500), 10),
            format!("{}…", "x".repeat(10))
        );
        assert_eq!(excerpt("short", 10), "short");
        let e = DataError::wrong_type(Side::Current, "amount\u{1b}", 7, b"1\x1b[2J");
        let text = e.to_string();
        assert!(text.contains("row 7") && text.contains("\\u{1b}"), "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
    }
}
