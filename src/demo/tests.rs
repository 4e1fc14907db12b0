//! Tests of the demo: which planner the environment selects, and its other
//! pure decisions.

use super::*;

#[test]
fn bedrock_only_when_aws_credentials_are_set() {
    let env = |pairs: &[(&str, &str)]| -> Env {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(DemoPlanner::from_env(&env(&[])), DemoPlanner::Offline);
    assert_eq!(
        DemoPlanner::from_env(&env(&[("AWS_REGION", "eu-west-1"), ("AWS_PROFILE", " ")])),
        DemoPlanner::Offline,
        "a region or an empty profile is no credential"
    );
    for key in [
        "AWS_ACCESS_KEY_ID",
        "AWS_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ] {
        assert_eq!(
            DemoPlanner::from_env(&env(&[(key, "x")])),
            DemoPlanner::Bedrock { endpoint: None },
            "{key}"
        );
    }
}

#[test]
fn each_run_gets_fresh_secrets() {
    let (a, b) = (ephemeral_secret(), ephemeral_secret());
    assert_eq!(a.expose().len(), 32);
    assert_ne!(a.expose(), b.expose());
}

#[test]
fn a_kept_store_is_browsed_through_serve_and_the_console_without_its_password() {
    let hint = browse_hint("postgres://demo:hunter2@db.example:5432/pm");
    assert!(hint.contains("pipemedic serve"), "{hint}");
    assert!(hint.contains("/ui"), "{hint}");
    assert!(hint.contains("db.example:5432/pm"), "{hint}");
    assert!(!hint.contains("hunter2"), "{hint}");
}
