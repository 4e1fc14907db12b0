//! The deployment files, read as an orchestrator would read them: the
//! Dockerfile, `deploy/compose.yaml`, the Kubernetes base and its
//! monitoring component, the systemd unit, and the AWS policies, the
//! EventBridge template and the SageMaker retraining pipeline under
//! `deploy/aws/`.
//!
//! Each test parses the files (YAML through `serde_norway`, JSON through
//! `serde_json`) and checks the properties the files promise against the
//! code they deploy: the secrets the configuration reads, the metric
//! families the registry exports, the IAM grants the AWS callers declare,
//! and the CodePipeline operations those callers actually send (run
//! against the CodePipeline stand-in).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value as Json;
use serde_norway::Value as Yaml;

use pipemedic::aws::iam::{ArnForm, IamGrant};
use pipemedic::aws::{AwsClients, AwsSettings, LazyClient};
use pipemedic::clock::ManualClock;
use pipemedic::config::{AwsConfig, Env, Secrets};
use pipemedic::iam::Feature;
use pipemedic::ingest::codepipeline_poll::CodePipelinePoller;
use pipemedic::ingest::IngestService;
use pipemedic::metrics::Metrics;
use pipemedic::remediate::codepipeline::CodePipelineExecutor;
use pipemedic::remediate::{ActionCall, ActionKind, Executor};
use pipemedic::standin::codepipeline::{ExecutionSpec, FakeCodePipeline};
use pipemedic::store::Store;

// ---- reading the files ---------------------------------------------------

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn yaml(path: &str) -> Yaml {
    let mut value: Yaml =
        serde_norway::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    value
        .apply_merge()
        .unwrap_or_else(|e| panic!("{path}: merge keys: {e}"));
    value
}

fn json(path: &str) -> Json {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The value at a `/`-separated path of mapping keys and sequence indexes.
fn at<'a>(value: &'a Yaml, path: &str) -> &'a Yaml {
    let mut v = value;
    for part in path.split('/') {
        v = match part.parse::<usize>() {
            Ok(i) if v.is_sequence() => v.get(i),
            _ => v.get(part),
        }
        .unwrap_or_else(|| panic!("no {path} (missing {part:?})"));
    }
    v
}

fn text<'a>(value: &'a Yaml, path: &str) -> &'a str {
    at(value, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string"))
}

fn items<'a>(value: &'a Yaml, path: &str) -> &'a [Yaml] {
    at(value, path)
        .as_sequence()
        .unwrap_or_else(|| panic!("{path} is not a list"))
}

fn texts(value: &Yaml, path: &str) -> Vec<String> {
    items(value, path)
        .iter()
        .map(|v| v.as_str().expect("a string").to_string())
        .collect()
}

// ---- Kubernetes ----------------------------------------------------------

const BASE: &str = "deploy/kubernetes/base";

fn deployment() -> Yaml {
    yaml(&format!("{BASE}/deployment.yaml"))
}

fn container(deployment: &Yaml) -> &Yaml {
    let containers = items(deployment, "spec/template/spec/containers");
    assert_eq!(containers.len(), 1, "one container per pod");
    &containers[0]
}

/// The container's environment: name → the entry.
fn env_entries(container: &Yaml) -> BTreeMap<String, &Yaml> {
    items(container, "env")
        .iter()
        .map(|e| (text(e, "name").to_string(), e))
        .collect()
}

/// Every secret the configuration reads from the environment.
fn secret_variables() -> Vec<&'static str> {
    Secrets::default()
        .summary()
        .into_iter()
        .map(|(var, _)| var)
        .collect()
}

/// The secrets without which `serve` refuses to listen beyond loopback.
const REQUIRED_SECRETS: [&str; 5] = [
    "PIPEMEDIC_INGEST_TOKEN",
    "PIPEMEDIC_READ_TOKEN",
    "PIPEMEDIC_GITHUB_WEBHOOK_SECRET",
    "PIPEMEDIC_AWS_WEBHOOK_SECRET",
    "PIPEMEDIC_GITLAB_TOKEN",
];

/// Keys of an env-style file (`KEY=value`, comments and blanks skipped).
fn env_file_keys(path: &str) -> BTreeSet<String> {
    read(path)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            l.split_once('=')
                .unwrap_or_else(|| panic!("{path}: {l:?} is not KEY=value"))
                .0
                .to_string()
        })
        .collect()
}

