//! Tracking endpoints: experiments and runs.

use serde::{Deserialize, Serialize, Serializer};

use super::client::{Empty, MlflowClient, now_millis};
use super::error::MlflowError;
use super::retry::retry_with_backoff;
use super::types::{Experiment, Run, RunInfo, RunStatus};

#[derive(Deserialize)]
struct RunResponse {
    run: Run,
}

#[derive(Deserialize)]
struct ExperimentResponse {
    experiment: Experiment,
}

#[derive(Deserialize)]
struct CreateExperimentResponse {
    experiment_id: String,
}

#[derive(Deserialize)]
struct UpdateRunResponse {
    #[serde(default)]
    run_info: RunInfo,
}

#[derive(Deserialize, Default)]
struct SearchRunsResponse {
    #[serde(default)]
    runs: Vec<Run>,
}

#[derive(Serialize)]
struct SearchRunsBody<'a> {
    experiment_ids: Vec<&'a str>,
    filter: &'a str,
    max_results: u32,
}

#[derive(Serialize)]
struct Tag<'a> {
    key: &'a str,
    value: &'a str,
}

#[derive(Serialize)]
struct CreateExperimentBody<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    artifact_location: Option<&'a str>,
}

#[derive(Serialize)]
struct CreateRunBody<'a> {
    experiment_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_name: Option<&'a str>,
    user_id: &'a str,
    start_time: i64,
    tags: Vec<Tag<'a>>,
}

#[derive(Serialize)]
struct LogMetricBody<'a> {
    run_id: &'a str,
    key: &'a str,
    #[serde(serialize_with = "ser_f64")]
    value: f64,
    timestamp: i64,
    step: i64,
}

#[derive(Serialize)]
struct RunKeyValueBody<'a> {
    run_id: &'a str,
    key: &'a str,
    value: &'a str,
}

#[derive(Serialize)]
struct UpdateRunBody<'a> {
    run_id: &'a str,
    status: RunStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_time: Option<i64>,
}

/// JSON has no NaN/Infinity: send them as protobuf-JSON strings, which MLflow accepts.
fn ser_f64<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() {
        s.serialize_f64(*v)
    } else if v.is_nan() {
        s.serialize_str("NaN")
    } else if *v > 0.0 {
        s.serialize_str("Infinity")
    } else {
        s.serialize_str("-Infinity")
    }
}

impl MlflowClient {
    /// `GET runs/get`: info, params, tags and the latest value of each metric.
    pub async fn get_run(&self, run_id: &str) -> Result<Run, MlflowError> {
        let r: RunResponse = self
            .get_json("runs/get", &[("run_id", run_id)], &format!("run {run_id}"))
            .await?;
        Ok(r.run)
    }

    /// `GET experiments/get-by-name`; a missing experiment is [`MlflowError::NotFound`].
    pub async fn get_experiment_by_name(&self, name: &str) -> Result<Experiment, MlflowError> {
        let r: ExperimentResponse = self
            .get_json(
                "experiments/get-by-name",
                &[("experiment_name", name)],
                &format!("experiment '{name}'"),
            )
            .await?;
        Ok(r.experiment)
    }

    /// `POST experiments/create`; returns the new experiment's id. An existing name is
    /// [`MlflowError::InvalidRequest`] with `RESOURCE_ALREADY_EXISTS` (see
    /// [`get_or_create_experiment`](Self::get_or_create_experiment)).
    pub async fn create_experiment(
        &self,
        name: &str,
        artifact_location: Option<&str>,
    ) -> Result<String, MlflowError> {
        let body = CreateExperimentBody {
            name,
            artifact_location,
        };
        let r: CreateExperimentResponse = self
            .post_json("experiments/create", &body, &format!("experiment '{name}'"))
            .await?;
        Ok(r.experiment_id)
    }

