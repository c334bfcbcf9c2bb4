//! The scores in a model server's response, for the `model_prediction_score` histogram.
//!
//! Understood shapes (inside MLflow's `{"predictions": …}`, KServe v1's `{"predictions": …}`,
//! KServe v2's `{"outputs": [{"data": …}]}`, or bare):
//! - a list of numbers: one score each;
//! - a list of lists (class probabilities, multi-output): the configured output index, else the
//!   second of two (the positive class) or the largest;
//! - a list of objects: the configured field, else `score`, `probability`, `prediction`; an
//!   object of class → probability gives its largest value;
//! - `{"predictions": {"<field>": [...]}}` (column-oriented output): the configured field, else
//!   the first numeric column.

use serde_json::Value;

/// How scores are picked out of a response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScoreShape {
    /// Field of each prediction object (or output column) holding the score.
    pub field: Option<String>,
    /// Index into each prediction list (multi-output or class probabilities).
    pub output_index: Option<usize>,
}

const FIELDS: [&str; 3] = ["score", "probability", "prediction"];

/// The predictions of a response, one per input row (`None` when the body has none).
pub fn predictions(body: &Value) -> Option<&Value> {
    match body {
        Value::Object(object) => object.get("predictions").or_else(|| {
            object
                .get("outputs")
                .and_then(Value::as_array)
                .and_then(|outputs| outputs.first())
                .and_then(|first| first.get("data"))
        }),
        Value::Array(_) => Some(body),
        _ => None,
    }
}

/// The score of every prediction in `body` that has one.
pub fn scores(body: &Value, shape: &ScoreShape) -> Vec<f64> {
    match predictions(body) {
        Some(Value::Array(list)) => list.iter().filter_map(|p| score(p, shape)).collect(),
        Some(Value::Object(columns)) => column_scores(columns, shape),
        Some(single) => score(single, shape).into_iter().collect(),
        None => Vec::new(),
    }
}

/// The score of one prediction.
pub fn score(prediction: &Value, shape: &ScoreShape) -> Option<f64> {
    match prediction {
        Value::Number(n) => n.as_f64().filter(|v| v.is_finite()),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        Value::Array(values) => {
            let numbers: Vec<f64> = values.iter().filter_map(|v| score(v, shape)).collect();
            match shape.output_index {
                Some(i) => values.get(i).and_then(|v| score(v, shape)),
                None if numbers.len() == 2 && values.len() == 2 => Some(numbers[1]),
                None => numbers.into_iter().reduce(f64::max),
            }
        }
        Value::Object(object) => {
            if let Some(field) = &shape.field {
                return object.get(field).and_then(|v| score(v, shape));
            }
            if let Some(v) = FIELDS.iter().find_map(|f| object.get(*f)) {
                return score(v, shape);
            }
            // Class → probability.
            object
                .values()
                .filter_map(Value::as_f64)
                .filter(|v| v.is_finite())
                .reduce(f64::max)
        }
        Value::Null | Value::String(_) => None,
    }
}

fn column_scores(columns: &serde_json::Map<String, Value>, shape: &ScoreShape) -> Vec<f64> {
    let column = match &shape.field {
        Some(field) => columns.get(field),
        None => FIELDS.iter().find_map(|f| columns.get(*f)).or_else(|| {
            columns
                .values()
                .find(|v| v.as_array().is_some_and(|l| l.iter().any(Value::is_number)))
        }),
    };
    match column {
        Some(Value::Array(list)) => list.iter().filter_map(|p| score(p, shape)).collect(),
        Some(single) => score(single, shape).into_iter().collect(),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn default_scores(body: Value) -> Vec<f64> {
        scores(&body, &ScoreShape::default())
    }

    #[test]
    fn common_shapes() {
        assert_eq!(
            default_scores(json!({"predictions": [0.1, 0.9]})),
            [0.1, 0.9]
        );
        assert_eq!(default_scores(json!([1, 0])), [1.0, 0.0]);
        assert_eq!(
            default_scores(json!({"predictions": [[0.3, 0.7], [0.8, 0.2]]})),
            [0.7, 0.2]
        );
        assert_eq!(
            default_scores(json!({"predictions": [[0.1, 0.6, 0.3]]})),
            [0.6]
        );
        assert_eq!(
            default_scores(json!({"predictions": [{"score": 0.4, "label": "a"}]})),
            [0.4]
        );
        assert_eq!(
            default_scores(json!({"predictions": [{"cat": 0.2, "dog": 0.8}]})),
            [0.8]
        );
        assert_eq!(
            default_scores(json!({"predictions": {"score": [0.5, 0.25]}})),
            [0.5, 0.25]
        );
        assert_eq!(
            default_scores(json!({"outputs": [{"name": "p", "data": [0.5]}]})),
            [0.5]
        );
    }

    #[test]
    fn configured_index_and_field_win() {
        let index = ScoreShape {
            field: None,
            output_index: Some(0),
        };
        assert_eq!(scores(&json!({"predictions": [[0.3, 0.7]]}), &index), [0.3]);
        let field = ScoreShape {
            field: Some("p".into()),
            output_index: None,
        };
        assert_eq!(
            scores(&json!({"predictions": [{"p": 0.2, "score": 0.9}]}), &field),
            [0.2]
        );
    }

    #[test]
    fn no_scores_in_text_nulls_or_non_finite_values() {
        assert!(default_scores(json!({"predictions": ["cat", null]})).is_empty());
        assert!(default_scores(json!({"error_code": "BAD_REQUEST"})).is_empty());
        assert!(default_scores(json!("x")).is_empty());
    }
}