#[test]
fn the_deployment_runs_two_hardened_replicas_with_liveness_and_readiness() {
    let d = deployment();
    assert_eq!(text(&d, "kind"), "Deployment");
    assert_eq!(at(&d, "spec/replicas").as_u64(), Some(2));
    assert_eq!(
        at(&d, "spec/strategy/rollingUpdate/maxUnavailable").as_u64(),
        Some(0),
        "a rolling upgrade never drops below two ready replicas"
    );

    let c = container(&d);
    assert_eq!(text(c, "livenessProbe/httpGet/path"), "/healthz");
    assert_eq!(text(c, "readinessProbe/httpGet/path"), "/readyz");
    assert_eq!(text(c, "startupProbe/httpGet/path"), "/healthz");
    let port_names: Vec<&str> = items(c, "ports").iter().map(|p| text(p, "name")).collect();
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let port = text(c, &format!("{probe}/httpGet/port"));
        assert!(port_names.contains(&port), "{probe} port {port}");
    }

    let pod = at(&d, "spec/template/spec/securityContext");
    assert_eq!(at(pod, "runAsNonRoot").as_bool(), Some(true));
    assert!(at(pod, "runAsUser").as_u64().is_some_and(|u| u > 0));
    let sc = at(c, "securityContext");
    assert_eq!(at(sc, "runAsNonRoot").as_bool(), Some(true));
    assert_eq!(at(sc, "readOnlyRootFilesystem").as_bool(), Some(true));
    assert_eq!(at(sc, "allowPrivilegeEscalation").as_bool(), Some(false));
    assert_eq!(texts(sc, "capabilities/drop"), ["ALL"]);

    for key in ["requests/cpu", "requests/memory", "limits/memory"] {
        assert!(
            at(c, &format!("resources/{key}")).as_str().is_some(),
            "resources/{key}"
        );
    }
    // The only writable path is /tmp (the store is PostgreSQL).
    let mounts: Vec<&str> = items(c, "volumeMounts")
        .iter()
        .filter(|m| m.get("readOnly").and_then(Yaml::as_bool) != Some(true))
        .map(|m| text(m, "mountPath"))
        .collect();
    assert_eq!(mounts, ["/tmp"]);
    // Shutdown (20 s grace) and the preStop pause fit the pod's grace period.
    assert!(at(&d, "spec/template/spec/terminationGracePeriodSeconds")
        .as_u64()
        .is_some_and(|s| s >= 25));
}

#[test]
fn every_secret_reaches_the_pods_from_the_secret_never_as_a_literal() {
    let d = deployment();
    let env = env_entries(container(&d));
    let secret_keys = env_file_keys("deploy/kubernetes/secret.env.example");
    let mut wanted = secret_variables();
    wanted.push("PIPEMEDIC_STORE__URL");
    for var in wanted {
        let entry = env
            .get(var)
            .unwrap_or_else(|| panic!("the Deployment does not set {var}"));
        assert!(
            entry.get("value").is_none(),
            "{var} must come from the Secret, not a literal"
        );
        let r = at(entry, "valueFrom/secretKeyRef");
        assert_eq!(text(r, "name"), "pipemedic", "{var}");
        let key = text(r, "key");
        assert!(
            secret_keys.contains(key),
            "{var}: key {key} is not in secret.env.example"
        );
        let optional = r.get("optional").and_then(Yaml::as_bool) == Some(true);
        let required = REQUIRED_SECRETS.contains(&var) || var == "PIPEMEDIC_STORE__URL";
        assert_eq!(
            optional, !required,
            "{var}: optional should be {}",
            !required
        );
    }
}

#[test]
fn the_configmap_holds_a_pipemedic_toml_that_serve_accepts() {
    let k = yaml(&format!("{BASE}/kustomization.yaml"));
    let generator = items(&k, "configMapGenerator")
        .iter()
        .find(|g| text(g, "name") == "pipemedic-config")
        .expect("a pipemedic-config generator");
    assert_eq!(texts(generator, "files"), ["pipemedic.toml"]);

    let d = deployment();
    let c = container(&d);
    let volume = items(&d, "spec/template/spec/volumes")
        .iter()
        .find(|v| v.get("configMap").is_some())
        .expect("a ConfigMap volume");
    assert_eq!(text(volume, "configMap/name"), "pipemedic-config");
    assert_eq!(text(volume, "configMap/items/0/key"), "pipemedic.toml");
    let mount = items(c, "volumeMounts")
        .iter()
        .find(|m| text(m, "name") == text(volume, "name"))
        .expect("the ConfigMap is mounted");
    let config_path = format!(
        "{}/{}",
        text(mount, "mountPath"),
        text(volume, "configMap/items/0/path")
    );
    let env = env_entries(c);
    assert_eq!(text(env["PIPEMEDIC_CONFIG"], "value"), config_path);

    // The file as the pods load it: with every secret and the store URL set.
    let mut process: Env = secret_variables()
        .into_iter()
        .map(|v| (v.to_string(), "x".repeat(40)))
        .collect();
    process.insert(
        "PIPEMEDIC_STORE__URL".into(),
        "postgres://pipemedic:pw@postgres:5432/pipemedic".into(),
    );
    let loaded = pipemedic::config::load(Some(&repo(&format!("{BASE}/pipemedic.toml"))), &process)
        .unwrap_or_else(|e| panic!("pipemedic.toml: {e}"));
    let listen = loaded.config.listen_addr().expect("a listen address");
    assert!(!listen.ip().is_loopback(), "probes reach the pod's IP");
    assert_eq!(listen.port(), 8080);
    assert!(pipemedic::startup::unauthenticated_routes(&loaded).is_empty());
    assert_eq!(
        loaded.config.planner.playbooks_dir,
        "/etc/pipemedic/playbooks"
    );
    assert_eq!(loaded.config.planner.prompts_dir, "/etc/pipemedic/prompts");
}

