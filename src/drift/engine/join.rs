//! Labels joined with the predictions the proxy captured, by request id
//! (`performance.labelled.join`), then scored exactly like a labelled table ([`accuracy`]).
//!
//! **Keys.** A captured row's `request_id` is the request's id for a one-row request and
//! `<id>#<row>` for each row of a multi-row one; a label must name the same (ids are compared as
//! text, trimmed). A label naming a multi-row request by its id alone matches nothing: it is
//! counted as unmatched and, apart, as a request-level label (when the capture holds `<id>#0`).
//!
//! **Counting.** Captured rows without a label are not counted. Labels without a captured
//! prediction are counted (`unmatched_labels`), never an error. Feedback rows without an id or
//! a label are left out (`feedback_without_label`). Duplicates are resolved deterministically:
//! of several captures of one id the newest counts (the files are ordered by their time, the
//! window start in their names, rows in file order), of several labels the last row of the
//! feedback table (its files in the same order); the others are counted as duplicates. So
//! `captured_rows = joined + unlabelled_predictions + duplicate_predictions` and
//! `feedback_rows = joined + unmatched_labels + duplicate_labels + feedback_without_label`.
//!
//! **Memory.** Both sides are fetched under the byte cap of every dataset (`--max-bytes`,
//! the operator's `--data-max-bytes`). Their rows are counted first (Parquet footers, a CSV
//! scan); the side with fewer rows — at most [`MAX_JOIN_ROWS`], else
//! [`DataError::TooManyRows`] — is read (two columns) and hashed by id; the other side is read
//! one file at a time, newest first, probing the hash and copying out only the joined values.
//! The join's own memory is thus the smaller side plus one file of the larger one; the joined
//! pairs are at most as many as the smaller side's rows.

use std::collections::HashMap;

use super::*;
use crate::drift::data::{CategoricalColumn, Dictionary, MISSING_CODE, NamedColumn, count_rows};

/// Most rows of the side of a label join held in memory (the smaller one): about 100 bytes a
/// row with UUID request ids, so about 500 MB at the cap.
pub const MAX_JOIN_ROWS: usize = 5_000_000;

/// The sides of a label join.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinSide {
    /// The captured predictions.
    Captures,
    /// The feedback table of labels.
    #[default]
    Feedback,
}

/// How labels met the captured predictions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelJoinReport {
    /// The feedback table's column holding the request id.
    pub id_column: String,
    /// Captured rows read (after `lastRows` / `lastDuration`).
    pub captured_rows: u64,
    /// Rows of the feedback table.
    pub feedback_rows: u64,
    /// Captured predictions joined with a label: the rows accuracy is computed on.
    pub joined: u64,
    /// Captured rows no label names (yet): not counted.
    pub unlabelled_predictions: u64,
    /// Labels naming no captured prediction: not counted in accuracy.
    pub unmatched_labels: u64,
    /// Of the unmatched labels, those naming a multi-row request by its id alone (its rows
    /// were captured as `<id>#<row>`).
    pub request_level_labels: u64,
    /// Captured rows of an id captured again later (the newest counts).
    pub duplicate_predictions: u64,
    /// Labels of an id labelled again later in the feedback table (the last counts).
    pub duplicate_labels: u64,
    /// Feedback rows without a request id or without a label.
    pub feedback_without_label: u64,
    /// The side held in memory and hashed (the one with fewer rows).
    pub hashed: JoinSide,
}

impl LabelJoinReport {
    /// One line for the report's notes: what was joined and what was left out.
    pub fn note(&self) -> String {
        let mut parts = vec![format!(
            "accuracy on {} captured predictions joined with labels by request id ({} = {})",
            self.joined, self.id_column, REQUEST_ID
        )];
        let mut add = |n: u64, what: &str| {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        };
        add(
            self.unlabelled_predictions,
            "captured predictions without a label (not counted)",
        );
        add(
            self.unmatched_labels,
            "labels without a captured prediction (not counted)",
        );
        add(
            self.request_level_labels,
            "of them name a multi-row request by its id alone (label its rows as <id>#<row>)",
        );
        add(
            self.duplicate_labels,
            "labels replaced by a later label of the same id",
        );
        add(
            self.duplicate_predictions,
            "captured predictions replaced by a newer capture of the same id",
        );
        add(
            self.feedback_without_label,
            "feedback rows without an id or a label",
        );
        parts.join("; ")
    }
}

/// The captures' request id column.
const REQUEST_ID: &str = crate::storage::layout::REQUEST_ID_COLUMN;

/// "No row".
const NONE: u32 = u32::MAX;

/// Rows of one side (or one file of it): ids and the values joined (predictions or labels).
#[derive(Clone, Debug)]
pub(super) struct Keyed {
    pub(super) ids: CategoricalColumn,
    pub(super) values: Column,
}

