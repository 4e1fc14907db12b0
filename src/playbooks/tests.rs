use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::domain::{Direction, MetricDeviation, RunStatus};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/playbooks")
}

fn bundled_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks")
}

fn allow_example() -> LoadOptions {
    LoadOptions {
        http_allowed_hosts: vec!["hooks.example.com".to_string()],
    }
}

/// Every broken fixture gives exactly this error: (file, line, field, message).
const BROKEN: [(&str, usize, &str, &str); 20] = [
    ("approval-none-high-risk.md", 9, "actions[0].approval", "`approval: none` is allowed only for low-risk actions; `rollback` is high risk"),
    ("bad-approvers.md", 9, "approval.from[0]", "must be `group:NAME` or `user:ID`"),
    ("bad-direction.md", 5, "when[0].direction", "`sideways` is not a direction: use up or down"),
    ("bad-regex.md", 6, "when.log", "invalid regular expression: unclosed group"),
    ("bad-status.md", 4, "when.status", "`FAILED` is not a run status: use succeeded, failed, cancelled or running"),
    ("direction-without-metric.md", 6, "when.direction", "direction needs a metric in the same condition"),
    ("duplicate-id-b.md", 2, "id", "duplicate playbook id `duplicate-id`, first defined at "),
    ("empty-body.md", 6, "body", "the runbook text below the front matter is empty"),
    ("http-not-allowlisted.md", 10, "actions[0].with.url", "host `hooks.elsewhere.example` is not on remediate.http_allowlist (hooks.example.com)"),
    ("missing-risk.md", 6, "actions[0].risk", "missing: low or high"),
    ("no-front-matter.md", 1, "front matter", "a playbook starts with a `---` line, then YAML front matter, then `---`"),
    ("shell-via-sh.md", 9, "actions[0].with.argv[0]", "`sh` is a shell; write the command itself as argv, without a shell"),
    ("template-unknown-fact.md", 10, "actions[0].with.reason", "template does not render: `log_excerpt` is not an incident fact; templates may use only incident_id, pipeline, run_id, status, stage, commit, commit_author, attempt, execution_id, log_url, run_url, last_normal_run_id, last_normal_commit"),
    ("unclosed-front-matter.md", 1, "front matter", "the front matter is not closed by a `---` line"),
    ("unknown-field.md", 4, "trigger", "unknown field `trigger`, expected one of `id`, `title`, `when`, `actions`, `approval`, `links`"),
    ("unknown-param.md", 8, "actions[0].with.force", "`codepipeline.retry_stage` takes no parameter `force`; it accepts: stage, mode"),
    ("unknown-uses.md", 7, "actions[0].uses", "unknown action kind `codepipeline.restart`; known kinds: codepipeline.retry_stage, codepipeline.rollback_stage, codepipeline.start_execution, codepipeline.stop_execution, github.rerun_failed_jobs, http, shell"),
    ("unquoted-template.md", 9, "actions[0].with.stage", "expected a string, found a mapping; quote templates: \"{{stage}}\""),
    ("wrong-param-type.md", 9, "actions[0].with.abandon", "expected a boolean (true or false), found a string"),
    ("yaml-syntax.md", 6, "front matter", "mapping values are not allowed in this context"),
];

