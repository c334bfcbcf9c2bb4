//! One capture window: rows gathered in memory, then written as one Parquet file.
//!
//! A column is `Float64` when every value in the window is a number (or a boolean, as 0/1) or
//! null, and `Utf8` otherwise (numbers then kept as their JSON text), so a window always
//! writes, whatever the requests held.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use jiff::Timestamp;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::Value;

use crate::proxy::inputs::Rows;
use crate::storage::layout::{
    MODEL_VERSION_COLUMN, PREDICTION_COLUMN, REQUEST_ID_COLUMN, TIMESTAMP_COLUMN,
};

/// One scored request, ready to be added to a window.
#[derive(Debug, Clone)]
pub struct CapturedRequest {
    pub request_id: String,
    pub at: Timestamp,
    pub rows: Rows,
    /// One per row when the response had as many predictions as the request had rows.
    pub predictions: Vec<Value>,
}

/// Why a window could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    #[error("capture window cannot be encoded: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("capture window cannot be written as Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
}

/// Rows of one window, column by column.
#[derive(Debug)]
pub struct Window {
    pub started: Timestamp,
    requests: u64,
    request_ids: Vec<String>,
    timestamps: Vec<i64>,
    predictions: Vec<Value>,
    features: Vec<(String, Vec<Value>)>,
    index: HashMap<String, usize>,
}

impl Window {
    pub fn new(started: Timestamp) -> Self {
        Self {
            started,
            requests: 0,
            request_ids: Vec::new(),
            timestamps: Vec::new(),
            predictions: Vec::new(),
            features: Vec::new(),
            index: HashMap::new(),
        }
    }

    pub fn rows(&self) -> usize {
        self.request_ids.len()
    }

    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Adds a request's rows. A multi-row request's rows get ids `<id>#<row>`.
    pub fn push(&mut self, request: CapturedRequest) {
        self.requests += 1;
        let before = self.rows();
        let paired = request.predictions.len() == request.rows.rows.len();
        let single = request.rows.rows.len() == 1;
        let slots: Vec<usize> = request
            .rows
            .columns
            .iter()
            .map(|name| self.column(name, before))
            .collect();
        for (i, row) in request.rows.rows.into_iter().enumerate() {
            self.request_ids.push(if single {
                request.request_id.clone()
            } else {
                format!("{}#{i}", request.request_id)
            });
            self.timestamps.push(request.at.as_millisecond());
            self.predictions.push(if paired {
                request.predictions[i].clone()
            } else {
                Value::Null
            });
            for (slot, value) in slots.iter().zip(row) {
                self.features[*slot].1.push(value);
            }
            let rows = self.rows();
            for (_, values) in &mut self.features {
                values.resize(rows, Value::Null);
            }
        }
    }

    fn column(&mut self, name: &str, rows: usize) -> usize {
        if let Some(at) = self.index.get(name) {
            return *at;
        }
        self.features
            .push((name.to_owned(), vec![Value::Null; rows]));
        self.index.insert(name.to_owned(), self.features.len() - 1);
        self.features.len() - 1
    }

    /// The window as a Parquet file (snappy), `model_version` on every row.
    pub fn to_parquet(&self, model_version: &str) -> Result<Vec<u8>, WindowError> {
        let batch = self.to_batch(model_version)?;
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(properties))?;
        writer.write(&batch)?;
        writer.close()?;
        Ok(out)
    }

    fn to_batch(&self, model_version: &str) -> Result<RecordBatch, WindowError> {
        let rows = self.rows();
        let mut fields = Vec::with_capacity(self.features.len() + 4);
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(fields.capacity());
        let mut ids = StringBuilder::new();
        self.request_ids.iter().for_each(|id| ids.append_value(id));
        fields.push(Field::new(REQUEST_ID_COLUMN, DataType::Utf8, false));
        arrays.push(Arc::new(ids.finish()));
        let mut times = TimestampMillisecondBuilder::with_capacity(rows).with_timezone("UTC");
        self.timestamps.iter().for_each(|t| times.append_value(*t));
        fields.push(Field::new(
            TIMESTAMP_COLUMN,
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ));
        arrays.push(Arc::new(times.finish()));
        let mut versions = StringBuilder::new();
        (0..rows).for_each(|_| versions.append_value(model_version));
        fields.push(Field::new(MODEL_VERSION_COLUMN, DataType::Utf8, false));
        arrays.push(Arc::new(versions.finish()));
        let (field, array) = column(PREDICTION_COLUMN, &self.predictions);
        fields.push(field);
        arrays.push(array);
        for (name, values) in &self.features {
            let (field, array) = column(name, values);
            fields.push(field);
            arrays.push(array);
        }
        Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
    }
}

