//! The `shell` action: a fixed argv written in the playbook, run directly
//! as a process (no shell, no interpolation, no globbing).
//!
//! Parameters: `argv` (a non-empty JSON array of strings; the first is the
//! program, looked up on the allowed `PATH`), `timeout_s` (at most
//! `remediate.shell_timeout_s`, its default). The process starts with an
//! empty environment plus only the variables named in
//! `remediate.shell_env_allowlist` (values from pipemedic's environment;
//! when the playbook gives `env`, only those of them it names),
//! stdin closed, in a process group of its own: when the timeout is
//! reached the whole group is killed (children it started too), and
//! whatever it left running in the background is killed when it ends.
//! stdout and
//! stderr are captured up to a cap each (the rest is read and dropped, with
//! a marker). Exit code 0 is success; anything else is a failed outcome.
//!
//! This module runs the argv it is given and nothing else: it never builds
//! or edits a command, and never passes it through a shell.

use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{
    capped_text, ActionCall, ActionKind, ExecError, ExecutionOutcome, ExecutionStatus,
    RESPONSE_CAP_BYTES,
};
use crate::config::{Env, RemediateConfig};

/// Longest stderr line quoted in a failure's summary.
const SUMMARY_STDERR: usize = 200;

/// The process group a shell action runs in (its id is the program's pid).
struct ProcessGroup(Option<u32>);

impl ProcessGroup {
    /// SIGKILL to every process left in the group; a group already gone is
    /// not an error.
    fn kill(&self) {
        #[cfg(unix)]
        if let Some(pgid) = self.0.and_then(|p| libc::pid_t::try_from(p).ok()) {
            // SAFETY: kill(2) takes plain integers and touches no memory of
            // ours; a negative pid addresses the process group.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

/// What the `shell` executor may do.
#[derive(Clone)]
pub struct ShellSettings {
    /// The environment the process gets: the allowlisted variables that
    /// are set, with their values.
    pub env: Vec<(String, String)>,
    /// Default and upper bound of a run's time.
    pub timeout: Duration,
    /// Most bytes kept of stdout, and of stderr.
    pub output_cap: usize,
}

impl std::fmt::Debug for ShellSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Variable values are not shown.
        f.debug_struct("ShellSettings")
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field("output_cap", &self.output_cap)
            .finish()
    }
}

impl ShellSettings {
    /// The allowlisted variables of `env` (a snapshot of pipemedic's
    /// environment), the timeout and the default output cap.
    pub fn from_config(config: &RemediateConfig, env: &Env) -> Self {
        Self {
            env: config
                .shell_env_allowlist
                .iter()
                .filter_map(|name| env.get(name).map(|v| (name.clone(), v.clone())))
                .collect(),
            timeout: Duration::from_secs(config.shell_timeout_s),
            output_cap: RESPONSE_CAP_BYTES,
        }
    }
}

/// Runs `shell` actions.
#[derive(Debug, Clone)]
pub struct ShellExecutor {
    settings: ShellSettings,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShellParams {
    argv: Vec<String>,
    #[serde(default)]
    timeout_s: Option<u64>,
    /// The variables the playbook passes through (its `env`, `[]` by
    /// default): only those of them `remediate.shell_env_allowlist` allows.
    /// Absent: every allowlisted variable.
    #[serde(default)]
    env: Option<Vec<String>>,
}

struct Request {
    argv: Vec<String>,
    timeout: Duration,
    /// The variables the process gets.
    env: Vec<(String, String)>,
}

/// Reads `reader` to its end, keeping at most `cap` bytes; returns them and
/// the total length read.
async fn capture<R: AsyncRead + Unpin>(reader: Option<R>, cap: usize) -> (Vec<u8>, usize) {
    let Some(mut reader) = reader else {
        return (Vec::new(), 0);
    };
    let mut kept = Vec::new();
    let mut total = 0;
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                total += n;
                let room = cap.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (kept, total)
}

impl ShellExecutor {
    pub fn new(settings: ShellSettings) -> Self {
        Self { settings }
    }

