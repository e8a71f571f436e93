//! Least privilege for compute nodes (hardening issue): a mount runs with a certificate of
//! role `mount`, which may use the filesystem protocol on the buckets its user is granted
//! and nothing else. Before, every mount needed a cluster admin's certificate, so every
//! compute node could drain storage nodes, mint API tokens and read every bucket.

use std::io::ErrorKind;
use std::process::Command;

use cairn_client::{Client, ClientError};
use cairn_common::Redundancy;
use cairn_devcluster::MOUNT_USER;
use cairn_tests::{bin_dir, TestCluster};

fn errno(result: std::io::Result<impl std::fmt::Debug>) -> i32 {
    let e = result.expect_err("refused");
    e.raw_os_error().unwrap_or_else(|| panic!("{e:?}"))
}

/// The `cairn` CLI run with the mounts' cluster file (their certificate).
fn cli_as_mount(tc: &TestCluster, args: &[&str]) -> (bool, String) {
    let out = Command::new(bin_dir().join("cairn"))
        .arg("--cluster")
        .arg(tc.cluster.spec().mount_cluster_file())
        .args(args)
        .output()
        .expect("run cairn");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_certificate_serves_its_granted_buckets_and_nothing_else() {
    let mut tc = TestCluster::start(1, 3, Redundancy::Ec { k: 2, m: 1 }).await;
    let mountpoint = tc.dir().join("mnt");
    // The mount is granted the buckets there are when it mounts (`default`)...
    tc.cluster.add_mount(&mountpoint, &[]).await.expect("mount");
    // ...and not this one, made afterwards, nor this one, read-only.
    let admin = &tc.client;
    admin
        .create_bucket("private", Redundancy::Ec { k: 2, m: 1 })
        .await
        .unwrap();
    admin
        .put("private", "secret", &b"not for compute nodes"[..])
        .await
        .unwrap();
    admin
        .create_bucket("shared", Redundancy::Ec { k: 2, m: 1 })
        .await
        .unwrap();
    admin.put("shared", "doc", &b"read me"[..]).await.unwrap();
    admin.set_grant("shared", MOUNT_USER, "read").await.unwrap();

    // The filesystem works on the granted bucket.
    let file = mountpoint.join("default/f");
    std::fs::write(&file, b"from the mount").expect("write through the mount");
    assert_eq!(std::fs::read(&file).unwrap(), b"from the mount");
    // A read grant reads and refuses writes; no grant shows nothing.
    assert_eq!(
        std::fs::read(mountpoint.join("shared/doc")).unwrap(),
        b"read me"
    );
    assert_eq!(
        errno(std::fs::write(mountpoint.join("shared/new"), b"x")),
        libc::EACCES
    );
    assert_eq!(
        errno(std::fs::read(mountpoint.join("private/secret"))),
        libc::EACCES
    );
    assert_eq!(
        errno(std::fs::read_dir(mountpoint.join("private"))),
        libc::EACCES
    );
    let listed: Vec<String> = std::fs::read_dir(&mountpoint)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(listed.contains(&"default".to_string()), "{listed:?}");
    assert!(listed.contains(&"shared".to_string()), "{listed:?}");
    assert!(!listed.contains(&"private".to_string()), "{listed:?}");
    // Buckets are made and removed by cluster admins only.
    let made = std::fs::create_dir(mountpoint.join("mine"));
    assert_eq!(
        made.as_ref().map_err(|e| e.kind()),
        Err(ErrorKind::PermissionDenied)
    );

    // The same certificate administers nothing.
    for args in [
        &["node", "drain", "1"][..],
        &["user", "add", "eve"][..],
        &["bucket", "grant", "private", MOUNT_USER, "write"][..],
        &["bucket", "create", "mine"][..],
        &["status"][..],
    ] {
        let (ok, text) = cli_as_mount(&tc, args);
        assert!(!ok, "cairn {args:?} as the mount succeeded: {text}");
        assert!(
            text.contains("permission denied") || text.contains("role"),
            "cairn {args:?}: {text}"
        );
    }
    // Nor does it reach the object API, even of a bucket it may read through the mount.
    let as_mount = Client::from_file(&tc.cluster.spec().mount_cluster_file()).unwrap();
    for result in [
        as_mount.put("default", "obj", &b"x"[..]).await.map(drop),
        cairn_tests::read_object(&as_mount, "shared", "doc")
            .await
            .map(drop),
    ] {
        assert!(
            matches!(result, Err(ClientError::PermissionDenied { .. })),
            "{result:?}"
        );
    }
    let status = tc.client.status().await.unwrap();
    assert!(
        status.nodes.iter().all(|n| !n.draining),
        "no node is draining"
    );
}