#[test]
fn each_broken_fixture_gives_its_exact_error() {
    let dir = fixtures().join("broken");
    let report = check_dir(&dir, &allow_example());
    assert_eq!(report.exit_code(), 2);
    // duplicate-id-a.md is valid on its own; every other file fails once.
    assert_eq!(report.files, BROKEN.len() + 1);
    assert_eq!(report.valid.len(), 1);
    let got: Vec<(String, usize, String, String)> = report
        .errors
        .iter()
        .map(|e| {
            (
                e.file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                e.line,
                e.field.clone(),
                e.message.clone(),
            )
        })
        .collect();
    assert_eq!(got.len(), BROKEN.len(), "{got:#?}");
    for ((file, line, field, message), (gfile, gline, gfield, gmessage)) in BROKEN.iter().zip(&got)
    {
        assert_eq!(
            (*file, *line, *field),
            (gfile.as_str(), *gline, gfield.as_str())
        );
        if file.starts_with("duplicate") {
            assert!(gmessage.starts_with(message), "{gmessage}");
            assert!(gmessage.ends_with("duplicate-id-a.md:2"), "{gmessage}");
        } else {
            assert_eq!(*message, gmessage.as_str(), "{file}");
        }
    }
    let shown = report.errors[0].to_string();
    assert!(
        shown.ends_with("approval-none-high-risk.md:9: actions[0].approval: `approval: none` is allowed only for low-risk actions; `rollback` is high risk"),
        "{shown}"
    );
}

#[test]
fn all_problems_in_one_file_are_reported_together() {
    let text = "---\nid: Not_An_Id\ntitle: t\nwhen:\n  - { metric: x, direction: left }\n  - { status: done }\nactions:\n  - id: a\n    uses: codepipeline.retry_stage\n    with: { mode: SOME_ACTIONS }\n    risk: medium\n---\nbody\n";
    let errors =
        parse_playbook(Path::new("multi.md"), text, &LoadOptions::default()).expect_err("invalid");
    let got: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.field.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (2, "id"),
            (5, "when[0].direction"),
            (6, "when[1].status"),
            (11, "actions[0].risk"),
            (10, "actions[0].with.mode"),
        ]
    );
}

#[test]
fn bundled_playbooks_are_valid_and_match_the_directory() {
    let catalog = Catalog::bundled().expect("bundled playbooks are valid");
    let ids: Vec<&str> = catalog.playbooks().iter().map(|p| p.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "build-duration-regression",
            "dependency-outage",
            "deploy-regression",
            "flaky-tests",
            "hung-stage",
            "resource-exhaustion"
        ]
    );
    let report = check_dir(&bundled_dir(), &LoadOptions::default());
    assert_eq!(report.exit_code(), 0, "{report}");
    assert_eq!(report.valid.len(), 6);

    let kinds = |id: &str| -> Vec<(ActionKind, Risk)> {
        catalog
            .get(id)
            .map(|p| p.actions.iter().map(|a| (a.kind, a.risk)).collect())
            .unwrap_or_default()
    };
    assert_eq!(
        kinds("flaky-tests"),
        [
            (ActionKind::CodepipelineRetryStage, Risk::Low),
            (ActionKind::GithubRerunFailedJobs, Risk::Low)
        ]
    );
    assert_eq!(
        kinds("deploy-regression"),
        [(ActionKind::CodepipelineRollbackStage, Risk::High)]
    );
    assert_eq!(
        kinds("hung-stage"),
        [
            (ActionKind::CodepipelineStopExecution, Risk::High),
            (ActionKind::CodepipelineStartExecution, Risk::Low)
        ]
    );
    assert!(kinds("build-duration-regression").is_empty());
    let outage = catalog.get("dependency-outage").expect("present");
    assert!(outage
        .actions
        .iter()
        .all(|a| a.delay == Some(Duration::from_secs(900))));
    // The clean rerun retries every action of the stage.
    let flaky = catalog.get("flaky-tests").expect("present");
    assert_eq!(flaky.actions[0].with["mode"], "ALL_ACTIONS");
}

