#![allow(clippy::unwrap_used)]

use proptest::prelude::*;

use super::*;

const ID: &str = "0b6a3c52-3d7e-4b8e-9a55-2f1c1a9f7e10";
const TS: &str = "1767225600";
const NOW: i64 = 1_767_225_600;
const WINDOW: Duration = Duration::from_secs(300);
/// A body as MLflow 3 serializes it (`json.dumps`), and the signature MLflow's own
/// `_generate_hmac_signature("s3cr3t", ID, TS, BODY)` gives for it (computed with the venv's
/// MLflow 3.17): the scheme here is MLflow's, byte for byte.
const BODY: &str = r#"{"entity": "model_version", "action": "created", "timestamp": "2026-01-01T00:00:00+00:00", "data": {"name": "fraud", "version": "3", "source": "models:/m-1", "run_id": null, "tags": {}, "description": null}}"#;
const MLFLOW_SIGNATURE: &str = "v1,dHoKs9p1VdEAtVdR7woLIV88B2Xw6PLWAcfE5PdhJyE=";

fn headers<'a>(id: &'a str, ts: &'a str, signature: &'a str) -> DeliveryHeaders<'a> {
    DeliveryHeaders {
        delivery_id: Some(id),
        timestamp: Some(ts),
        signature: Some(signature),
    }
}

#[test]
fn mlflows_own_signature_verifies_and_ours_is_the_same() {
    let key = key(b"s3cr3t");
    let ok = authenticate(
        &key,
        headers(ID, TS, MLFLOW_SIGNATURE),
        BODY.as_bytes(),
        NOW,
        WINDOW,
    )
    .unwrap();
    assert_eq!((ok.delivery_id, ok.timestamp), (ID, NOW));
    assert_eq!(sign(&key, ID, TS, BODY.as_bytes()), MLFLOW_SIGNATURE);
}

#[test]
fn each_refusal_names_what_is_wrong() {
    let key = key(b"s3cr3t");
    let body = BODY.as_bytes();
    let check =
        |h: DeliveryHeaders<'_>, now: i64| authenticate(&key, h, body, now, WINDOW).map(|_| ());
    let no_signature = DeliveryHeaders {
        signature: None,
        ..headers(ID, TS, "")
    };
    assert_eq!(check(no_signature, NOW), Err(Refusal::MissingSignature));
    let wrong = sign(&super::key(b"other"), ID, TS, body);
    assert_eq!(
        check(headers(ID, TS, &wrong), NOW),
        Err(Refusal::BadSignature)
    );
    // Signed for another delivery id or time: the signature covers both.
    assert_eq!(
        check(headers("another-id", TS, MLFLOW_SIGNATURE), NOW),
        Err(Refusal::BadSignature)
    );
    assert_eq!(
        check(headers(ID, "1767225601", MLFLOW_SIGNATURE), NOW),
        Err(Refusal::BadSignature)
    );
    assert_eq!(
        check(headers(ID, TS, "v2,abc v1,!!notbase64"), NOW),
        Err(Refusal::BadSignature)
    );
    let no_id = DeliveryHeaders {
        delivery_id: None,
        ..headers(ID, TS, MLFLOW_SIGNATURE)
    };
    assert_eq!(
        check(no_id, NOW),
        Err(Refusal::MissingHeader("X-MLflow-Delivery-Id"))
    );
    assert_eq!(
        check(headers("id with spaces", TS, MLFLOW_SIGNATURE), NOW),
        Err(Refusal::BadDeliveryId)
    );
    // A second signature (a rotation) may sit beside the right one.
    let rotated = format!("{wrong} {MLFLOW_SIGNATURE}");
    assert!(check(headers(ID, TS, &rotated), NOW).is_ok());
    // Freshness, either way.
    assert_eq!(
        check(headers(ID, TS, MLFLOW_SIGNATURE), NOW + 301),
        Err(Refusal::Stale {
            age_seconds: 301,
            max_age_seconds: 300
        })
    );
    assert!(check(headers(ID, TS, MLFLOW_SIGNATURE), NOW + 300).is_ok());
    assert_eq!(
        check(headers(ID, TS, MLFLOW_SIGNATURE), NOW - 301),
        Err(Refusal::FromTheFuture {
            ahead_seconds: 301,
            max_age_seconds: 300
        })
    );
    // A signed timestamp that is not a number (only the secret's holder could send it).
    let odd = sign(&key, ID, "+17", body);
    assert_eq!(
        check(headers(ID, "+17", &odd), NOW),
        Err(Refusal::BadTimestamp)
    );
    assert_eq!(Refusal::BadSignature.outcome(), Outcome::BadSignature);
    assert_eq!(Refusal::BadTimestamp.outcome(), Outcome::Malformed);
    assert_eq!(
        Refusal::FromTheFuture {
            ahead_seconds: 1,
            max_age_seconds: 0
        }
        .outcome(),
        Outcome::Stale
    );
}