impl Keyed {
    fn rows(&self) -> usize {
        self.ids.len()
    }

    fn id(&self, row: usize) -> Option<&str> {
        self.ids.value(row)
    }

    fn has_value(&self, row: usize) -> bool {
        match &self.values {
            Column::Numeric(v) => v.get(row).is_some_and(|x| !x.is_nan()),
            Column::Categorical(c) => c.codes.get(row).is_some_and(|&c| c != MISSING_CODE),
        }
    }

    /// The id column and the value column of a table read with [`requests`].
    fn from_table(mut table: Table, id: &str, value: &str, side: Side) -> Result<Self, DataError> {
        let missing = |c: &str| DataError::MissingColumn {
            column: c.to_owned(),
            side,
        };
        let ids = match table.take(id) {
            Some(Column::Categorical(c)) => c,
            Some(Column::Numeric(_)) | None => return Err(missing(id)),
        };
        let values = table.take(value).ok_or_else(|| missing(value))?;
        Ok(Self { ids, values })
    }
}

/// The columns read of a side: the id as text, the value as `kind` (inferred when `None`).
fn requests(id: &str, value: &str, kind: Option<ColumnKind>) -> [ColumnRequest; 2] {
    [
        ColumnRequest::new(id, Some(ColumnKind::Categorical)),
        ColumnRequest::new(value, kind),
    ]
}

/// Values copied out of the sides, row by row, into one column.
enum Gathered {
    Numeric(Vec<f64>),
    Categorical(Dictionary, Vec<u32>),
}

impl Gathered {
    fn like(column: &Column) -> Self {
        match column {
            Column::Numeric(_) => Gathered::Numeric(Vec::new()),
            Column::Categorical(_) => Gathered::Categorical(Dictionary::default(), Vec::new()),
        }
    }

    fn push(&mut self, from: &Column, row: usize) {
        match (self, from) {
            (Gathered::Numeric(out), Column::Numeric(v)) => {
                out.push(v.get(row).copied().unwrap_or(f64::NAN));
            }
            (Gathered::Numeric(out), Column::Categorical(c)) => out.push(
                c.value(row)
                    .and_then(|s| s.parse::<f64>().ok())
                    .unwrap_or(f64::NAN),
            ),
            (Gathered::Categorical(dict, codes), Column::Categorical(c)) => {
                codes.push(c.value(row).map_or(MISSING_CODE, |s| dict.code(s)));
            }
            (Gathered::Categorical(dict, codes), Column::Numeric(v)) => codes.push(
                v.get(row)
                    .filter(|x| !x.is_nan())
                    .map_or(MISSING_CODE, |&x| dict.code(&class_text(x))),
            ),
        }
    }

    fn finish(self) -> Column {
        match self {
            Gathered::Numeric(v) => Column::Numeric(v),
            Gathered::Categorical(dict, codes) => Column::Categorical(CategoricalColumn {
                categories: dict.into_categories(),
                codes,
            }),
        }
    }
}

/// The hashed side: each distinct id, the row that counts for it, and what was joined.
struct Index<'a> {
    side: &'a Keyed,
    keys: HashMap<&'a str, u32>,
    key_of_code: Vec<u32>,
    /// Per key: the row that counts (the last usable one), or [`NONE`].
    chosen: Vec<u32>,
    matched: Vec<bool>,
    /// Per key: the captures hold `<key>#0` (a label of a multi-row request by its id).
    request_level: Vec<bool>,
}

impl<'a> Index<'a> {
    /// `usable`: whether a row can count (a label needs a value; a capture always counts).
    fn new(side: &'a Keyed, usable: impl Fn(usize) -> bool) -> Self {
        let mut keys: HashMap<&str, u32> = HashMap::with_capacity(side.ids.categories.len());
        let key_of_code: Vec<u32> = side
            .ids
            .categories
            .iter()
            .map(|c| {
                let next = keys.len() as u32;
                *keys.entry(c.as_str()).or_insert(next)
            })
            .collect();
        let mut chosen = vec![NONE; keys.len()];
        for (row, &code) in side.ids.codes.iter().enumerate() {
            if let Some(&key) = key_of_code.get(code as usize)
                && usable(row)
            {
                chosen[key as usize] = row as u32;
            }
        }
        Self {
            side,
            matched: vec![false; keys.len()],
            request_level: vec![false; keys.len()],
            keys,
            key_of_code,
            chosen,
        }
    }

    /// The key of `id` when a row counts for it.
    fn find(&self, id: &str) -> Option<u32> {
        self.keys
            .get(id)
            .copied()
            .filter(|&k| self.chosen[k as usize] != NONE)
    }

    fn key_of_row(&self, row: usize) -> Option<u32> {
        let code = *self.side.ids.codes.get(row)?;
        self.key_of_code.get(code as usize).copied()
    }
}