#[test]
fn approval_defaults_follow_risk_and_playbook_settings() {
    let catalog = Catalog::bundled().expect("valid");
    let rollback = &catalog.get("deploy-regression").expect("present").actions[0];
    assert_eq!(rollback.approval, ApprovalPolicy::for_risk(Risk::High));
    assert_eq!(
        rollback.approval,
        ApprovalPolicy::Required {
            required: 2,
            from: vec![]
        }
    );
    let retry = &catalog.get("resource-exhaustion").expect("present").actions[0];
    assert_eq!(
        retry.approval,
        ApprovalPolicy::Required {
            required: 1,
            from: vec![]
        }
    );

    let valid = load_dir(&fixtures().join("valid"), &allow_example()).expect("valid");
    let p = valid.get("cache-reset").expect("present");
    assert_eq!(
        p.action("purge-cache").expect("a").approval,
        ApprovalPolicy::None
    );
    let inherited = ApprovalPolicy::Required {
        required: 1,
        from: vec![
            "group:build-owners".to_string(),
            "user:U024BE7LH".to_string(),
        ],
    };
    assert_eq!(p.action("notify-release").expect("a").approval, inherited);
    assert_eq!(
        p.action("retry-after-purge").expect("a").approval,
        inherited
    );
    assert_eq!(
        p.action("retry-after-purge").expect("a").delay,
        Some(Duration::from_secs(120))
    );
}

#[test]
fn http_actions_need_the_host_on_the_allowlist() {
    let dir = fixtures().join("valid");
    let errors = load_dir(&dir, &LoadOptions::default()).expect_err("no allowlist");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].field, "actions[1].with.url");
    assert_eq!(errors[0].line, 19);
    let wildcard = LoadOptions {
        http_allowed_hosts: vec!["*.example.com".to_string()],
    };
    assert!(load_dir(&dir, &wildcard).is_ok());
}

#[test]
fn a_missing_directory_is_one_error_and_exit_code_2() {
    let report = check_dir(&fixtures().join("does-not-exist"), &LoadOptions::default());
    assert_eq!(report.exit_code(), 2);
    assert_eq!(report.errors.len(), 1);
    assert_eq!(report.errors[0].line, 0);
    assert!(report.errors[0]
        .message
        .starts_with("cannot read directory"));
}

fn dev(metric: &str, direction: Direction, attribution: f64) -> MetricDeviation {
    MetricDeviation {
        metric: metric.to_string(),
        observed: 2.0,
        expected: 1.0,
        direction,
        attribution,
        dismissed: None,
    }
}

fn ids(catalog: &Catalog, subject: &MatchSubject<'_>) -> Vec<String> {
    catalog
        .matching(subject)
        .iter()
        .map(|m| m.playbook.id.clone())
        .collect()
}

#[test]
fn matching_selects_playbooks_by_metric_status_stage_pipeline_and_log() {
    let catalog = Catalog::bundled().expect("valid");
    let base = MatchSubject {
        pipeline: "checkout-service",
        status: RunStatus::Failed,
        stage: Some("Test"),
        metrics: &[],
        log_excerpt: None,
    };

    let flaky = [dev("test_failure_rate", Direction::Up, 0.9)];
    assert_eq!(
        ids(
            &catalog,
            &MatchSubject {
                metrics: &flaky,
                ..base
            }
        ),
        ["flaky-tests"]
    );
    // Direction matters: a falling failure rate is good news.
    let better = [dev("test_failure_rate", Direction::Down, 0.9)];
    assert!(ids(
        &catalog,
        &MatchSubject {
            metrics: &better,
            ..base
        }
    )
    .is_empty());

    let oom = MatchSubject {
        log_excerpt: Some("Killed\nerror Command failed with exit code 137 (OOMKilled)"),
        ..base
    };
    assert_eq!(ids(&catalog, &oom), ["resource-exhaustion"]);

    let outage = MatchSubject {
        stage: Some("Build"),
        log_excerpt: Some("npm ERR! network request to https://registry.npmjs.org failed, reason: getaddrinfo EAI_AGAIN registry.npmjs.org"),
        ..base
    };
    assert_eq!(ids(&catalog, &outage), ["dependency-outage"]);

    let spike = [
        dev("error_rate", Direction::Up, 0.8),
        dev("latency_p95_ms", Direction::Up, 0.2),
    ];
    let deploy = MatchSubject {
        status: RunStatus::Succeeded,
        stage: Some("Deploy"),
        metrics: &spike,
        ..base
    };
    assert_eq!(ids(&catalog, &deploy), ["deploy-regression"]);

    let slow = [dev("stage.Build.duration_s", Direction::Up, 1.0)];
    let hung = MatchSubject {
        status: RunStatus::Running,
        stage: Some("Build"),
        metrics: &slow,
        ..base
    };
    assert_eq!(ids(&catalog, &hung), ["hung-stage"]);
    let regression = MatchSubject {
        status: RunStatus::Succeeded,
        ..hung
    };
    assert_eq!(ids(&catalog, &regression), ["build-duration-regression"]);

    // The flaky-tests log alternative needs a test stage.
    let flaky_log = MatchSubject {
        log_excerpt: Some("1 flaky test: CartServiceTest.testApplyCoupon"),
        ..base
    };
    assert_eq!(ids(&catalog, &flaky_log), ["flaky-tests"]);
    assert!(ids(
        &catalog,
        &MatchSubject {
            stage: Some("Deploy"),
            ..flaky_log
        }
    )
    .is_empty());
}