#[test]
fn the_service_and_the_disruption_budget_select_the_pods() {
    let d = deployment();
    let pod_labels = at(&d, "spec/template/metadata/labels")
        .as_mapping()
        .expect("pod labels");
    let selects = |selector: &Yaml| {
        selector
            .as_mapping()
            .expect("a selector")
            .iter()
            .all(|(k, v)| pod_labels.get(k) == Some(v))
    };
    let service = yaml(&format!("{BASE}/service.yaml"));
    assert!(selects(at(&service, "spec/selector")));
    assert_eq!(text(&service, "spec/ports/0/targetPort"), "http");

    let pdb = yaml(&format!("{BASE}/poddisruptionbudget.yaml"));
    assert_eq!(text(&pdb, "kind"), "PodDisruptionBudget");
    assert_eq!(at(&pdb, "spec/minAvailable").as_u64(), Some(1));
    assert!(selects(at(&pdb, "spec/selector/matchLabels")));
    assert!(selects(at(&d, "spec/selector/matchLabels")));

    let k = yaml(&format!("{BASE}/kustomization.yaml"));
    let resources: BTreeSet<String> = texts(&k, "resources").into_iter().collect();
    for file in [
        "deployment.yaml",
        "service.yaml",
        "poddisruptionbudget.yaml",
        "serviceaccount.yaml",
    ] {
        assert!(resources.contains(file), "{file} is not in the base");
    }
    // The base renders without the Prometheus Operator's CRDs.
    let top = yaml("deploy/kubernetes/kustomization.yaml");
    assert_eq!(texts(&top, "resources"), ["base"]);
    assert!(top.get("components").is_none());
}

/// Metric families the registry exports, with the series names a
/// histogram adds. A family is written once it has a sample, so each
/// recorder is called once first.
fn exported_metric_names() -> BTreeSet<String> {
    let metrics = Metrics::new();
    metrics.run_ingested("generic", "inserted");
    metrics.request_rejected("/v1/runs", "unauthorized");
    metrics.event_ignored("github", "ping");
    metrics.poll_error("p");
    metrics.handoff_dropped("scored");
    metrics.background_error("t");
    metrics.chat_delivery("slack", "sent");
    metrics.healing("plan_offered");
    metrics.plan_drafted("offline", "valid");
    metrics.detector_fallback("error");
    metrics.planner_tokens(1, 1);
    metrics.ask_tokens(1, 1);
    metrics.ask_answered("offline", "answered");
    metrics.redactions("password", 1);
    metrics.http_request("GET", "/healthz", 200, 0.001);
    metrics.model_cache_hit();
    metrics.model_cache_miss();
    metrics.model_loaded("new");
    metrics.models_cached_changed(1);
    let mut names = BTreeSet::new();
    for line in metrics.render().lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
        names.insert(name.to_string());
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
    }
    names
}

/// The `pipemedic_*` names a PromQL expression uses.
fn metric_names_in(expr: &str) -> Vec<String> {
    let re = regex::Regex::new(r"\bpipemedic_[a-z0-9_]+").expect("a regex");
    re.find_iter(expr).map(|m| m.as_str().to_string()).collect()
}

#[test]
fn alert_rules_and_the_dashboard_use_metrics_pipemedic_exports() {
    let exported = exported_metric_names();
    assert!(exported.contains("pipemedic_runs_ingested_total"));

    let rules = yaml("deploy/kubernetes/components/monitoring/prometheusrule.yaml");
    assert_eq!(text(&rules, "kind"), "PrometheusRule");
    let mut alerts = BTreeSet::new();
    for group in items(&rules, "spec/groups") {
        for rule in items(group, "rules") {
            let alert = text(rule, "alert");
            alerts.insert(alert.to_string());
            assert!(rule.get("labels").and_then(|l| l.get("severity")).is_some());
            for name in metric_names_in(text(rule, "expr")) {
                assert!(exported.contains(&name), "{alert}: {name} is not exported");
            }
        }
    }
    for wanted in [
        "PipemedicOutboxStuck",
        "PipemedicDetectorFallingBack",
        "PipemedicNoRunsIngested",
        "PipemedicPlansWaiting",
    ] {
        assert!(alerts.contains(wanted), "no {wanted} alert");
    }

    let dashboard = json("deploy/kubernetes/components/monitoring/pipemedic-dashboard.json");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10);
    let ids: BTreeSet<u64> = panels.iter().filter_map(|p| p["id"].as_u64()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    let mut used = BTreeSet::new();
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for name in metric_names_in(expr) {
                assert!(
                    exported.contains(&name),
                    "{}: {name} is not exported",
                    panel["title"]
                );
                used.insert(name);
            }
        }
    }
    assert!(used.contains("pipemedic_http_request_duration_seconds_bucket"));

    let component = yaml("deploy/kubernetes/components/monitoring/kustomization.yaml");
    assert_eq!(text(&component, "kind"), "Component");
    let monitor = yaml("deploy/kubernetes/components/monitoring/servicemonitor.yaml");
    assert_eq!(text(&monitor, "spec/endpoints/0/path"), "/metrics");
    assert_eq!(text(&monitor, "spec/endpoints/0/port"), "http");
}

