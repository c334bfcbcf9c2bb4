//! The default sinks as the operator reads them from its flags.
#![allow(clippy::unwrap_used)]

use super::*;

#[test]
fn default_sinks_parse_from_json_or_yaml_and_are_checked() {
    let json = r#"[{"name":"ops","webhook":{"url":"https://hooks.example.com/ce","secretRef":{"name":"notify","key":"hmac"}}},
                  {"name":"team","slack":{"urlSecretRef":{"name":"notify","key":"slack"}},"events":["promoted","rolledBack"]}]"#;
    let sinks = parse_sinks(json).unwrap();
    assert_eq!(sinks.len(), 2);
    assert_eq!(sinks[0].kind(), crate::api::SinkKind::Webhook);
    assert_eq!(sinks[1].events.len(), 2);
    let yaml = "- name: ops\n  webhook: {url: 'http://receiver.ops:8080/'}\n";
    assert_eq!(parse_sinks(yaml).unwrap()[0].name, "ops");
    for bad in [
        r#"[{"name":"a","webhook":{"url":"https://x/"}},{"name":"a","webhook":{"url":"https://y/"}}]"#,
        r#"[{"name":"a"}]"#,
        r#"[{"name":"a","webhook":{"url":"https://x/"},"slack":{"urlSecretRef":{"name":"s","key":"k"}}}]"#,
        r#"[{"name":"a","webhook":{"url":"file:///etc/passwd"}}]"#,
        r#"[{"name":"a","webhook":{"url":"https://x/"},"events":["everything"]}]"#,
        "{not: a list}",
    ] {
        assert!(parse_sinks(bad).is_err(), "{bad}");
    }
}