#[test]
fn matching_ranks_by_evidence_then_id() {
    let catalog = Catalog::bundled().expect("valid");
    // OOM in the log and a memory spike: resource exhaustion ranks first;
    // the failure-rate rise also fits flaky tests, ranked below.
    let metrics = [
        dev("mem_peak_mb", Direction::Up, 0.7),
        dev("test_failure_rate", Direction::Up, 0.3),
    ];
    let subject = MatchSubject {
        pipeline: "checkout-service",
        status: RunStatus::Failed,
        stage: Some("Test"),
        metrics: &metrics,
        log_excerpt: Some("java.lang.OutOfMemoryError: Java heap space"),
    };
    let matches = catalog.matching(&subject);
    let ranked: Vec<(&str, f64)> = matches
        .iter()
        .map(|m| (m.playbook.id.as_str(), m.score))
        .collect();
    assert_eq!(ranked[0].0, "resource-exhaustion");
    assert_eq!(ranked[1].0, "flaky-tests");
    assert!(ranked[0].1 > ranked[1].1);
    assert!(matches[0].reasons.iter().any(|r| r.contains("mem_peak_mb")));
    // Same input, same order.
    let again: Vec<&str> = catalog
        .matching(&subject)
        .iter()
        .map(|m| m.playbook.id.as_str())
        .collect();
    assert_eq!(again, ["resource-exhaustion", "flaky-tests"]);
}

#[test]
fn pipeline_globs_restrict_matches() {
    let text = "---\nid: only-web\ntitle: Web pipelines only\nwhen: { status: failed, pipeline: \"web-*\" }\n---\nRunbook.\n";
    let playbook =
        parse_playbook(Path::new("only-web.md"), text, &LoadOptions::default()).expect("valid");
    let subject = MatchSubject {
        pipeline: "web-frontend",
        status: RunStatus::Failed,
        stage: None,
        metrics: &[],
        log_excerpt: None,
    };
    assert!(playbook.evaluate(&subject).is_some());
    assert!(playbook
        .evaluate(&MatchSubject {
            pipeline: "api",
            ..subject
        })
        .is_none());
}

#[test]
fn the_report_prints_every_error_and_a_readme_is_not_a_playbook() {
    let report = check_dir(&fixtures().join("broken"), &allow_example());
    let text = report.to_string();
    assert_eq!(
        text.lines().filter(|l| l.starts_with("error: ")).count(),
        20
    );
    assert!(
        text.ends_with("20 error(s) in 21 file(s); 1 playbook(s) valid\n"),
        "{text}"
    );
    // playbooks/README.md documents the format and is skipped.
    assert!(bundled_dir().join("README.md").is_file());
    let ok = check_dir(&bundled_dir(), &LoadOptions::default());
    assert_eq!(ok.to_string(), "6 playbooks OK\n");
    assert_eq!(ok.files, 6);
}

