//! In-memory columns: numbers as `f64` (NaN = missing), categories as dictionary codes.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::drift::stats::CategoricalCounts;

/// Code of a missing categorical value.
pub const MISSING_CODE: u32 = u32::MAX;

/// The statistical kind of a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnKind {
    Numerical,
    Categorical,
}

impl From<crate::api::FeatureKind> for ColumnKind {
    fn from(k: crate::api::FeatureKind) -> Self {
        match k {
            crate::api::FeatureKind::Numerical => ColumnKind::Numerical,
            crate::api::FeatureKind::Categorical => ColumnKind::Categorical,
        }
    }
}

/// A column to read, with its kind forced or (`None`) inferred from the data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnRequest {
    pub name: String,
    pub kind: Option<ColumnKind>,
}

impl ColumnRequest {
    pub fn new(name: impl Into<String>, kind: Option<ColumnKind>) -> Self {
        Self {
            name: name.into(),
            kind,
        }
    }
}

/// A categorical column: distinct values and one code per row ([`MISSING_CODE`] = missing).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CategoricalColumn {
    pub categories: Vec<String>,
    pub codes: Vec<u32>,
}

impl CategoricalColumn {
    /// Value of row `i` (`None` when missing or out of range).
    pub fn value(&self, i: usize) -> Option<&str> {
        let code = *self.codes.get(i)?;
        self.categories.get(code as usize).map(String::as_str)
    }

    /// Counts per category and the missing count, for the statistics.
    pub fn counts(&self) -> CategoricalCounts {
        let mut n = vec![0u64; self.categories.len()];
        let mut missing = 0u64;
        for &c in &self.codes {
            match n.get_mut(c as usize) {
                Some(slot) => *slot += 1,
                None => missing += 1,
            }
        }
        CategoricalCounts::from_counts(
            self.categories
                .iter()
                .cloned()
                .zip(n)
                .filter(|(_, k)| *k > 0),
            missing,
        )
    }

    pub fn len(&self) -> usize {
        self.codes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// Append another column's rows, merging the dictionaries.
    pub(crate) fn append(&mut self, other: CategoricalColumn) {
        let mut dict = Dictionary::from_column(std::mem::take(&mut self.categories));
        let remap: Vec<u32> = other
            .categories
            .into_iter()
            .map(|c| dict.code_owned(c))
            .collect();
        self.codes.reserve(other.codes.len());
        self.codes.extend(
            other
                .codes
                .into_iter()
                .map(|c| remap.get(c as usize).copied().unwrap_or(MISSING_CODE)),
        );
        self.categories = dict.into_categories();
    }
}

/// Builds a [`CategoricalColumn`]'s dictionary; lookups by `&str` do not allocate.
#[derive(Default)]
pub(crate) struct Dictionary {
    index: HashMap<Box<str>, u32>,
    categories: Vec<String>,
}

impl Dictionary {
    fn from_column(categories: Vec<String>) -> Self {
        let index = categories
            .iter()
            .enumerate()
            .map(|(i, c)| (Box::from(c.as_str()), i as u32))
            .collect();
        Self { index, categories }
    }

    /// Code of `value`, adding it when new.
    #[inline]
    pub(crate) fn code(&mut self, value: &str) -> u32 {
        if let Some(&c) = self.index.get(value) {
            return c;
        }
        self.insert(value.to_owned())
    }

    fn code_owned(&mut self, value: String) -> u32 {
        if let Some(&c) = self.index.get(value.as_str()) {
            return c;
        }
        self.insert(value)
    }

    fn insert(&mut self, value: String) -> u32 {
        // At most u32::MAX - 1 distinct values; beyond that (never in practice) values fold
        // into the last code rather than panicking.
        let code = u32::try_from(self.categories.len())
            .unwrap_or(MISSING_CODE - 1)
            .min(MISSING_CODE - 1);
        if (code as usize) == self.categories.len() {
            self.index.insert(Box::from(value.as_str()), code);
            self.categories.push(value);
        }
        code
    }

