//! The feature rows of a scoring request, in MLflow's four input formats.
//!
//! `dataframe_split` (`{columns, data}`), `dataframe_records` (`[{col: v}]`), `instances` and
//! `inputs` (TF-serving style: a list of records, a list of positional rows, a list of scalars,
//! or one object of equally long columns). Positional values take their names from the
//! configured column list, else `input_<i>`.

use serde_json::{Map, Value};

/// One request's rows: column names and, per row, a value per column (missing → `Null`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// Why a request body yields no rows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// Not one of the four formats.
    #[error(
        "body is not an MLflow scoring request (dataframe_split, dataframe_records, instances or inputs)"
    )]
    UnknownFormat,
    /// One of the formats, but not shaped as it should be.
    #[error("{format} is malformed: {what}")]
    Malformed { format: &'static str, what: String },
}

/// Rows of `body`; `positional` names the columns of rows given without names.
pub fn rows(body: &Value, positional: &[String]) -> Result<Rows, InputError> {
    let object = body.as_object().ok_or(InputError::UnknownFormat)?;
    if let Some(split) = object.get("dataframe_split") {
        dataframe_split(split)
    } else if let Some(records) = object.get("dataframe_records") {
        let list = records
            .as_array()
            .ok_or_else(|| malformed("dataframe_records", "not a list"))?;
        from_list(list, positional)
    } else if let Some(instances) = object.get("instances") {
        tensor("instances", instances, positional)
    } else if let Some(inputs) = object.get("inputs") {
        tensor("inputs", inputs, positional)
    } else {
        Err(InputError::UnknownFormat)
    }
}

fn malformed(format: &'static str, what: &str) -> InputError {
    InputError::Malformed {
        format,
        what: what.to_owned(),
    }
}

fn dataframe_split(split: &Value) -> Result<Rows, InputError> {
    const FORMAT: &str = "dataframe_split";
    let columns: Vec<String> = split
        .get("columns")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed(FORMAT, "no `columns` list"))?
        .iter()
        .map(column_name)
        .collect();
    let data = split
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed(FORMAT, "no `data` list"))?;
    let mut rows = Vec::with_capacity(data.len());
    for row in data {
        let values = row
            .as_array()
            .ok_or_else(|| malformed(FORMAT, "a row of `data` is not a list"))?;
        if values.len() != columns.len() {
            return Err(malformed(FORMAT, "a row's length differs from `columns`"));
        }
        rows.push(values.clone());
    }
    Ok(Rows { columns, rows })
}