#[test]
fn load_or_bundled_falls_back_without_a_directory() {
    let none = Catalog::load_or_bundled(None, &LoadOptions::default()).expect("bundled");
    assert_eq!(none.len(), 6);
    let missing = Catalog::load_or_bundled(
        Some(&fixtures().join("does-not-exist")),
        &LoadOptions::default(),
    )
    .expect("bundled");
    assert_eq!(missing.len(), 6);
    let valid =
        Catalog::load_or_bundled(Some(&fixtures().join("valid")), &allow_example()).expect("valid");
    assert_eq!(valid.len(), 1);
}

#[test]
fn http_templates_cannot_bypass_escaping_and_json_bodies_must_parse() {
    let text = |with: &str| {
        format!("---\nid: hook\ntitle: Hook\nwhen: {{ status: failed }}\nactions:\n  - id: call\n    uses: http\n    with:\n      method: POST\n{with}    risk: low\n---\nRunbook.\n")
    };
    let check = |with: &str| -> Vec<(usize, String, String)> {
        parse_playbook(Path::new("hook.md"), &text(with), &allow_example())
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.line, e.field, e.message))
            .collect()
    };
    assert!(check("      url: \"https://hooks.example.com/x/{{pipeline}}\"\n").is_empty());
    assert_eq!(
        check("      url: \"https://hooks.example.com/x\"\n      body: '{\"who\": \"{{{commit_author}}}\"}'\n"),
        vec![(
            11,
            "actions[0].with.body".to_string(),
            "template does not render: unescaped output (`{{{name}}}`, `{{&name}}`) is not allowed; use `{{name}}`".to_string()
        )]
    );
    assert_eq!(
        check("      url: \"https://hooks.example.com/x\"\n      body: '{\"who\": {{commit_author}}}'\n"),
        vec![(
            11,
            "actions[0].with.body".to_string(),
            "looks like JSON but is not valid JSON once rendered".to_string()
        )]
    );
    assert_eq!(
        check("      url: \"https://{{pipeline}}.example.com/x\"\n"),
        vec![(
            10,
            "actions[0].with.url".to_string(),
            "the host must be written out, not templated".to_string()
        )]
    );
    assert_eq!(
        check("      url: \"https://ops:hunter2@hooks.example.com/x\"\n"),
        vec![(
            10,
            "actions[0].with.url".to_string(),
            "must not carry credentials in the URL".to_string()
        )]
    );
}

#[test]
fn shell_flags_name_facts_that_start_an_argument() {
    let text = |flags: &str, uses: &str| {
        format!(
            "---\nid: purge\ntitle: Purge\nwhen: {{ status: failed }}\nactions:\n  - id: purge\n    uses: {uses}\n    with: {{ argv: [\"/usr/local/bin/purge\", \"{{{{stage}}}}\", \"--run={{{{run_id}}}}\"] }}\n    flags: {flags}\n    risk: low\n---\nRunbook.\n"
        )
    };
    let ok = parse_playbook(
        Path::new("purge.md"),
        &text("[stage]", "shell"),
        &LoadOptions::default(),
    )
    .expect("valid");
    assert_eq!(ok.actions[0].flags, ["stage"]);
    let messages = |flags: &str, uses: &str| -> Vec<(String, String)> {
        parse_playbook(
            Path::new("purge.md"),
            &text(flags, uses),
            &LoadOptions::default(),
        )
        .expect_err("invalid")
        .into_iter()
        .map(|e| (e.field, e.message))
        .collect()
    };
    assert_eq!(
        messages("[run_id]", "shell"),
        [(
            "actions[0].flags[0]".to_string(),
            "no argument of `argv` starts with `{{run_id}}`, so `run_id` cannot fill a flag"
                .to_string()
        )]
    );
    let unknown = messages("[branch]", "shell");
    assert_eq!(unknown[0].0, "actions[0].flags[0]");
    assert!(unknown[0].1.contains("not an incident fact"), "{unknown:?}");
    let wrong_kind = text("[stage]", "codepipeline.retry_stage").replace(
        "with: { argv: [\"/usr/local/bin/purge\", \"{{stage}}\", \"--run={{run_id}}\"] }\n    ",
        "",
    );
    let errors = parse_playbook(Path::new("purge.md"), &wrong_kind, &LoadOptions::default())
        .expect_err("flags on a non-shell action");
    assert_eq!(errors[0].field, "actions[0].flags");
    assert!(
        errors[0].message.contains("only `shell`"),
        "{}",
        errors[0].message
    );
}