#[test]
fn every_model_event_mlflow_documents_parses() {
    // MLflow's own example payloads (`get_example_payload_for_event`), in its envelope.
    let event = |entity: &str, action: &str, data: &str| {
        let body = format!(
            r#"{{"entity": "{entity}", "action": "{action}", "timestamp": "2026-01-01T00:00:00+00:00", "data": {data}}}"#
        );
        parse_event(body.as_bytes())
    };
    let model = |change| {
        Ok(Event::Model(ModelEvent {
            model: "example_model".into(),
            change,
        }))
    };
    assert_eq!(
        event(
            "model_version",
            "created",
            r#"{"name": "example_model", "version": "1", "source": "models:/123", "run_id": "abcd1234abcd5678", "tags": {"example_key": "example_value"}, "description": "An example model version"}"#
        ),
        model(ModelChange::VersionCreated {
            version: "1".into()
        })
    );
    let tag = model(ModelChange::Tag {
        version: "1".into(),
        key: "example_key".into(),
    });
    assert_eq!(
        event(
            "model_version_tag",
            "set",
            r#"{"name": "example_model", "version": "1", "key": "example_key", "value": "example_value"}"#
        ),
        tag
    );
    assert_eq!(
        event(
            "model_version_tag",
            "deleted",
            r#"{"name": "example_model", "version": "1", "key": "example_key"}"#
        ),
        tag
    );
    let alias = model(ModelChange::Alias {
        alias: "example_alias".into(),
    });
    assert_eq!(
        event(
            "model_version_alias",
            "created",
            r#"{"name": "example_model", "alias": "example_alias", "version": "1"}"#
        ),
        alias
    );
    assert_eq!(
        event(
            "model_version_alias",
            "deleted",
            r#"{"name": "example_model", "alias": "example_alias"}"#
        ),
        alias
    );
    assert_eq!(
        event("prompt", "created", r#"{"name": "p"}"#),
        Ok(Event::Other {
            entity: "prompt".into(),
            action: "created".into()
        })
    );
    assert!(matches!(
        event("model_version_alias", "created", r#"{"name": "m"}"#),
        Err(Refusal::Malformed(m)) if m.contains("alias")
    ));
    assert!(matches!(
        event("model_version", "created", r#"{"version": "1"}"#),
        Err(Refusal::Malformed(_))
    ));
    assert!(matches!(
        parse_event(b"not json"),
        Err(Refusal::Malformed(_))
    ));
}

#[test]
fn an_event_concerns_resources_of_its_model_and_alias_events_only_the_alias_followed() {
    let source = |name: &str, alias: &str| crate::api::ModelSource {
        tracking_uri: "http://mlflow:5000".into(),
        name: name.into(),
        alias: alias.into(),
        version: None,
        credentials_secret: None,
    };
    let event = |change| ModelEvent {
        model: "fraud".into(),
        change,
    };
    let created = event(ModelChange::VersionCreated {
        version: "2".into(),
    });
    assert!(created.concerns(&source("fraud", "champion")));
    assert!(!created.concerns(&source("churn", "champion")));
    let champion = event(ModelChange::Alias {
        alias: "champion".into(),
    });
    assert!(champion.concerns(&source("fraud", "champion")));
    assert!(!champion.concerns(&source("fraud", "prod")));
    let challenger = event(ModelChange::Alias {
        alias: "challenger".into(),
    });
    assert!(!challenger.concerns(&source("fraud", "champion")));
}

proptest! {
    /// Whatever is signed with the secret verifies; a change of one byte of the body, or
    /// another secret, does not.
    #[test]
    fn a_signature_holds_for_exactly_its_content(
        secret in proptest::collection::vec(any::<u8>(), 1..64),
        other in proptest::collection::vec(any::<u8>(), 1..64),
        body in proptest::collection::vec(any::<u8>(), 0..512),
        id in "[A-Za-z0-9-]{1,64}",
        ts in 1i64..4_000_000_000,
        flip in any::<proptest::sample::Index>(),
    ) {
        let key = key(&secret);
        let ts_text = ts.to_string();
        let signature = sign(&key, &id, &ts_text, &body);
        let h = headers(&id, &ts_text, &signature);
        prop_assert!(authenticate(&key, h, &body, ts, WINDOW).is_ok());
        if !body.is_empty() {
            let mut altered = body.clone();
            altered[flip.index(body.len())] ^= 0x01;
            prop_assert_eq!(
                authenticate(&key, h, &altered, ts, WINDOW),
                Err(Refusal::BadSignature)
            );
        }
        if other != secret {
            prop_assert_eq!(
                authenticate(&super::key(&other), h, &body, ts, WINDOW),
                Err(Refusal::BadSignature)
            );
        }
    }

    /// Fresh exactly when signed within the window of now, either way.
    #[test]
    fn freshness_is_the_window_either_way(
        signed in 0i64..4_000_000_000,
        offset in -2_000i64..2_000,
        window in 0u64..1_000,
    ) {
        let fresh = check_age(signed, signed + offset, Duration::from_secs(window)).is_ok();
        prop_assert_eq!(fresh, offset.unsigned_abs() <= window);
    }

    /// Hostile headers and bodies are refused or parsed, never a panic.
    #[test]
    fn hostile_input_never_panics(
        id in proptest::option::of(".{0,200}"),
        ts in proptest::option::of(".{0,30}"),
        signature in proptest::option::of(".{0,300}"),
        body in proptest::collection::vec(any::<u8>(), 0..256),
        now in any::<i64>(),
        window in any::<u64>(),
    ) {
        let h = DeliveryHeaders {
            delivery_id: id.as_deref(),
            timestamp: ts.as_deref(),
            signature: signature.as_deref(),
        };
        let _ = authenticate(&key(b"k"), h, &body, now, Duration::from_secs(window));
        let _ = parse_event(&body);
        let _ = check_age(now, now.wrapping_neg(), Duration::from_secs(window));
    }
}