fn column_name(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn tensor(format: &'static str, value: &Value, positional: &[String]) -> Result<Rows, InputError> {
    match value {
        Value::Array(list) => from_list(list, positional),
        Value::Object(columns) => from_columns(format, columns),
        _ => Err(malformed(format, "neither a list nor an object of columns")),
    }
}

/// A list of records, of positional rows, or of scalars (one unnamed column).
fn from_list(list: &[Value], positional: &[String]) -> Result<Rows, InputError> {
    let mut out = Rows::default();
    for item in list {
        match item {
            Value::Object(record) => {
                let mut row = vec![Value::Null; out.columns.len()];
                for (key, value) in record {
                    let at = position(&mut out, key);
                    if at == row.len() {
                        row.push(Value::Null);
                    }
                    row[at] = value.clone();
                }
                out.rows.push(row);
            }
            Value::Array(values) => {
                for i in out.columns.len()..values.len() {
                    out.columns.push(positional_name(positional, i));
                }
                out.rows.push(values.clone());
            }
            scalar => {
                if out.columns.is_empty() {
                    out.columns.push(positional_name(positional, 0));
                }
                out.rows.push(vec![scalar.clone()]);
            }
        }
    }
    let width = out.columns.len();
    for row in &mut out.rows {
        row.resize(width, Value::Null);
    }
    Ok(out)
}

fn position(rows: &mut Rows, key: &str) -> usize {
    if let Some(at) = rows.columns.iter().position(|c| c == key) {
        return at;
    }
    rows.columns.push(key.to_owned());
    for row in &mut rows.rows {
        row.push(Value::Null);
    }
    rows.columns.len() - 1
}

fn positional_name(names: &[String], i: usize) -> String {
    names
        .get(i)
        .cloned()
        .unwrap_or_else(|| format!("input_{i}"))
}

/// `{"a": [1, 2], "b": [3, 4]}`: equally long columns.
fn from_columns(format: &'static str, columns: &Map<String, Value>) -> Result<Rows, InputError> {
    let mut out = Rows {
        columns: columns.keys().cloned().collect(),
        rows: Vec::new(),
    };
    let lists: Vec<&Vec<Value>> = columns
        .values()
        .map(|v| {
            v.as_array()
                .ok_or_else(|| malformed(format, "a column is not a list"))
        })
        .collect::<Result<_, _>>()?;
    let length = lists.first().map_or(0, |l| l.len());
    if lists.iter().any(|l| l.len() != length) {
        return Err(malformed(format, "columns of different lengths"));
    }
    out.rows = (0..length)
        .map(|i| lists.iter().map(|l| l[i].clone()).collect())
        .collect();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn names(rows: &Rows) -> Vec<&str> {
        rows.columns.iter().map(String::as_str).collect()
    }

    #[test]
    fn the_four_formats_give_the_same_rows() {
        let want = Rows {
            columns: vec!["a".into(), "b".into()],
            rows: vec![vec![json!(1.5), json!("x")], vec![json!(2), json!("y")]],
        };
        let bodies = [
            json!({"dataframe_split": {"columns": ["a", "b"], "data": [[1.5, "x"], [2, "y"]]}}),
            json!({"dataframe_records": [{"a": 1.5, "b": "x"}, {"a": 2, "b": "y"}]}),
            json!({"instances": [{"a": 1.5, "b": "x"}, {"a": 2, "b": "y"}]}),
            json!({"inputs": {"a": [1.5, 2], "b": ["x", "y"]}}),
        ];
        for body in bodies {
            assert_eq!(rows(&body, &[]).unwrap(), want, "{body}");
        }
    }

    #[test]
    fn positional_rows_take_configured_names_then_input_i() {
        let got = rows(&json!({"instances": [[1, 2, 3]]}), &["a".into()]).unwrap();
        assert_eq!(names(&got), ["a", "input_1", "input_2"]);
        let scalars = rows(&json!({"inputs": [0.5, 0.7]}), &[]).unwrap();
        assert_eq!(names(&scalars), ["input_0"]);
        assert_eq!(scalars.rows.len(), 2);
    }

    #[test]
    fn records_with_missing_keys_fill_nulls() {
        let got = rows(&json!({"dataframe_records": [{"a": 1}, {"b": 2}]}), &[]).unwrap();
        assert_eq!(
            got.rows,
            vec![vec![json!(1), Value::Null], vec![Value::Null, json!(2)]]
        );
    }

    #[test]
    fn malformed_bodies_are_named_errors() {
        assert_eq!(rows(&json!([1, 2]), &[]), Err(InputError::UnknownFormat));
        assert_eq!(rows(&json!({"x": 1}), &[]), Err(InputError::UnknownFormat));
        assert!(matches!(
            rows(
                &json!({"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}),
                &[]
            ),
            Err(InputError::Malformed {
                format: "dataframe_split",
                ..
            })
        ));
        assert!(matches!(
            rows(&json!({"inputs": {"a": [1], "b": [1, 2]}}), &[]),
            Err(InputError::Malformed {
                format: "inputs",
                ..
            })
        ));
        // Ragged positional rows widen to the longest, the short ones padded with nulls.
        let ragged = rows(&json!({"instances": [[1, 2], [1, 2, 3]]}), &[]).unwrap();
        assert_eq!(ragged.rows[0], vec![json!(1), json!(2), Value::Null]);
    }
}