/// The joined pairs (prediction, label) and the counts.
pub(super) struct Joined {
    pub(super) predictions: Column,
    pub(super) labels: Column,
    pub(super) report: LabelJoinReport,
}

/// Joins the hashed side (all of it in memory) with the probe side, given as files newest
/// first: `probe` calls its argument with each file until it returns `false`, and stops after
/// `probe_limit` rows (the newest rows of the captures).
pub(super) fn join(
    hashed: &Keyed,
    hashed_side: JoinSide,
    probe: impl FnOnce(&mut dyn FnMut(&Keyed) -> bool) -> Result<(), DataError>,
    probe_limit: Option<usize>,
) -> Result<Joined, DataError> {
    let mut index = match hashed_side {
        JoinSide::Captures => Index::new(hashed, |_| true),
        JoinSide::Feedback => Index::new(hashed, |row| hashed.has_value(row)),
    };
    let mut report = LabelJoinReport {
        hashed: hashed_side,
        ..LabelJoinReport::default()
    };
    let mut hashed_values = Gathered::like(&hashed.values);
    let mut probe_values: Option<Gathered> = None;
    let mut left = probe_limit.unwrap_or(usize::MAX);
    probe(&mut |chunk: &Keyed| {
        let out = probe_values.get_or_insert_with(|| Gathered::like(&chunk.values));
        for row in (0..chunk.rows()).rev() {
            if left == 0 {
                return false;
            }
            left -= 1;
            let key = match hashed_side {
                JoinSide::Feedback => probe_capture(&mut index, chunk, row, &mut report),
                JoinSide::Captures => probe_label(&mut index, chunk, row, &mut report),
            };
            if let Some(key) = key {
                out.push(&chunk.values, row);
                hashed_values.push(&hashed.values, index.chosen[key as usize] as usize);
            }
        }
        left > 0
    })?;
    count_hashed_rows(&index, hashed_side, &mut report);
    let probe_values = probe_values.map_or_else(|| Column::Numeric(Vec::new()), Gathered::finish);
    let (predictions, labels) = match hashed_side {
        JoinSide::Feedback => (probe_values, hashed_values.finish()),
        JoinSide::Captures => (hashed_values.finish(), probe_values),
    };
    Ok(Joined {
        predictions,
        labels,
        report,
    })
}

/// One captured row against the hashed labels: the key it joins, if it does.
fn probe_capture(
    index: &mut Index<'_>,
    chunk: &Keyed,
    row: usize,
    report: &mut LabelJoinReport,
) -> Option<u32> {
    report.captured_rows += 1;
    let Some(id) = chunk.id(row) else {
        report.unlabelled_predictions += 1;
        return None;
    };
    if let Some(request) = id.strip_suffix("#0")
        && let Some(k) = index.find(request)
    {
        index.request_level[k as usize] = true;
    }
    match index.find(id) {
        Some(k) if index.matched[k as usize] => {
            report.duplicate_predictions += 1;
            None
        }
        Some(k) => {
            index.matched[k as usize] = true;
            report.joined += 1;
            Some(k)
        }
        None => {
            report.unlabelled_predictions += 1;
            None
        }
    }
}

/// One feedback row against the hashed captures: the key it joins, if it does.
fn probe_label(
    index: &mut Index<'_>,
    chunk: &Keyed,
    row: usize,
    report: &mut LabelJoinReport,
) -> Option<u32> {
    report.feedback_rows += 1;
    let id = match chunk.id(row) {
        Some(id) if chunk.has_value(row) => id,
        _ => {
            report.feedback_without_label += 1;
            return None;
        }
    };
    match index.find(id) {
        Some(k) if index.matched[k as usize] => {
            report.duplicate_labels += 1;
            None
        }
        Some(k) => {
            index.matched[k as usize] = true;
            report.joined += 1;
            Some(k)
        }
        None => {
            report.unmatched_labels += 1;
            if index.find(&format!("{id}#0")).is_some() {
                report.request_level_labels += 1;
            }
            None
        }
    }
}

/// The hashed side's rows, counted once the probe is done.
fn count_hashed_rows(index: &Index<'_>, side: JoinSide, report: &mut LabelJoinReport) {
    for row in 0..index.side.rows() {
        let key = index.key_of_row(row);
        let joined = key.is_some_and(|k| index.matched[k as usize]);
        let counted = key.is_some_and(|k| index.chosen[k as usize] == row as u32);
        match side {
            JoinSide::Captures => {
                report.captured_rows += 1;
                match (joined, counted) {
                    (true, true) => {}
                    (true, false) => report.duplicate_predictions += 1,
                    (false, _) => report.unlabelled_predictions += 1,
                }
            }
            JoinSide::Feedback => {
                report.feedback_rows += 1;
                let Some(k) = key.filter(|_| index.side.has_value(row)) else {
                    report.feedback_without_label += 1;
                    continue;
                };
                match (joined, counted) {
                    (true, true) => {}
                    (true, false) => report.duplicate_labels += 1,
                    (false, _) => {
                        report.unmatched_labels += 1;
                        if index.request_level[k as usize] {
                            report.request_level_labels += 1;
                        }
                    }
                }
            }
        }
    }
}