// ---- compose ---------------------------------------------------------------

#[test]
fn compose_runs_postgres_and_two_replicas_with_healthchecks() {
    let compose = yaml("deploy/compose.yaml");
    let services = at(&compose, "services").as_mapping().expect("services");
    let postgres = at(&compose, "services/postgres");
    assert!(text(postgres, "image").contains("postgres"));
    assert!(text(postgres, "healthcheck/test/1").contains("pg_isready"));

    let replicas: Vec<(&str, &Yaml)> = services
        .iter()
        .map(|(k, s)| (k.as_str().expect("a service name"), s))
        .filter(|(name, _)| *name != "postgres")
        .collect();
    assert_eq!(replicas.len(), 2, "two pipemedic replicas");
    let mut host_ports = BTreeSet::new();
    for (name, s) in &replicas {
        assert!(text(s, "image").contains("pipemedic"), "{name}");
        assert_eq!(
            text(s, "build/context"),
            "..",
            "{name} builds the Dockerfile"
        );
        assert_eq!(text(s, "env_file"), "pipemedic.env", "{name}");
        assert_eq!(
            text(s, "depends_on/postgres/condition"),
            "service_healthy",
            "{name}"
        );
        let check = texts(s, "healthcheck/test").join(" ");
        assert!(check.contains("/readyz"), "{name}: {check}");
        assert!(text(s, "environment/PIPEMEDIC_STORE__URL").starts_with("postgres://"));
        assert!(text(s, "environment/PIPEMEDIC_STORE__URL").contains("@postgres:5432/"));
        assert_eq!(at(s, "read_only").as_bool(), Some(true), "{name}");
        host_ports.insert(text(s, "ports/0").to_string());
    }
    assert_eq!(host_ports.len(), 2, "each replica on its own host port");

    let example = env_file_keys("deploy/pipemedic.env.example");
    for var in secret_variables().into_iter().chain(["POSTGRES_PASSWORD"]) {
        assert!(example.contains(var), "pipemedic.env.example lacks {var}");
    }
}

// ---- Dockerfile ----------------------------------------------------------

#[test]
fn the_image_runs_unprivileged_with_its_files_where_the_config_looks() {
    let dockerfile = read("Dockerfile");
    let lines: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert!(dockerfile.contains("cargo build --release --locked"));
    let stages = lines.iter().filter(|l| l.starts_with("FROM ")).count();
    assert!(stages >= 2, "a multi-stage build");

    // The runtime stage: everything after the last FROM.
    let last_from = lines
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("FROM");
    let runtime = &lines[last_from..];
    let user = runtime
        .iter()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("a numeric uid");
    assert!(uid >= 1000, "runs as uid {uid}");
    let runtime_text = runtime.join("\n");
    assert!(runtime_text.contains("ca-certificates"));
    for env in [
        "PIPEMEDIC_PLANNER__PLAYBOOKS_DIR=/etc/pipemedic/playbooks",
        "PIPEMEDIC_PLANNER__PROMPTS_DIR=/etc/pipemedic/prompts",
        "PIPEMEDIC_STORE__URL=sqlite:///var/lib/pipemedic/pipemedic.db",
    ] {
        assert!(runtime_text.contains(env), "runtime stage lacks {env}");
    }
    assert!(runtime_text.contains("COPY playbooks /etc/pipemedic/playbooks"));
    assert!(runtime_text.contains("COPY prompts /etc/pipemedic/prompts"));

    // Every path a COPY takes from the context is let through .dockerignore.
    let ignore = read(".dockerignore");
    let allowed: BTreeSet<&str> = ignore
        .lines()
        .filter_map(|l| l.trim().strip_prefix('!'))
        .map(|p| p.trim_end_matches('/'))
        .collect();
    assert!(ignore.lines().any(|l| l.trim() == "*"), "deny by default");
    for line in &lines {
        let Some(args) = line.strip_prefix("COPY ") else {
            continue;
        };
        if args.starts_with("--from") {
            continue;
        }
        let parts: Vec<&str> = args.split_whitespace().collect();
        for source in &parts[..parts.len() - 1] {
            assert!(
                allowed.contains(source.trim_end_matches('/')),
                ".dockerignore keeps out {source}, which the Dockerfile copies"
            );
        }
    }
}

// ---- systemd ---------------------------------------------------------------

/// `Key=value` lines of one section of a unit file (a key may repeat).
fn unit_section(unit: &str, section: &str) -> Vec<(String, String)> {
    let mut current = String::new();
    let mut out = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_string();
        } else if current == section {
            let (k, v) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{line:?} is not Key=value"));
            out.push((k.to_string(), v.to_string()));
        }
    }
    out
}

