//! Client tests against a tiny canned-response HTTP server on 127.0.0.1 (no MLflow needed).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// One canned answer: status line code, content type, body.
#[derive(Clone)]
struct Canned {
    status: u16,
    content_type: &'static str,
    body: String,
}

fn canned(status: u16, content_type: &'static str, body: &str) -> Canned {
    Canned {
        status,
        content_type,
        body: body.to_owned(),
    }
}

/// Serves `answers` in order (the last one repeats) and records each raw request head+body.
struct TinyServer {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

async fn tiny_server(answers: Vec<Canned>) -> TinyServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = requests.clone();
    tokio::spawn(async move {
        let mut n = 0usize;
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let answer = answers[n.min(answers.len() - 1)].clone();
            n += 1;
            let request = read_request(&mut sock).await;
            log.lock().unwrap().push(request);
            let reason = if answer.status < 400 { "OK" } else { "Error" };
            let head = format!(
                "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                answer.status,
                answer.content_type,
                answer.body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(answer.body.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
    });
    TinyServer { port, requests }
}

async fn read_request(sock: &mut tokio::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = sock.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                break;
            }
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn client(port: u16, auth: MlflowAuth) -> MlflowClient {
    let _ = rustls::crypto::ring::default_provider().install_default();
    MlflowClient::new(
        &format!("http://127.0.0.1:{port}"),
        auth,
        Duration::from_secs(5),
    )
    .unwrap()
    .with_retry_policy(RetryPolicy {
        attempts: 3,
        base: Duration::from_millis(1),
        max: Duration::from_millis(5),
    })
}

#[tokio::test]
async fn malformed_json_is_malformed_response() {
    let srv = tiny_server(vec![canned(200, "application/json", "{not json")]).await;
    let err = client(srv.port, MlflowAuth::None)
        .get_registered_model("m")
        .await
        .unwrap_err();
    assert_eq!(err.category(), "mlflow_malformed_response", "{err}");
    assert!(!err.is_transient());
    // Valid JSON of the wrong shape is malformed too.
    let srv = tiny_server(vec![canned(200, "application/json", r#"{"other": 1}"#)]).await;
    let err = client(srv.port, MlflowAuth::None)
        .get_model_version("m", 1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, MlflowError::MalformedResponse { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn host_check_403_is_forbidden_with_hint() {
    let srv = tiny_server(vec![canned(
        403,
        "text/plain",
        "Invalid Host header - possible DNS rebinding attack detected",
    )])
    .await;
    let c = client(srv.port, MlflowAuth::None)
        .with_host_header("mlflow.ml.svc.cluster.local:5000")
        .unwrap();
    let err = c.get_registered_model("m").await.unwrap_err();
    let MlflowError::Forbidden { message } = &err else {
        panic!("{err:?}")
    };
    assert!(message.contains("--allowed-hosts"), "{message}");
    assert!(
        message.contains("mlflow.ml.svc.cluster.local:5000"),
        "{message}"
    );
    let req = srv.requests.lock().unwrap()[0].to_ascii_lowercase();
    assert!(
        req.contains("\r\nhost: mlflow.ml.svc.cluster.local:5000\r\n"),
        "{req}"
    );
    assert_eq!(req.matches("\r\nhost:").count(), 1, "{req}");
}

#[tokio::test]
async fn server_error_is_retried_for_writes_and_reported() {
    let srv = tiny_server(vec![canned(
        500,
        "application/json",
        r#"{"error_code":"INTERNAL_ERROR","message":"database is locked"}"#,
    )])
    .await;
    let err = client(srv.port, MlflowAuth::None)
        .set_alias("m", "champion", 1)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, MlflowError::Server { status: 500, message } if message.contains("database is locked")),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(srv.requests.lock().unwrap().len(), 3, "3 attempts");
}

#[tokio::test]
async fn transient_then_success() {
    let srv = tiny_server(vec![
        canned(503, "text/html", "<html>upstream busy</html>"),
        canned(200, "application/json", "{}"),
    ])
    .await;
    client(srv.port, MlflowAuth::None)
        .set_model_version_tag("m", 2, "k", "v")
        .await
        .unwrap();
    let reqs = srv.requests.lock().unwrap();
    assert_eq!(reqs.len(), 2);
    assert!(reqs[1].starts_with("POST /api/2.0/mlflow/model-versions/set-tag "));
    assert!(
        reqs[1]
            .to_ascii_lowercase()
            .contains("content-type: application/json")
    );
    assert!(reqs[1].ends_with(r#"{"name":"m","version":"2","key":"k","value":"v"}"#));
}

#[tokio::test]
async fn reads_are_not_retried_and_401_is_unauthorized() {
    let srv = tiny_server(vec![canned(401, "text/plain", "You are not authenticated")]).await;
    let err = client(
        srv.port,
        MlflowAuth::Basic {
            username: "admin".into(),
            password: "secret".into(),
        },
    )
    .get_run("abc")
    .await
    .unwrap_err();
    assert_eq!(err.category(), "mlflow_unauthorized");
    let reqs = srv.requests.lock().unwrap();
    assert_eq!(reqs.len(), 1);
    // base64("admin:secret")
    assert!(reqs[0].contains("YWRtaW46c2VjcmV0"), "{}", reqs[0]);
    assert!(reqs[0].starts_with("GET /api/2.0/mlflow/runs/get?run_id=abc "));
}

#[tokio::test]
async fn delete_alias_sends_json_body_and_treats_missing_alias_as_success() {
    let srv = tiny_server(vec![canned(
        400,
        "application/json",
        r#"{"error_code":"INVALID_PARAMETER_VALUE","message":"Registered model alias gone not found."}"#,
    )])
    .await;
    client(srv.port, MlflowAuth::Bearer("tok".into()))
        .delete_alias("m", "gone")
        .await
        .unwrap();
    let reqs = srv.requests.lock().unwrap();
    assert!(reqs[0].starts_with("DELETE /api/2.0/mlflow/registered-models/alias "));
    assert!(reqs[0].contains("Bearer tok") || reqs[0].contains("bearer tok"));
    assert!(
        reqs[0].ends_with(r#"{"name":"m","alias":"gone"}"#),
        "{}",
        reqs[0]
    );
}

#[tokio::test]
async fn alias_lookup_maps_400_to_alias_not_found() {
    let srv = tiny_server(vec![canned(
        400,
        "application/json",
        r#"{"error_code":"INVALID_PARAMETER_VALUE","message":"Registered model alias champion not found."}"#,
    )])
    .await;
    let err = client(srv.port, MlflowAuth::None)
        .get_model_version_by_alias("m", "champion")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, MlflowError::AliasNotFound { model, alias } if model == "m" && alias == "champion"),
        "{err:?}"
    );
    let req = srv.requests.lock().unwrap()[0].clone();
    assert!(req.starts_with("GET /api/2.0/mlflow/registered-models/alias?name=m&alias=champion "));
}

#[tokio::test]
async fn search_follows_pages() {
    let srv = tiny_server(vec![
        canned(
            200,
            "application/json",
            r#"{"model_versions":[{"name":"m","version":"3"}],"next_page_token":"tok1"}"#,
        ),
        canned(
            200,
            "application/json",
            r#"{"model_versions":[{"name":"m","version":"2","tags":[{"key":"a","value":"x"}]},{"name":"m","version":"1"}]}"#,
        ),
    ])
    .await;
    let c = client(srv.port, MlflowAuth::None);
    let found = c.find_model_version_by_tag("m", "a", "x").await.unwrap();
    assert_eq!(found.map(|v| v.version), Some(2));
    let reqs = srv.requests.lock().unwrap();
    assert_eq!(reqs.len(), 2);
    assert!(
        reqs[0].starts_with(
            "GET /api/2.0/mlflow/model-versions/search?filter=name+%3D+%27m%27&order_by=version_number+DESC&max_results=200 "
        ),
        "{}",
        reqs[0]
    );
    assert!(reqs[1].contains("&page_token=tok1 "), "{}", reqs[1]);
}

#[tokio::test]
async fn closed_port_is_unavailable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c = client(port, MlflowAuth::None).with_retry_policy(RetryPolicy::none());
    let err = c.get_registered_model("m").await.unwrap_err();
    assert_eq!(err.category(), "mlflow_unavailable", "{err}");
    assert!(err.is_transient());
    assert!(std::error::Error::source(&err).is_some());
    let text = err.to_string();
    assert!(text.contains("Connection refused"), "{text}");
}

#[tokio::test]
async fn timeout_is_unavailable() {
    // Accepts but never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let _ = rustls::crypto::ring::default_provider().install_default();
    let c = MlflowClient::new(
        &format!("http://127.0.0.1:{port}"),
        MlflowAuth::None,
        Duration::from_millis(300),
    )
    .unwrap();
    let err = c.get_run("r").await.unwrap_err();
    assert_eq!(err.category(), "mlflow_unavailable", "{err}");
    assert!(err.to_string().contains("timed out"), "{err}");
}

#[tokio::test]
async fn artifact_download_returns_raw_bytes_and_404_is_not_found() {
    let srv = tiny_server(vec![
        canned(200, "application/octet-stream", "raw-bytes\n"),
        canned(404, "text/html", "<h1>Not Found</h1>"),
    ])
    .await;
    let c = client(srv.port, MlflowAuth::None);
    let bytes = c
        .download_artifact("mlflow-artifacts:/1/r1/artifacts/dir/a b.txt")
        .await
        .unwrap();
    assert_eq!(bytes, b"raw-bytes\n");
    let err = c
        .download_artifact("mlflow-artifacts:/1/r1/artifacts/missing")
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    let reqs = srv.requests.lock().unwrap();
    assert!(
        reqs[0]
            .starts_with("GET /api/2.0/mlflow-artifacts/artifacts/1/r1/artifacts/dir/a%20b.txt "),
        "{}",
        reqs[0]
    );
}

#[tokio::test]
async fn an_artifact_over_the_byte_cap_is_refused() {
    let body = "x".repeat(10_000);
    let srv = tiny_server(vec![canned(200, "application/octet-stream", &body)]).await;
    let c = client(srv.port, MlflowAuth::None).with_max_body_bytes(4_096);
    let err = c
        .download_artifact("mlflow-artifacts:/1/r1/artifacts/data.csv")
        .await
        .unwrap_err();
    assert!(
        matches!(err, MlflowError::TooLarge { limit: 4_096, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("larger than 4096 bytes"), "{err}");
    // Under the cap the same answer is read whole.
    let c = client(srv.port, MlflowAuth::None).with_max_body_bytes(10_000);
    let bytes = c
        .download_artifact("mlflow-artifacts:/1/r1/artifacts/data.csv")
        .await
        .unwrap();
    assert_eq!(bytes.len(), 10_000);
}
