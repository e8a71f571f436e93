//! Model-based test: random sequences of file operations (create, write at an offset,
//! truncate, rename, link, unlink, mkdir, rmdir) applied both to a FUSE mount (of the
//! memory backend, or of a real cluster with a second mount watching) and to a plain local
//! directory (the reference). After every step the results
//! (success or errno) must match, and so must the whole trees: names, kinds, sizes,
//! contents, link counts and which names are hard links of one another.

mod common;

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use common::TestMount;
use proptest::prelude::*;

/// Every operation picks its paths from this small set, so operations collide often
/// (same names as files and directories, nested and not).
const PATHS: &[&str] = &[
    "a", "b", "d1", "d2", "d1/a", "d1/c", "d1/d3", "d1/d3/e", "d2/a", "d2/f",
];

#[derive(Clone, Debug)]
enum Op {
    Create(usize),
    Write {
        path: usize,
        offset: u32,
        len: u16,
        seed: u8,
    },
    Truncate(usize, u32),
    Rename(usize, usize),
    Link(usize, usize),
    Unlink(usize),
    Mkdir(usize),
    Rmdir(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let p = || 0..PATHS.len();
    prop_oneof![
        3 => p().prop_map(Op::Create),
        4 => (p(), 0u32..20_000, 0u16..3_000, any::<u8>())
            .prop_map(|(path, offset, len, seed)| Op::Write { path, offset, len, seed }),
        2 => (p(), 0u32..30_000).prop_map(|(a, n)| Op::Truncate(a, n)),
        3 => (p(), p()).prop_map(|(a, b)| Op::Rename(a, b)),
        2 => (p(), p()).prop_map(|(a, b)| Op::Link(a, b)),
        2 => p().prop_map(Op::Unlink),
        3 => p().prop_map(Op::Mkdir),
        1 => p().prop_map(Op::Rmdir),
    ]
}

/// Applies `op` under `root`; the errno on failure.
fn apply(root: &Path, op: &Op) -> Result<(), i32> {
    let p = |i: usize| root.join(PATHS[i]);
    let r: io::Result<()> = match *op {
        Op::Create(i) => fs::File::create(p(i)).map(drop),
        Op::Write {
            path,
            offset,
            len,
            seed,
        } => {
            let data: Vec<u8> = (0..len).map(|i| seed.wrapping_add(i as u8)).collect();
            OpenOptions::new()
                .write(true)
                .open(p(path))
                .and_then(|f| f.write_all_at(&data, u64::from(offset)))
        }
        Op::Truncate(i, size) => OpenOptions::new()
            .write(true)
            .open(p(i))
            .and_then(|f| f.set_len(u64::from(size))),
        Op::Rename(a, b) => fs::rename(p(a), p(b)),
        Op::Link(a, b) => fs::hard_link(p(a), p(b)),
        Op::Unlink(i) => fs::remove_file(p(i)),
        Op::Mkdir(i) => fs::create_dir(p(i)),
        Op::Rmdir(i) => fs::remove_dir(p(i)),
    };
    r.map_err(|e| e.raw_os_error().unwrap_or(-1))
}

#[derive(Debug, PartialEq, Eq)]
enum Node {
    Dir {
        nlink: u64,
    },
    File {
        nlink: u64,
        content: Vec<u8>,
        same_inode_as: Vec<String>,
    },
}

/// The whole tree under `root`, keyed by relative path.
fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        for entry in fs::read_dir(&dir).expect("read_dir") {
            let entry = entry.expect("entry");
            let name = entry.file_name().into_string().expect("utf8 name");
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let meta = fs::symlink_metadata(root.join(&path)).expect("lstat");
            if meta.is_dir() {
                out.insert(
                    path.clone(),
                    Node::Dir {
                        nlink: meta.nlink(),
                    },
                );
                stack.push(path);
            } else {
                let content = fs::read(root.join(&path)).expect("read file");
                assert_eq!(content.len() as u64, meta.len(), "size of {path}");
                inodes.entry(meta.ino()).or_default().push(path.clone());
                out.insert(
                    path,
                    Node::File {
                        nlink: meta.nlink(),
                        content,
                        same_inode_as: Vec::new(),
                    },
                );
            }
        }
    }
    for mut names in inodes.into_values() {
        names.sort();
        for name in &names {
            if let Some(Node::File { same_inode_as, .. }) = out.get_mut(name) {
                *same_inode_as = names.clone();
            }
        }
    }
    out
}