#[test]
fn the_systemd_unit_is_hardened_for_one_host_with_sqlite() {
    let unit = read("deploy/systemd/pipemedic.service");
    let service = unit_section(&unit, "Service");
    let value = |key: &str| -> Vec<&str> {
        service
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    for (key, wanted) in [
        ("DynamicUser", "yes"),
        ("StateDirectory", "pipemedic"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("CapabilityBoundingSet", ""),
    ] {
        assert_eq!(value(key), [wanted], "{key}");
    }
    assert!(value("ExecStart")[0].ends_with(" serve"));
    let environment = value("Environment");
    assert!(
        environment.contains(&"PIPEMEDIC_STORE__URL=sqlite:///var/lib/pipemedic/pipemedic.db"),
        "the SQLite file lives in the StateDirectory: {environment:?}"
    );
    assert_eq!(
        unit_section(&unit, "Install"),
        [("WantedBy".to_string(), "multi-user.target".to_string())]
    );
}

// ---- AWS -------------------------------------------------------------------

/// (action, resource) pairs a policy file allows, after checking that it
/// only allows, names no wildcard and has no conditions to widen it.
fn granted(path: &str) -> BTreeSet<(String, String)> {
    let policy = json(path);
    assert_eq!(policy["Version"], "2012-10-17", "{path}");
    let mut out = BTreeSet::new();
    for statement in policy["Statement"].as_array().expect("Statement") {
        assert_eq!(statement["Effect"], "Allow", "{path}");
        for key in ["NotAction", "NotResource", "Principal"] {
            assert!(statement.get(key).is_none(), "{path}: {key}");
        }
        let list = |key: &str| -> Vec<String> {
            match &statement[key] {
                Json::String(s) => vec![s.clone()],
                Json::Array(a) => a
                    .iter()
                    .map(|v| v.as_str().expect("a string").to_string())
                    .collect(),
                other => panic!("{path}: {key} is {other}"),
            }
        };
        for action in list("Action") {
            assert!(!action.contains('*'), "{path}: {action}");
            for resource in list("Resource") {
                assert!(
                    ArnForm::from_template(&resource).is_some(),
                    "{path}: {resource} is not a known resource form"
                );
                out.insert((action.clone(), resource));
            }
        }
    }
    out
}

fn pairs(grants: impl IntoIterator<Item = IamGrant>) -> BTreeSet<(String, String)> {
    grants
        .into_iter()
        .map(|g| (g.action.to_string(), g.resource.template().to_string()))
        .collect()
}

#[test]
fn each_policy_file_grants_exactly_what_its_feature_declares() {
    for feature in Feature::ALL {
        let file = feature.policy_file();
        let in_file = granted(file);
        let declared = pairs(feature.grants());
        let extra: Vec<_> = in_file.difference(&declared).collect();
        let missing: Vec<_> = declared.difference(&in_file).collect();
        assert!(
            extra.is_empty() && missing.is_empty(),
            "{file} ({feature:?}): grants nothing declared {extra:?}; lacks {missing:?}"
        );
    }
    // No policy file outside the list.
    let on_disk: BTreeSet<String> = std::fs::read_dir(repo("deploy/aws"))
        .expect("deploy/aws")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .into_string()
                .expect("utf-8")
        })
        .filter(|n| n.starts_with("iam-") && n.ends_with(".json"))
        .map(|n| format!("deploy/aws/{n}"))
        .collect();
    let listed: BTreeSet<String> = Feature::ALL
        .iter()
        .map(|f| f.policy_file().to_string())
        .collect();
    assert_eq!(on_disk, listed);
    // The stage actions are on stage ARNs (IAM defines them there).
    let remediation = granted(Feature::CodePipelineRemediation.policy_file());
    for action in [
        "codepipeline:RetryStageExecution",
        "codepipeline:RollbackStage",
    ] {
        let resources: Vec<_> = remediation
            .iter()
            .filter(|(a, _)| a == action)
            .map(|(_, r)| r.as_str())
            .collect();
        assert_eq!(
            resources,
            ["arn:aws:codepipeline:REGION:ACCOUNT:PIPELINE/STAGE"],
            "{action}"
        );
    }
}

fn t(s: &str) -> chrono::DateTime<chrono::Utc> {
    s.parse().expect("an RFC 3339 time")
}

/// The `codepipeline:` actions of the calls the stand-in saw since the
/// last look.
fn actions_seen(fake: &FakeCodePipeline) -> BTreeSet<String> {
    let seen = fake
        .calls()
        .into_iter()
        .map(|c| format!("codepipeline:{}", c.operation))
        .collect();
    fake.clear_calls();
    seen
}

fn actions_of(grants: impl IntoIterator<Item = IamGrant>) -> BTreeSet<String> {
    grants.into_iter().map(|g| g.action.to_string()).collect()
}