fn number(value: &Value) -> Option<Option<f64>> {
    match value {
        Value::Null => Some(None),
        Value::Number(n) => n.as_f64().map(Some),
        Value::Bool(b) => Some(Some(f64::from(u8::from(*b)))),
        _ => None,
    }
}

fn column(name: &str, values: &[Value]) -> (Field, ArrayRef) {
    let numbers: Option<Vec<Option<f64>>> = values.iter().map(number).collect();
    if let Some(numbers) = numbers {
        let mut builder = Float64Builder::with_capacity(numbers.len());
        numbers.into_iter().for_each(|v| builder.append_option(v));
        return (
            Field::new(name, DataType::Float64, true),
            Arc::new(builder.finish()),
        );
    }
    let mut builder = StringBuilder::new();
    for value in values {
        match value {
            Value::Null => builder.append_null(),
            Value::String(s) => builder.append_value(s),
            other => builder.append_value(other.to_string()),
        }
    }
    (
        Field::new(name, DataType::Utf8, true),
        Arc::new(builder.finish()),
    )
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Float64Type;
    use bytes::Bytes;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use serde_json::json;

    use super::*;

    fn request(
        id: &str,
        columns: &[&str],
        rows: Vec<Vec<Value>>,
        predictions: Vec<Value>,
    ) -> CapturedRequest {
        CapturedRequest {
            request_id: id.into(),
            at: "2026-12-01T22:00:00Z".parse().unwrap(),
            rows: Rows {
                columns: columns.iter().map(|c| (*c).to_owned()).collect(),
                rows,
            },
            predictions,
        }
    }

    #[test]
    fn a_window_round_trips_through_parquet() {
        let mut window = Window::new("2026-12-01T22:00:00Z".parse().unwrap());
        window.push(request(
            "r1",
            &["a", "b"],
            vec![vec![json!(1.5), json!("x")]],
            vec![json!(0.9)],
        ));
        window.push(request(
            "r2",
            &["a", "c"],
            vec![vec![json!(2), json!(true)], vec![json!(null), json!(false)]],
            vec![json!(0.1), json!(0.2)],
        ));
        window.push(request("r3", &["b"], vec![vec![json!(7)]], vec![]));
        assert_eq!((window.rows(), window.requests()), (4, 3));
        let bytes = window.to_parquet("4").unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes))
            .unwrap()
            .build()
            .unwrap();
        let batch = reader.map(Result::unwrap).next().unwrap();
        let schema = batch.schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            [
                "request_id",
                "timestamp",
                "model_version",
                "prediction",
                "a",
                "b",
                "c"
            ]
        );
        let ids = batch.column(0).as_string::<i32>();
        assert_eq!(
            ids.iter().flatten().collect::<Vec<_>>(),
            ["r1", "r2#0", "r2#1", "r3"]
        );
        let a = batch.column(4).as_primitive::<Float64Type>();
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            [Some(1.5), Some(2.0), None, None]
        );
        // `b` mixes text and a number: text, the number as its JSON.
        let b = batch.column(5).as_string::<i32>();
        assert_eq!(
            b.iter().collect::<Vec<_>>(),
            [Some("x"), None, None, Some("7")]
        );
        let c = batch.column(6).as_primitive::<Float64Type>();
        assert_eq!(
            c.iter().collect::<Vec<_>>(),
            [None, Some(1.0), Some(0.0), None]
        );
        let p = batch.column(3).as_primitive::<Float64Type>();
        assert_eq!(
            p.iter().collect::<Vec<_>>(),
            [Some(0.9), Some(0.1), Some(0.2), None]
        );
    }
}