/// Every random case starts from this tree, so nested paths exist and links are likely.
const PRELUDE: &[Op] = &[
    Op::Mkdir(2),
    Op::Mkdir(3),
    Op::Create(0),
    Op::Create(4),
    Op::Link(0, 8),
];

fn run(ops: &[Op]) {
    let mount = TestMount::must_mount();
    check_against_local(&mount.root, None, ops);
}

/// Applies `ops` under `root` and in a local directory, comparing after every step; with
/// `other` (the same directory seen through a second mount), that view must match too.
fn check_against_local(root: &Path, other: Option<&Path>, ops: &[Op]) {
    let local = tempfile::tempdir().expect("local reference dir");
    for (step, op) in PRELUDE.iter().chain(ops).enumerate() {
        let got = apply(root, op);
        let want = apply(local.path(), op);
        assert_eq!(got, want, "step {step}: {op:?} (mount vs local errno)");
        let (got, want) = (snapshot(root), snapshot(local.path()));
        assert_eq!(got, want, "step {step}: trees differ after {op:?}");
        if let Some(other) = other {
            assert_eq!(
                snapshot(other),
                want,
                "step {step}: the second mount sees another tree after {op:?}"
            );
        }
    }
}

/// Two mounts of one cluster: mount A is compared with a local directory, and after every
/// step (each closes what it opened) mount B, without kernel caches, must see the same
/// tree (close-to-open across mounts).
fn cluster_cases(cases: u32, fixed: Option<&[Op]>) {
    use common::cluster::{test_mount_options, ClusterMounts};
    let mut mounts = ClusterMounts::start(1, test_mount_options());
    let mut uncached = test_mount_options();
    uncached.fs.attr_ttl = std::time::Duration::ZERO;
    uncached.fs.entry_ttl = std::time::Duration::ZERO;
    mounts.add_mount(uncached, Default::default());
    let (a, b) = (&mounts.mounts[0].root, &mounts.mounts[1].root);
    let case = std::sync::atomic::AtomicUsize::new(0);
    let run_case = |ops: &[Op]| {
        let name = format!(
            "case-{}",
            case.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        fs::create_dir(a.join(&name)).expect("case directory");
        check_against_local(&a.join(&name), Some(&b.join(&name)), ops);
    };
    if let Some(ops) = fixed {
        run_case(ops);
        return;
    }
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&prop::collection::vec(op(), 1..40), |ops| {
            run_case(&ops);
            Ok(())
        })
        .expect("the cluster mounts behave like a local directory");
}

#[test]
fn cluster_mounts_behave_like_a_local_directory() {
    cluster_cases(16, None);
}

#[test]
fn fixed_sequence_matches_local_directory_on_the_cluster() {
    cluster_cases(1, Some(&FIXED));
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mount_behaves_like_a_local_directory(ops in prop::collection::vec(op(), 1..50)) {
        run(&ops);
    }
}

/// A fixed sequence that covers the interesting collisions, so they are always tested.
#[test]
fn fixed_sequence_matches_local_directory() {
    run(&FIXED);
}

const FIXED: [Op; 17] = {
    use Op::*;
    [
        Mkdir(2),
        Create(4),
        Write {
            path: 4,
            offset: 5000,
            len: 100,
            seed: 1,
        },
        Link(4, 0),
        Mkdir(6),
        Rename(2, 3),
        Rename(0, 9),
        Truncate(9, 10),
        Unlink(9),
        Rename(3, 6),
        Rmdir(3),
        Mkdir(2),
        Rename(3, 2),
        // Replacing one name of a hard-linked file drops its link count.
        Create(1),
        Link(1, 5),
        Create(0),
        Rename(0, 1),
    ]
};