/// One side of a join as fetched: its data, format, and the columns read of it.
pub(super) struct JoinInput<'a> {
    pub(super) payload: &'a Payload,
    pub(super) format: DataFormat,
    pub(super) id_column: &'a str,
    pub(super) value_column: &'a str,
    pub(super) side: Side,
}

impl JoinInput<'_> {
    /// The files, oldest first, and the newest rows kept of them.
    fn files(&self) -> (Vec<(&Payload, DataFormat)>, Option<usize>) {
        match self.payload {
            Payload::Many {
                parts, last_rows, ..
            } => (
                parts.iter().map(|p| (&p.payload, p.format)).collect(),
                *last_rows,
            ),
            one => (vec![(one, self.format)], None),
        }
    }

    /// Rows, counted without decoding the columns (a Parquet footer, a CSV scan).
    fn rows(&self) -> Result<usize, DataError> {
        let (files, last_rows) = self.files();
        let mut total = 0usize;
        for (payload, format) in files {
            total = total.saturating_add(count_rows(payload, format, self.side)?);
        }
        Ok(last_rows.map_or(total, |n| total.min(n)))
    }

    /// All of it, as one [`Keyed`].
    fn read(&self) -> Result<Keyed, DataError> {
        let columns = requests(self.id_column, self.value_column, None);
        let table = read_table(self.payload, self.format, &columns, self.side)?;
        Keyed::from_table(table, self.id_column, self.value_column, self.side)
    }

    /// Each file newest first, one at a time, until `f` says stop. The first file with rows
    /// fixes the value column's kind for the others; a side without rows is
    /// [`DataError::Empty`].
    fn each_file_newest_first(&self, f: &mut dyn FnMut(&Keyed) -> bool) -> Result<(), DataError> {
        let (files, _) = self.files();
        let mut kind = None;
        for (payload, format) in files.into_iter().rev() {
            let columns = requests(self.id_column, self.value_column, kind);
            let table = match read_table(payload, format, &columns, self.side) {
                Ok(t) => t,
                Err(DataError::Empty { .. }) => continue,
                Err(e) => return Err(e),
            };
            let keyed = Keyed::from_table(table, self.id_column, self.value_column, self.side)?;
            kind = Some(keyed.values.kind());
            if !f(&keyed) {
                return Ok(());
            }
        }
        if kind.is_none() {
            return Err(DataError::Empty {
                side: self.side,
                uri: self.payload.uri().to_owned(),
            });
        }
        Ok(())
    }
}

/// Accuracy of the captured predictions against the labels of the feedback table, joined by
/// request id; `report.join` says how they met. The smaller side is held, at most `max_rows`
/// rows of it ([`MAX_JOIN_ROWS`]).
pub(super) fn joined_accuracy(
    captures: &JoinInput<'_>,
    feedback: &JoinInput<'_>,
    id_column: &str,
    max_rows: usize,
) -> Result<AccuracyReport, DataError> {
    let (captured_rows, feedback_rows) = (captures.rows()?, feedback.rows()?);
    let (hashed, probe, hashed_side) = if captured_rows < feedback_rows {
        (captures, feedback, JoinSide::Captures)
    } else {
        (feedback, captures, JoinSide::Feedback)
    };
    let held = captured_rows.min(feedback_rows);
    if held > max_rows {
        return Err(DataError::TooManyRows {
            side: hashed.side,
            uri: hashed.payload.uri().to_owned(),
            rows: held as u64,
            limit: max_rows as u64,
        });
    }
    let table = hashed.read()?;
    let limit = match hashed_side {
        JoinSide::Feedback => captures.files().1,
        JoinSide::Captures => None,
    };
    let mut joined = join(
        &table,
        hashed_side,
        |f| probe.each_file_newest_first(f),
        limit,
    )?;
    joined.report.id_column = id_column.to_owned();
    let rows = joined.predictions.len();
    let pairs = Table::new(
        rows,
        vec![
            NamedColumn {
                name: "prediction".into(),
                data: joined.predictions,
            },
            NamedColumn {
                name: "label".into(),
                data: joined.labels,
            },
        ],
    );
    let mut report = accuracy(&pairs, "prediction", "label")?;
    report.prediction_column = captures.value_column.to_owned();
    report.label_column = feedback.value_column.to_owned();
    report.join = Some(joined.report);
    Ok(report)
}

#[cfg(test)]
mod tests;