    fn request(&self, call: &ActionCall) -> Result<Request, ExecError> {
        let p: ShellParams = call.params_as()?;
        match p.argv.first() {
            None => return Err(ExecError::bad("argv", "must name a program")),
            Some(program) if program.trim().is_empty() => {
                return Err(ExecError::bad("argv[0]", "the program name is empty"))
            }
            Some(_) => {}
        }
        if let Some(i) = p.argv.iter().position(|a| a.contains('\0')) {
            return Err(ExecError::bad(
                &format!("argv[{i}]"),
                "contains a NUL character",
            ));
        }
        let timeout = match p.timeout_s {
            None => self.settings.timeout,
            Some(s) if s >= 1 && Duration::from_secs(s) <= self.settings.timeout => {
                Duration::from_secs(s)
            }
            Some(_) => {
                return Err(ExecError::bad(
                    "timeout_s",
                    format!(
                        "must be between 1 and {} (remediate.shell_timeout_s)",
                        self.settings.timeout.as_secs()
                    ),
                ))
            }
        };
        let env = self
            .settings
            .env
            .iter()
            .filter(|(k, _)| p.env.as_ref().is_none_or(|names| names.contains(k)))
            .cloned()
            .collect();
        Ok(Request {
            argv: p.argv,
            timeout,
            env,
        })
    }

    fn render(&self, request: &Request) -> String {
        let env: Vec<&str> = request.env.iter().map(|(k, _)| k.as_str()).collect();
        format!(
            "exec {} (env: {}; timeout: {}s)",
            json!(request.argv),
            if env.is_empty() {
                "none".to_string()
            } else {
                env.join(", ")
            },
            request.timeout.as_secs()
        )
    }
}

#[async_trait::async_trait]
impl super::Executor for ShellExecutor {
    fn kind(&self) -> ActionKind {
        ActionKind::Shell
    }

    fn describe(&self, call: &ActionCall) -> Result<String, ExecError> {
        Ok(self.render(&self.request(call)?))
    }

