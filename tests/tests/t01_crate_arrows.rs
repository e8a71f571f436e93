//! The workspace's dependency arrows point down only.
//!
//! - Reads the allowed arrows from ARCHITECTURE.md (the fenced block after
//!   `<!-- crate-arrows -->`: one line per crate, `crate -> dependency ...`), so the map a
//!   newcomer reads and the rule this test enforces are the same text.
//! - Reads every workspace crate's declared dependencies with `cargo metadata` (offline,
//!   no registry access) and fails naming each edge the map does not allow, and each crate
//!   the map does not list.
//! - `[dev-dependencies]` may also use the test harness (`cairn-tests`, and the launcher
//!   `cairn-devcluster`); nothing else extra.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// Crates every crate's tests may use besides its allowed arrows.
const TEST_HARNESS: &[&str] = &["cairn-tests", "cairn-devcluster"];

type Arrows = BTreeMap<String, BTreeSet<String>>;

/// The allowed arrows declared in `doc`.
fn allowed_arrows(doc: &str) -> Arrows {
    let after = doc
        .split_once("<!-- crate-arrows -->")
        .expect("ARCHITECTURE.md has a <!-- crate-arrows --> block")
        .1;
    let block = after
        .split("```")
        .nth(1)
        .expect("a fenced block follows <!-- crate-arrows -->");
    let mut arrows = Arrows::new();
    for line in block.lines().skip(1) {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (from, to) = line
            .split_once("->")
            .unwrap_or_else(|| panic!("arrow line without ->: {line:?}"));
        let previous = arrows.insert(
            from.trim().to_string(),
            to.split_whitespace().map(str::to_string).collect(),
        );
        assert!(previous.is_none(), "{} is declared twice", from.trim());
    }
    arrows
}

/// Each workspace crate with its dependencies on other workspace crates:
/// (normal and build dependencies, dev-dependencies).
type Declared = BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)>;

fn declared_dependencies(manifest: &Path) -> Declared {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .arg("--manifest-path")
        .arg(manifest)
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let ours: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().expect("name").to_string())
        .collect();
    let mut declared = Declared::new();
    for p in packages {
        let entry = declared
            .entry(p["name"].as_str().expect("name").to_string())
            .or_default();
        for d in p["dependencies"].as_array().expect("dependencies") {
            let name = d["name"].as_str().expect("dependency name").to_string();
            if !ours.contains(&name) {
                continue;
            }
            match d["kind"].as_str() {
                Some("dev") => entry.1.insert(name),
                _ => entry.0.insert(name),
            };
        }
    }
    declared
}

/// Every edge `declared` has that `allowed` does not, and every crate it does not list.
fn violations(allowed: &Arrows, declared: &Declared) -> Vec<String> {
    let mut found = Vec::new();
    for (krate, (deps, dev_deps)) in declared {
        let Some(ok) = allowed.get(krate) else {
            found.push(format!("{krate} is not in the crate map"));
            continue;
        };
        for dep in deps.iter().filter(|d| !ok.contains(*d)) {
            found.push(format!("{krate} -> {dep} is not an allowed arrow"));
        }
        for dep in dev_deps
            .iter()
            .filter(|d| !ok.contains(*d) && !TEST_HARNESS.contains(&d.as_str()))
        {
            found.push(format!(
                "{krate} -> {dep} (dev-dependency) is not an allowed arrow"
            ));
        }
    }
    for krate in allowed.keys().filter(|k| !declared.contains_key(*k)) {
        found.push(format!(
            "{krate} is in the crate map but not in the workspace"
        ));
    }
    found
}

#[test]
fn every_crate_depends_only_on_the_crates_the_map_allows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let allowed = allowed_arrows(&doc);
    let declared = declared_dependencies(&root.join("Cargo.toml"));
    let found = violations(&allowed, &declared);
    assert!(
        found.is_empty(),
        "dependency arrows that ARCHITECTURE.md does not allow:\n  {}",
        found.join("\n  ")
    );
    // The rules the map must keep, whatever else it says.
    for base in ["cairn-common", "cairn-net"] {
        assert!(
            allowed[base].is_empty(),
            "{base} must depend on nothing of ours"
        );
    }
    assert_eq!(
        allowed["cairn-proto"],
        BTreeSet::from(["cairn-common".to_string()]),
        "proto may use common and nothing else of ours"
    );
    for daemon in [
        "cairn-metadata",
        "cairn-shard-io",
        "cairn-net",
        "cairn-proto",
    ] {
        assert!(
            !allowed[daemon].contains("cairn-client"),
            "{daemon} must not use the client library"
        );
    }
    let mount = &allowed["cairn-fuse-mount"];
    for service in [
        "cairn-metadata",
        "cairn-storage-node",
        "cairn-shard-io",
        "cairn-proto",
    ] {
        assert!(
            !mount.contains(service),
            "the mount reaches the cluster only through cairn-client, not {service}"
        );
    }
}

#[test]
fn a_forbidden_edge_and_an_unlisted_crate_are_named() {
    let allowed = allowed_arrows(
        "<!-- crate-arrows -->\n```text\ncairn-common ->\ncairn-client -> cairn-common  # data path\n```\n",
    );
    let declared = Declared::from([
        (
            "cairn-common".to_string(),
            (
                BTreeSet::from(["cairn-client".to_string()]),
                BTreeSet::new(),
            ),
        ),
        (
            "cairn-client".to_string(),
            (
                BTreeSet::from(["cairn-common".to_string()]),
                BTreeSet::from(["cairn-tests".to_string()]),
            ),
        ),
        ("cairn-new".to_string(), Default::default()),
    ]);
    assert_eq!(
        violations(&allowed, &declared),
        vec![
            "cairn-common -> cairn-client is not an allowed arrow".to_string(),
            "cairn-new is not in the crate map".to_string(),
        ]
    );
}