    /// The id of experiment `name`, creating it if needed (safe against a concurrent creator).
    pub async fn get_or_create_experiment(&self, name: &str) -> Result<String, MlflowError> {
        match self.get_experiment_by_name(name).await {
            Ok(e) => return Ok(e.experiment_id),
            Err(MlflowError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        match self.create_experiment(name, None).await {
            Ok(id) => Ok(id),
            Err(e) if e.error_code() == Some("RESOURCE_ALREADY_EXISTS") => {
                Ok(self.get_experiment_by_name(name).await?.experiment_id)
            }
            Err(e) => Err(e),
        }
    }

    /// `POST runs/create` in `experiment_id`, started now, with `tags`. Not retried (a retry
    /// could create a second run).
    pub async fn create_run(
        &self,
        experiment_id: &str,
        run_name: Option<&str>,
        tags: &[(&str, &str)],
    ) -> Result<Run, MlflowError> {
        let body = CreateRunBody {
            experiment_id,
            run_name,
            user_id: "mlrollout",
            start_time: now_millis(),
            tags: tags.iter().map(|(key, value)| Tag { key, value }).collect(),
        };
        let r: RunResponse = self
            .post_json("runs/create", &body, &format!("experiment {experiment_id}"))
            .await?;
        Ok(r.run)
    }

    /// `POST runs/search` in one experiment with an MLflow filter string (e.g.
    /// ``tags.`mlrollout.io/attempt` = 'abc-1'``); at most `max_results` runs.
    pub async fn search_runs(
        &self,
        experiment_id: &str,
        filter: &str,
        max_results: u32,
    ) -> Result<Vec<Run>, MlflowError> {
        let body = SearchRunsBody {
            experiment_ids: vec![experiment_id],
            filter,
            max_results,
        };
        let r: SearchRunsResponse = self
            .post_json(
                "runs/search",
                &body,
                &format!("runs of experiment {experiment_id}"),
            )
            .await?;
        Ok(r.runs)
    }

    /// `POST runs/log-metric` with the current time. Non-finite values are sent as MLflow
    /// expects them. Retried on transient errors (MLflow ignores an identical duplicate).
    pub async fn log_metric(
        &self,
        run_id: &str,
        key: &str,
        value: f64,
        step: i64,
    ) -> Result<(), MlflowError> {
        let body = LogMetricBody {
            run_id,
            key,
            value,
            timestamp: now_millis(),
            step,
        };
        self.idempotent_post("runs/log-metric", &body, run_id).await
    }

    /// `POST runs/log-parameter`. Params are write-once: logging the same value again is fine,
    /// a different value is [`MlflowError::InvalidRequest`] (`INVALID_PARAMETER_VALUE`).
    pub async fn log_param(&self, run_id: &str, key: &str, value: &str) -> Result<(), MlflowError> {
        let body = RunKeyValueBody { run_id, key, value };
        self.idempotent_post("runs/log-parameter", &body, run_id)
            .await
    }

    /// `POST runs/set-tag` (overwrites). Retried on transient errors.
    pub async fn set_run_tag(
        &self,
        run_id: &str,
        key: &str,
        value: &str,
    ) -> Result<(), MlflowError> {
        let body = RunKeyValueBody { run_id, key, value };
        self.idempotent_post("runs/set-tag", &body, run_id).await
    }

    /// `POST runs/update`: set the status and, if given, the end time (ms since the epoch).
    pub async fn update_run(
        &self,
        run_id: &str,
        status: RunStatus,
        end_time: Option<i64>,
    ) -> Result<RunInfo, MlflowError> {
        let body = UpdateRunBody {
            run_id,
            status,
            end_time,
        };
        let what = format!("run {run_id}");
        let r: UpdateRunResponse = retry_with_backoff(self.retry_policy(), || {
            self.post_json("runs/update", &body, &what)
        })
        .await?;
        Ok(r.run_info)
    }

    /// End a run now with `status` (FINISHED, FAILED or KILLED).
    pub async fn end_run(&self, run_id: &str, status: RunStatus) -> Result<RunInfo, MlflowError> {
        if !status.is_terminal() {
            return Err(MlflowError::Config {
                detail: format!("end_run needs a terminal status, not {status}"),
            });
        }
        self.update_run(run_id, status, Some(now_millis())).await
    }

    async fn idempotent_post<B: Serialize>(
        &self,
        endpoint: &str,
        body: &B,
        run_id: &str,
    ) -> Result<(), MlflowError> {
        let what = format!("run {run_id}");
        retry_with_backoff(self.retry_policy(), || async {
            self.post_json::<Empty, _>(endpoint, body, &what)
                .await
                .map(drop)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_body_encodes_non_finite_values() {
        let body = |value| {
            serde_json::to_string(&LogMetricBody {
                run_id: "r",
                key: "k",
                value,
                timestamp: 1,
                step: 2,
            })
            .unwrap()
        };
        assert_eq!(
            body(0.5),
            r#"{"run_id":"r","key":"k","value":0.5,"timestamp":1,"step":2}"#
        );
        assert!(body(f64::NAN).contains(r#""value":"NaN""#));
        assert!(body(f64::INFINITY).contains(r#""value":"Infinity""#));
        assert!(body(f64::NEG_INFINITY).contains(r#""value":"-Infinity""#));
    }

    #[test]
    fn update_body_uses_mlflow_status_names() {
        let s = serde_json::to_string(&UpdateRunBody {
            run_id: "r",
            status: RunStatus::Failed,
            end_time: Some(3),
        })
        .unwrap();
        assert_eq!(s, r#"{"run_id":"r","status":"FAILED","end_time":3}"#);
    }
}