    pub(crate) fn into_categories(self) -> Vec<String> {
        self.categories
    }
}

/// The values of one column.
#[derive(Clone, Debug, PartialEq)]
pub enum Column {
    /// NaN marks a missing value.
    Numeric(Vec<f64>),
    Categorical(CategoricalColumn),
}

impl Column {
    pub fn kind(&self) -> ColumnKind {
        match self {
            Column::Numeric(_) => ColumnKind::Numerical,
            Column::Categorical(_) => ColumnKind::Categorical,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Column::Numeric(v) => v.len(),
            Column::Categorical(c) => c.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of missing values (NaN or missing code).
    pub fn missing(&self) -> usize {
        match self {
            Column::Numeric(v) => v.iter().filter(|x| x.is_nan()).count(),
            Column::Categorical(c) => c.codes.iter().filter(|&&x| x == MISSING_CODE).count(),
        }
    }

    pub fn as_numeric(&self) -> Option<&[f64]> {
        match self {
            Column::Numeric(v) => Some(v),
            Column::Categorical(_) => None,
        }
    }

    pub fn as_categorical(&self) -> Option<&CategoricalColumn> {
        match self {
            Column::Numeric(_) => None,
            Column::Categorical(c) => Some(c),
        }
    }
}

/// A named column.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedColumn {
    pub name: String,
    pub data: Column,
}

/// The requested columns of a dataset, in request order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    rows: usize,
    columns: Vec<NamedColumn>,
}

impl Table {
    /// A table; every column must have `rows` values (shorter or longer ones are a bug of
    /// the reader, reported by `debug_assert`).
    pub fn new(rows: usize, columns: Vec<NamedColumn>) -> Self {
        debug_assert!(columns.iter().all(|c| c.data.len() == rows));
        Self { rows, columns }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn columns(&self) -> &[NamedColumn] {
        &self.columns
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns
            .iter()
            .find(|c| c.name == name)
            .map(|c| &c.data)
    }

    /// Remove a column and return it (the engine moves numeric samples into the statistics
    /// instead of copying them).
    pub fn take(&mut self, name: &str) -> Option<Column> {
        let i = self.columns.iter().position(|c| c.name == name)?;
        Some(self.columns.remove(i).data)
    }

    pub fn into_columns(self) -> Vec<NamedColumn> {
        self.columns
    }

    /// Keep only the rows `i` with `keep[i]` (rows beyond `keep` are dropped).
    pub fn retain_rows(&mut self, keep: &[bool]) {
        fn filter<T: Copy>(v: &mut Vec<T>, keep: &[bool]) {
            let mut i = 0;
            v.retain(|_| {
                let k = keep.get(i).copied().unwrap_or(false);
                i += 1;
                k
            });
        }
        for c in &mut self.columns {
            match &mut c.data {
                Column::Numeric(v) => filter(v, keep),
                Column::Categorical(cat) => filter(&mut cat.codes, keep),
            }
        }
        self.rows = keep.iter().take(self.rows).filter(|&&k| k).count();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat(values: &[Option<&str>]) -> CategoricalColumn {
        let mut d = Dictionary::default();
        let codes = values
            .iter()
            .map(|v| v.map_or(MISSING_CODE, |s| d.code(s)))
            .collect();
        CategoricalColumn {
            categories: d.into_categories(),
            codes,
        }
    }

    #[test]
    fn categorical_counts_and_values() {
        let c = cat(&[Some("web"), None, Some("pos"), Some("web")]);
        assert_eq!(c.categories, vec!["web", "pos"]);
        assert_eq!(c.value(0), Some("web"));
        assert_eq!(c.value(1), None);
        assert_eq!(c.value(9), None);
        let counts = c.counts();
        assert_eq!((counts.get("web"), counts.get("pos")), (2, 1));
        assert_eq!((counts.total(), counts.missing()), (3, 1));
        assert_eq!(Column::Categorical(c).missing(), 1);
    }

    #[test]
    fn append_merges_dictionaries() {
        let mut a = cat(&[Some("x"), Some("y")]);
        let b = cat(&[Some("z"), None, Some("x")]);
        a.append(b);
        let values: Vec<Option<&str>> = (0..a.len()).map(|i| a.value(i)).collect();
        assert_eq!(
            values,
            vec![Some("x"), Some("y"), Some("z"), None, Some("x")]
        );
        assert_eq!(a.categories.len(), 3);
    }

    #[test]
    fn table_access() {
        let mut t = Table::new(
            2,
            vec![
                NamedColumn {
                    name: "a".into(),
                    data: Column::Numeric(vec![1.0, f64::NAN]),
                },
                NamedColumn {
                    name: "b".into(),
                    data: Column::Categorical(cat(&[Some("p"), Some("q")])),
                },
            ],
        );
        assert_eq!(t.rows(), 2);
        assert_eq!(t.column("a").unwrap().missing(), 1);
        assert_eq!(t.column("b").unwrap().kind(), ColumnKind::Categorical);
        assert!(t.column("a").unwrap().as_categorical().is_none());
        let mut t2 = t.clone();
        t2.retain_rows(&[false, true]);
        assert_eq!(t2.rows(), 1);
        assert!(t2.column("a").unwrap().as_numeric().unwrap()[0].is_nan());
        assert_eq!(
            t2.column("b").unwrap().as_categorical().unwrap().value(0),
            Some("q")
        );
        assert!(t.take("a").is_some());
        assert!(t.column("a").is_none());
        assert_eq!(t.columns().len(), 1);
    }
}
