//! The generic ingest shape: one normalised [`Run`] or an array of them, as
//! JSON. Parsing reports every invalid field of every run at once, each with
//! its path (`[3].tests.failed`), so a client can fix its payload in one go.

use chrono::{DateTime, Utc};

use crate::domain::{FieldError, Run};

/// Why a body was refused.
#[derive(Debug)]
pub enum GenericError {
    /// Not JSON at all (HTTP 400).
    Malformed(serde_json::Error),
    /// JSON of the wrong shape or with invalid values (HTTP 422).
    Invalid(Vec<FieldError>),
}

/// Parses and validates a body holding one run or an array of runs; `now`
/// bounds future timestamps (see [`Run::validate`]).
pub fn parse_runs(
    body: &[u8],
    max_batch: usize,
    now: DateTime<Utc>,
) -> Result<Vec<Run>, GenericError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(GenericError::Malformed)?;
    let (items, single) = match value {
        serde_json::Value::Array(items) => (items, false),
        obj @ serde_json::Value::Object(_) => (vec![obj], true),
        other => {
            return Err(GenericError::Invalid(vec![FieldError::new(
                "$",
                format!(
                    "expected a run object or an array of runs, got {}",
                    json_kind(&other)
                ),
            )]))
        }
    };
    if items.is_empty() {
        return Err(GenericError::Invalid(vec![FieldError::new(
            "$",
            "the array is empty",
        )]));
    }
    if items.len() > max_batch {
        return Err(GenericError::Invalid(vec![FieldError::new(
            "$",
            format!(
                "{} runs in one request; at most {max_batch} are accepted",
                items.len()
            ),
        )]));
    }
    let mut runs = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let prefix = if single {
            String::new()
        } else {
            format!("[{i}].")
        };
        match parse_one(item, &prefix, now) {
            Ok(run) => runs.push(run),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(runs)
    } else {
        Err(GenericError::Invalid(errors))
    }
}

/// Converts one JSON value into a validated, normalised run.
pub fn parse_one(
    item: serde_json::Value,
    prefix: &str,
    now: DateTime<Utc>,
) -> Result<Run, Vec<FieldError>> {
    let run: Run = serde_path_to_error::deserialize(item).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "$".to_string() } else { path };
        vec![FieldError::new(
            format!("{prefix}{field}"),
            e.into_inner().to_string(),
        )]
    })?;
    normalised_and_valid(run, prefix, now)
}

/// A deserialised run, normalised, when it keeps the run limits
/// ([`Run::validate`]); its problems otherwise.
pub fn normalised_and_valid(
    mut run: Run,
    prefix: &str,
    now: DateTime<Utc>,
) -> Result<Run, Vec<FieldError>> {
    run.normalise();
    let errors = run.validate(prefix, now);
    if errors.is_empty() {
        Ok(run)
    } else {
        Err(errors)
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-25T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn single_and_array() {
        let one = br#"{"pipeline":"p","run_id":"1","status":"succeeded"}"#;
        assert_eq!(parse_runs(one, 10, now()).unwrap().len(), 1);
        let many = br#"[{"pipeline":"p","run_id":"1","status":"succeeded"},{"pipeline":"p","run_id":"2","status":"failed"}]"#;
        assert_eq!(parse_runs(many, 10, now()).unwrap().len(), 2);
    }

    #[test]
    fn every_bad_run_is_named_by_index_and_field() {
        let body = br#"[{"pipeline":"p","run_id":"1","status":"succeeded"},
                        {"pipeline":"p","run_id":"2","status":"blue"},
                        {"pipeline":"","run_id":"3","status":"failed","tests":{"total":1,"failed":2}}]"#;
        let GenericError::Invalid(errors) = parse_runs(body, 10, now()).unwrap_err() else {
            panic!("expected Invalid")
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["[1].status", "[2].pipeline", "[2].tests.failed"]);
    }

    #[test]
    fn malformed_and_wrong_kinds() {
        assert!(matches!(
            parse_runs(b"{not json", 10, now()),
            Err(GenericError::Malformed(_))
        ));
        assert!(matches!(
            parse_runs(b"42", 10, now()),
            Err(GenericError::Invalid(_))
        ));
        assert!(matches!(
            parse_runs(b"[]", 10, now()),
            Err(GenericError::Invalid(_))
        ));
        let many = format!(
            "[{}]",
            [r#"{"pipeline":"p","run_id":"1","status":"failed"}"#; 3].join(",")
        );
        assert!(matches!(
            parse_runs(many.as_bytes(), 2, now()),
            Err(GenericError::Invalid(_))
        ));
    }
}