#[test]
fn playbook_level_approval_none_is_refused_for_high_risk_actions() {
    let text = "---\nid: auto\ntitle: Automatic\nwhen: { status: failed }\nactions:\n  - id: retry\n    uses: codepipeline.retry_stage\n    risk: low\n  - id: rollback\n    uses: codepipeline.rollback_stage\n    risk: high\napproval: none\n---\nRunbook.\n";
    let errors = parse_playbook(Path::new("auto.md"), text, &LoadOptions::default())
        .expect_err("high risk without approval");
    let got: Vec<(usize, &str, &str)> = errors
        .iter()
        .map(|e| (e.line, e.field.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![(
            12,
            "approval",
            "`approval: none` is allowed only for low-risk actions; `rollback` is high risk"
        )]
    );
    // The same policy on the low-risk action alone is accepted and exposed.
    let ok = text.replace(
        "  - id: rollback\n    uses: codepipeline.rollback_stage\n    risk: high\n",
        "",
    );
    let playbook =
        parse_playbook(Path::new("auto.md"), &ok, &LoadOptions::default()).expect("valid");
    assert_eq!(playbook.actions[0].approval, ApprovalPolicy::None);
}

#[test]
fn every_action_kind_has_a_consistent_parameter_schema() {
    for kind in ActionKind::ALL {
        assert_eq!(ActionKind::parse(kind.as_str()), Some(kind));
        for spec in kind.params() {
            // A plan may choose only among enumerable values.
            if spec.setter == ParamSetter::Plan {
                assert!(!spec.ty.allowed_values().is_empty(), "{kind} {}", spec.name);
                assert!(spec.default.is_some(), "{kind} {}", spec.name);
            }
            // Commands, URLs and bodies are the playbook's alone.
            if matches!(spec.name, "argv" | "url" | "body" | "method" | "env") {
                assert_eq!(
                    spec.setter,
                    ParamSetter::PlaybookOnly,
                    "{kind} {}",
                    spec.name
                );
            }
            assert!(spec.ty.json_schema().get("type").is_some());
        }
    }
    assert!(ActionKind::CodepipelineRetryStage.applies_to(CiSystem::Codepipeline));
    assert!(!ActionKind::CodepipelineRetryStage.applies_to(CiSystem::GithubActions));
    assert!(ActionKind::GithubRerunFailedJobs.applies_to(CiSystem::GithubActions));
    assert!(ActionKind::Shell.applies_to(CiSystem::Gitlab));
}

#[test]
fn links_are_read_and_bad_ones_are_placed_at_their_line() {
    let text = "---\nid: runbook-links\ntitle: With links\nwhen: { status: failed }\nlinks:\n  - { label: Runbook, url: \"https://wiki.example/runbooks/{{pipeline}}\" }\n  - { label: Bad, url: \"https://{{pipeline}}.example/\" }\n---\n# Runbook\nRead it.\n";
    let errors = parse_playbook(Path::new("links.md"), text, &LoadOptions::default())
        .expect_err("a link with a placeholder in its host");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].field, "links[1].url");
    assert_eq!(errors[0].line, 7);
    assert!(
        errors[0].message.contains("scheme or host"),
        "{}",
        errors[0].message
    );
    let good = text.replace(
        "https://{{pipeline}}.example/",
        "https://grafana.example/d/x?from={{from_ms}}",
    );
    let playbook = parse_playbook(Path::new("links.md"), &good, &LoadOptions::default()).unwrap();
    assert_eq!(playbook.links.len(), 2);
    assert_eq!(playbook.links[0].label, "Runbook");
}