#[tokio::test]
async fn the_codepipeline_calls_made_are_the_ones_declared() {
    const PIPELINE: &str = "checkout-service";
    let fake = FakeCodePipeline::start().await;
    fake.add_execution(
        PIPELINE,
        ExecutionSpec::new("e-0", "Succeeded", t("2026-11-24T09:00:00Z"))
            .commit("sha-0", "A change")
            .action("Deploy", "Deploy", "Succeeded", 0, 60),
    );
    fake.add_execution(
        PIPELINE,
        ExecutionSpec::new("e-1", "Failed", t("2026-11-25T09:00:00Z"))
            .commit("sha-1", "Another change")
            .action("Deploy", "Deploy", "Failed", 0, 60),
    );
    let mut aws = AwsConfig::default();
    aws.endpoints.codepipeline = fake.url();
    let clients = AwsSettings::from_config(&aws)
        .with_static_credentials(
            aws_credential_types::Credentials::new("AKIDTEST", "test-secret", None, None, "tests"),
            "us-east-1",
        )
        .load()
        .await;

    // Polling.
    let dir = tempfile::tempdir().expect("a temp dir");
    let url = format!("sqlite://{}", dir.path().join("poll.db").display());
    let store = Store::connect(&url, 2).await.expect("a store");
    let clock = Arc::new(ManualClock::new(t("2026-11-25T12:00:00Z")));
    let ingest = Arc::new(IngestService::new(store, Arc::new(Metrics::new()), clock));
    let poller = CodePipelinePoller::new(&clients, ingest, vec![PIPELINE.to_string()]);
    let report = poller.poll_once().await.expect("a poll");
    assert_eq!(report.pipelines.len(), 1);
    assert_eq!(
        actions_seen(&fake),
        actions_of(Feature::CodePipelinePolling.grants()),
        "polling"
    );

    // Each remediation action kind, with the parameters that make it call
    // the most (a rollback without a target looks one up).
    let client = LazyClient::from_clients(&clients, AwsClients::codepipeline);
    let mut all_seen = BTreeSet::new();
    for executor in CodePipelineExecutor::all(&client) {
        let params = match executor.kind() {
            ActionKind::CodepipelineRetryStage | ActionKind::CodepipelineRollbackStage => {
                serde_json::json!({"stage": "Deploy"})
            }
            _ => serde_json::json!({}),
        };
        let call = ActionCall::new(executor.kind(), PIPELINE, "e-1", params);
        executor
            .execute(&call)
            .await
            .unwrap_or_else(|e| panic!("{:?}: {e}", executor.kind()));
        let seen = actions_seen(&fake);
        assert_eq!(seen, actions_of(executor.iam()), "{:?}", executor.kind());
        all_seen.extend(seen);
    }
    assert_eq!(
        all_seen,
        actions_of(Feature::CodePipelineRemediation.grants())
    );
}

