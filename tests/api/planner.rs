//! Planning end to end: playbook checks from the command line, plans for
//! anomalies opened by real ingested runs, drafted through the real Bedrock
//! Runtime client against a local Converse stand-in or by the offline
//! planner, validated, stored and audited.

use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the real `pipemedic` binary with no configuration file.
fn pipemedic(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pipemedic"))
        .args(args)
        .current_dir(root())
        .env_remove("PIPEMEDIC_CONFIG")
        .output()
        .expect("pipemedic runs")
}

#[test]
fn playbooks_check_passes_on_the_bundled_set() {
    let out = pipemedic(&["playbooks", "check", "playbooks"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("6 playbooks OK"), "{stdout}");
}

#[test]
fn playbooks_check_names_file_line_and_field_of_every_broken_fixture() {
    let dir = "tests/fixtures/playbooks/broken";
    let out = pipemedic(&["playbooks", "check", dir]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("error(s)"), "{stderr}");
    let mut files: Vec<String> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    for file in files {
        if file == "duplicate-id-a.md" {
            // The first of two files with one id is valid; the second is named.
            continue;
        }
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{dir}/{file}:")))
            .unwrap_or_else(|| panic!("{file} not reported:\n{stdout}"));
        // file:line: field: message
        let rest = &line[dir.len() + file.len() + 2..];
        let (line_no, rest) = rest.split_once(": ").expect("line number");
        assert!(line_no.parse::<usize>().unwrap() >= 1, "{line}");
        let (field, message) = rest.split_once(": ").expect("field");
        assert!(!field.is_empty() && !message.is_empty(), "{line}");
    }
}

#[test]
fn playbooks_check_defaults_to_the_configured_directory() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipemedic.toml");
    std::fs::write(
        &config,
        "[planner]\nplaybooks_dir = \"tests/fixtures/playbooks/valid\"\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    // Its http action calls a host the configuration has not allowed yet.
    let out = pipemedic(&["--config", config, "playbooks", "check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("cache-reset.md:19: actions[1].with.url: host `hooks.example.com`"),
        "{stdout}"
    );
    std::fs::write(
        config,
        "[planner]\nplaybooks_dir = \"tests/fixtures/playbooks/valid\"\nhttp_allowed_hosts = [\"hooks.example.com\"]\n",
    )
    .unwrap();
    let out = pipemedic(&["--config", config, "playbooks", "check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("1 playbooks OK"), "{stdout}");
}