    async fn execute(&self, call: &ActionCall) -> Result<ExecutionOutcome, ExecError> {
        let request = self.request(call)?;
        let rendered = self.render(&request);
        let program = request.argv[0].clone();
        let mut command = tokio::process::Command::new(&program);
        command
            .args(&request.argv[1..])
            .env_clear()
            .envs(request.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        command.process_group(0);
        tracing::debug!(program = %program, "Starting the shell action.");
        let mut child = command.spawn().map_err(|source| ExecError::Spawn {
            program: program.clone(),
            source,
        })?;
        let group = ProcessGroup(child.id());
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let cap = self.settings.output_cap;
        let run = async { tokio::join!(capture(stdout, cap), capture(stderr, cap), child.wait()) };
        let ((out, out_total), (err, err_total), status) =
            match tokio::time::timeout(request.timeout, run).await {
                Ok(done) => done,
                Err(_) => {
                    // The group goes first (children the program
                    // started), then the program is killed and reaped.
                    group.kill();
                    let _ = child.kill().await;
                    return Err(ExecError::Timeout {
                        operation: format!("shell {program}"),
                        after: request.timeout,
                    });
                }
            };
        // Nothing the action started outlives it.
        group.kill();
        let status = status.map_err(|source| ExecError::Spawn {
            program: program.clone(),
            source,
        })?;
        let (stdout, stdout_truncated) = capped_text(&out, out_total, cap);
        let (stderr, stderr_truncated) = capped_text(&err, err_total, cap);
        let code = status.code();
        let (outcome_status, summary) = match code {
            Some(0) => (
                ExecutionStatus::Succeeded,
                format!("{program} exited with code 0."),
            ),
            Some(code) => (
                ExecutionStatus::Failed,
                failure_summary(&program, &format!("exited with code {code}"), &stderr),
            ),
            None => (
                ExecutionStatus::Failed,
                failure_summary(&program, "was ended by a signal", &stderr),
            ),
        };
        Ok(ExecutionOutcome {
            status: outcome_status,
            summary,
            call: rendered,
            response: json!({
                "exit_code": code,
                "stdout": stdout,
                "stderr": stderr,
                "stdout_truncated": stdout_truncated,
                "stderr_truncated": stderr_truncated,
            }),
            external_id: None,
        })
    }
}

fn failure_summary(program: &str, what: &str, stderr: &str) -> String {
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(str::trim);
    match last {
        Some(line) => {
            let line: String = line.chars().take(SUMMARY_STDERR).collect();
            format!("{program} {what}: {line}")
        }
        None => format!("{program} {what}."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remediate::Executor;
    use serde_json::Value;

    fn executor() -> ShellExecutor {
        ShellExecutor::new(ShellSettings {
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            timeout: Duration::from_secs(300),
            output_cap: 1024,
        })
    }

    fn call(params: Value) -> ActionCall {
        ActionCall::new(ActionKind::Shell, "checkout-service", "e-1", params)
    }

    #[test]
    fn dry_run_is_the_exact_argv() {
        let e = executor();
        assert_eq!(
            e.describe(&call(
                json!({"argv": ["kubectl", "rollout", "undo", "deploy/checkout; rm -rf /"]})
            ))
            .unwrap(),
            r#"exec ["kubectl","rollout","undo","deploy/checkout; rm -rf /"] (env: PATH; timeout: 300s)"#
        );
        assert_eq!(
            e.describe(&call(json!({"argv": ["true"], "timeout_s": 5})))
                .unwrap(),
            r#"exec ["true"] (env: PATH; timeout: 5s)"#
        );
        let bare = ShellExecutor::new(ShellSettings {
            env: Vec::new(),
            ..executor().settings
        });
        assert_eq!(
            bare.describe(&call(json!({"argv": ["true"]}))).unwrap(),
            r#"exec ["true"] (env: none; timeout: 300s)"#
        );
        // A playbook's `env` (its default is `[]`) is accepted and narrows
        // the allowlisted variables to those it names.
        assert_eq!(
            e.describe(&call(
                json!({"argv": ["/bin/true"], "timeout_s": 300, "env": []})
            ))
            .unwrap(),
            r#"exec ["/bin/true"] (env: none; timeout: 300s)"#
        );
        assert_eq!(
            e.describe(&call(json!({"argv": ["true"], "env": ["PATH", "SECRET"]})))
                .unwrap(),
            r#"exec ["true"] (env: PATH; timeout: 300s)"#
        );
    }

    #[test]
    fn bad_argv_is_refused() {
        let e = executor();
        let field = |params: Value| match e.describe(&call(params)) {
            Err(ExecError::BadParams { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(json!({"argv": []})), "argv");
        assert_eq!(field(json!({"argv": [""]})), "argv[0]");
        assert_eq!(field(json!({"argv": "echo hi"})), "argv");
        assert_eq!(field(json!({"argv": ["echo", 3]})), "argv[1]");
        assert_eq!(field(json!({"argv": ["echo", "a\u{0}b"]})), "argv[1]");
        assert_eq!(
            field(json!({"argv": ["echo"], "timeout_s": 301})),
            "timeout_s"
        );
        assert_eq!(field(json!({"argv": ["echo"], "shell": true})), "shell");
        assert_eq!(field(json!({})), "params");
    }

    #[test]
    fn settings_keep_only_allowlisted_variables() {
        let config = RemediateConfig::default();
        let env: Env = [
            ("PATH", "/bin"),
            ("HOME", "/home/pm"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let settings = ShellSettings::from_config(&config, &env);
        assert_eq!(
            settings.env,
            [
                ("PATH".to_string(), "/bin".to_string()),
                ("HOME".to_string(), "/home/pm".to_string())
            ]
        );
        assert!(!format!("{settings:?}").contains("/home/pm"));
    }

    #[test]
    fn failure_summaries_quote_the_last_stderr_line() {
        assert_eq!(
            failure_summary(
                "deploy",
                "exited with code 2",
                "warming up\nno such release\n\n"
            ),
            "deploy exited with code 2: no such release"
        );
        assert_eq!(
            failure_summary("deploy", "exited with code 1", ""),
            "deploy exited with code 1."
        );
    }
}