#[test]
fn the_eventbridge_template_sends_the_secret_header_and_the_events_pipemedic_reads() {
    let template = yaml("deploy/aws/eventbridge.yaml");
    let resource = |name: &str| at(&template, &format!("Resources/{name}"));
    let of_type = |kind: &str| -> Vec<&Yaml> {
        at(&template, "Resources")
            .as_mapping()
            .expect("Resources")
            .values()
            .filter(|r| text(r, "Type") == kind)
            .collect()
    };

    let connection = of_type("AWS::Events::Connection");
    assert_eq!(connection.len(), 1);
    assert_eq!(
        text(connection[0], "Properties/AuthorizationType"),
        "API_KEY"
    );
    assert_eq!(
        text(
            connection[0],
            "Properties/AuthParameters/ApiKeyAuthParameters/ApiKeyName"
        ),
        "X-Pipemedic-Secret"
    );
    let secret = text(&template, "Parameters/WebhookSecret/Type");
    assert_eq!(secret, "String");
    assert_eq!(
        at(&template, "Parameters/WebhookSecret/NoEcho").as_bool(),
        Some(true)
    );

    let destination = resource("ApiDestination");
    assert_eq!(text(destination, "Type"), "AWS::Events::ApiDestination");
    assert_eq!(text(destination, "Properties/HttpMethod"), "POST");
    assert!(
        text(destination, "Properties/InvocationEndpoint/Fn::Sub").ends_with("/v1/webhooks/aws")
    );

    let rules = of_type("AWS::Events::Rule");
    assert_eq!(rules.len(), 1);
    let pattern = at(rules[0], "Properties/EventPattern");
    let sources: BTreeSet<String> = texts(pattern, "source").into_iter().collect();
    assert_eq!(
        sources,
        BTreeSet::from(["aws.codepipeline".to_string(), "aws.codebuild".to_string()])
    );
    let detail_types: BTreeSet<String> = texts(pattern, "detail-type").into_iter().collect();
    let read: BTreeSet<String> = [
        pipemedic::ingest::aws::PIPELINE_EXECUTION,
        pipemedic::ingest::aws::STAGE_EXECUTION,
        pipemedic::ingest::aws::ACTION_EXECUTION,
        pipemedic::ingest::aws::CODEBUILD_BUILD,
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(detail_types, read);
    let target = at(rules[0], "Properties/Targets/0");
    assert_eq!(texts(target, "Arn/Fn::GetAtt"), ["ApiDestination", "Arn"]);
    assert!(target.get("InputPath").is_none() && target.get("InputTransformer").is_none());

    // The role EventBridge assumes may only invoke the API destination.
    let role = resource(text(target, "RoleArn/Fn::GetAtt/0"));
    assert_eq!(text(role, "Type"), "AWS::IAM::Role");
    assert_eq!(
        text(
            role,
            "Properties/AssumeRolePolicyDocument/Statement/0/Principal/Service"
        ),
        "events.amazonaws.com"
    );
    let policies = items(role, "Properties/Policies");
    assert_eq!(policies.len(), 1);
    let statements = items(&policies[0], "PolicyDocument/Statement");
    assert_eq!(statements.len(), 1);
    assert_eq!(
        text(&statements[0], "Action"),
        "events:InvokeApiDestination"
    );
    assert_eq!(
        texts(&statements[0], "Resource/Fn::GetAtt"),
        ["ApiDestination", "Arn"]
    );
}

/// Whether `arn` is an instance of `form`: its placeholders filled in
/// (a pipeline or stage name never contains `/`).
fn arn_fits(form: ArnForm, arn: &str) -> bool {
    let mut pattern = regex::escape(form.template());
    for (placeholder, filled) in [
        ("REGION", "[a-z0-9-]+|REGION"),
        ("ACCOUNT", "[0-9]{12}|ACCOUNT"),
        ("PIPELINE", "[^/]+"),
        ("STAGE", "[^/]+"),
        ("MODEL_ID", "[^/]+"),
        ("ENDPOINT_NAME", "[^/]+"),
        ("BUCKET", "[a-z0-9.-]+"),
        ("PREFIX", "[^*]+"),
    ] {
        pattern = pattern.replace(placeholder, &format!("(?:{filled})"));
    }
    regex::Regex::new(&format!("^{pattern}$"))
        .expect("a pattern")
        .is_match(arn)
}

#[test]
fn the_readme_policies_grant_only_what_the_code_declares() {
    let readme = read("README.md");
    let declared = pipemedic::iam::all_grants();
    let mut checked = 0;
    for block in readme.split("```json").skip(1) {
        let body = block.split("```").next().expect("a closed block");
        if !body.contains("\"Action\"") {
            continue;
        }
        let policy: Json =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("README policy {body}: {e}"));
        for statement in policy["Statement"].as_array().expect("Statement") {
            let list = |key: &str| -> Vec<String> {
                match &statement[key] {
                    Json::String(s) => vec![s.clone()],
                    Json::Array(a) => a
                        .iter()
                        .map(|v| v.as_str().expect("a string").to_string())
                        .collect(),
                    other => panic!("README: {key} is {other}"),
                }
            };
            for action in list("Action") {
                for resource in list("Resource") {
                    assert!(
                        declared
                            .iter()
                            .any(|g| g.action == action && arn_fits(g.resource, &resource)),
                        "README grants {action} on {resource}, which no AWS call declares"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 10, "README policies found: {checked}");
    assert!(!arn_fits(
        ArnForm::CodePipelinePipeline,
        "arn:aws:codepipeline:eu-west-1:123456789012:checkout/Deploy"
    ));
    assert!(arn_fits(
        ArnForm::CodePipelineStage,
        "arn:aws:codepipeline:eu-west-1:123456789012:checkout/Deploy"
    ));
}

// ---- SageMaker retraining ----------------------------------------------------

/// Every `{"Get": …}` reference inside `value`.
fn gets(value: &Json, out: &mut Vec<String>) {
    match value {
        Json::Object(map) => {
            if let Some(Json::String(path)) = map.get("Get") {
                out.push(path.clone());
            }
            map.values().for_each(|v| gets(v, out));
        }
        Json::Array(items) => items.iter().for_each(|v| gets(v, out)),
        _ => {}
    }
}

/// A pipeline expression with every parameter at its default value
/// (`Std:Join` joined, `Get: Parameters.X` looked up).
fn resolve(value: &Json, defaults: &BTreeMap<String, Json>) -> String {
    match value {
        Json::String(s) => s.clone(),
        Json::Object(map) if map.contains_key("Std:Join") => {
            let join = &map["Std:Join"];
            let on = join["On"].as_str().expect("Std:Join On");
            join["Values"]
                .as_array()
                .expect("Std:Join Values")
                .iter()
                .map(|v| resolve(v, defaults))
                .collect::<Vec<_>>()
                .join(on)
        }
        Json::Object(map) => {
            let path = map["Get"].as_str().expect("a Get");
            let name = path.strip_prefix("Parameters.").expect("a parameter");
            resolve(&defaults[name], defaults)
        }
        other => panic!("not a string expression: {other}"),
    }
}

#[test]
fn the_retraining_pipeline_trains_on_the_export_and_updates_the_endpoint() {
    use pipemedic::scoring::export::{self, Destination, Hyperparameters};

    let file = "deploy/aws/sagemaker-retrain-pipeline.json";
    let definition = json(file);
    assert_eq!(definition["Version"], "2020-12-01");
    let mut defaults = BTreeMap::new();
    for p in definition["Parameters"].as_array().expect("Parameters") {
        let name = p["Name"].as_str().expect("a parameter name").to_string();
        assert!(
            ["String", "Integer", "Float", "Boolean"].contains(&p["Type"].as_str().unwrap_or("")),
            "{name}: {p}"
        );
        assert!(
            defaults
                .insert(name.clone(), p["DefaultValue"].clone())
                .is_none(),
            "{name} twice"
        );
    }
    // Every reference names a declared parameter, an earlier step or the
    // execution; every parameter is used.
    let steps = definition["Steps"].as_array().expect("Steps");
    let mut earlier: Vec<&str> = Vec::new();
    let mut used = BTreeSet::new();
    for step in steps {
        let name = step["Name"].as_str().expect("a step name");
        let mut refs = Vec::new();
        gets(step, &mut refs);
        for r in refs {
            if let Some(p) = r.strip_prefix("Parameters.") {
                assert!(defaults.contains_key(p), "{name}: {r} is not declared");
                used.insert(p.to_string());
            } else if let Some(path) = r.strip_prefix("Steps.") {
                let target = path.split('.').next().unwrap_or_default();
                assert!(
                    earlier.contains(&target),
                    "{name}: {r} is not an earlier step"
                );
                assert!(
                    step["DependsOn"].is_null() || step["DependsOn"].is_array(),
                    "{name}"
                );
            } else {
                assert!(r.starts_with("Execution."), "{name}: {r}");
            }
        }
        assert!(!earlier.contains(&name), "{name} twice");
        earlier.push(name);
    }
    assert_eq!(used, defaults.keys().cloned().collect::<BTreeSet<_>>());

    let of_type = |t: &str| -> &Json {
        let found: Vec<&Json> = steps.iter().filter(|s| s["Type"] == t).collect();
        assert_eq!(found.len(), 1, "one {t} step");
        found[0]
    };
    // Training reads the export's rows with the manifest's settings.
    let training = &of_type("Training")["Arguments"];
    let channel = &training["InputDataConfig"][0];
    let content_type = channel["ContentType"].as_str().expect("ContentType");
    assert!(content_type.starts_with("text/csv"), "{content_type}");
    assert!(
        content_type.contains("label_size=0"),
        "no label column: {content_type}"
    );
    let source = &channel["DataSource"]["S3DataSource"];
    assert_eq!(source["S3DataType"], "S3Prefix");
    let rows = resolve(&source["S3Uri"], &defaults);
    let bucket = resolve(
        &serde_json::json!({"Get": "Parameters.ExportBucket"}),
        &defaults,
    );
    let prefix = resolve(
        &serde_json::json!({"Get": "Parameters.ExportPrefix"}),
        &defaults,
    );
    let destination =
        Destination::parse(&format!("s3://{bucket}/{prefix}")).expect("a destination");
    assert_eq!(
        rows,
        format!("{}/", destination.location_of(export::ROWS_DIR))
    );
    assert!(
        destination
            .location_of(&export::rows_name("checkout-service"))
            .starts_with(&rows),
        "every pipeline's CSV is under the training channel"
    );
    let output = resolve(&training["OutputDataConfig"]["S3OutputPath"], &defaults);
    assert!(
        !output.starts_with(&rows),
        "models are not written among the rows"
    );
    let expected = Hyperparameters::of_pipeline_models();
    let h = &training["HyperParameters"];
    assert_eq!(h["feature_dim"], expected.feature_dim.to_string());
    assert_eq!(h["num_trees"], expected.num_trees.to_string());
    assert_eq!(
        h["num_samples_per_tree"],
        expected.num_samples_per_tree.to_string()
    );
    let image = resolve(
        &training["AlgorithmSpecification"]["TrainingImage"],
        &defaults,
    );
    assert!(image.ends_with("/randomcutforest:1"), "{image}");

    // The model serves the training's artifacts with the same image.
    let model = &of_type("Model")["Arguments"]["PrimaryContainer"];
    assert_eq!(
        model["ModelDataUrl"]["Get"],
        "Steps.TrainRcf.ModelArtifacts.S3ModelArtifacts"
    );
    assert_eq!(
        model["Image"],
        training["AlgorithmSpecification"]["TrainingImage"]
    );

    // The endpoint update hands the function every argument it reads.
    let update = of_type("Lambda");
    assert_eq!(
        update["Arguments"]["model_name"]["Get"],
        "Steps.CreateRcfModel.ModelName"
    );
    let function = read("deploy/aws/sagemaker-update-endpoint.py");
    let arguments = update["Arguments"].as_object().expect("Arguments");
    for key in arguments.keys() {
        assert!(
            function.contains(&format!("event[\"{key}\"]")),
            "{key} is not read"
        );
    }
    let read_keys = regex::Regex::new(r#"event\["([a-z_]+)"\]"#).expect("a pattern");
    for key in read_keys.captures_iter(&function) {
        assert!(arguments.contains_key(&key[1]), "{} is not passed", &key[1]);
    }
    assert!(function.contains("def handler(event, _context)"));
}
