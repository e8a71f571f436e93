//! API tokens (security issue, "client identities: a certificate's name or an API token
//! issued by `cairn user add`"), on a real cluster with mutual TLS: a token makes a call
//! act as its user, whose grants then apply, through the metadata API and a node's object
//! API; a forged, malformed or revoked token is refused as UNAUTHENTICATED; only cluster
//! admins make, list and revoke tokens; the secret is never stored by the cluster.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use cairn_client::{read_token_file, Client, ClientError};
use cairn_common::token::ApiToken;
use cairn_common::Redundancy;
use cairn_proto::object::object_service_client::ObjectServiceClient;
use cairn_proto::object::{GetObjectRequest, ListObjectsRequest};
use cairn_tests::{grpc_channel, random_bytes, read_object, TestCluster};
use tonic::Code;

async fn get(client: &Client, key: &str) -> cairn_client::Result<Vec<u8>> {
    read_object(client, "shared", key).await
}

fn denied_as<T: std::fmt::Debug>(result: cairn_client::Result<T>, user: &str, what: &str) {
    match result {
        Err(ClientError::PermissionDenied { message }) => assert!(
            message.contains(&format!("user {user:?}")),
            "{what}: the refusal names {user}: {message}"
        ),
        other => panic!("{what}: expected PermissionDenied, got {other:?}"),
    }
}

fn unauthenticated<T: std::fmt::Debug>(result: cairn_client::Result<T>, what: &str) {
    assert!(
        matches!(result, Err(ClientError::Unauthenticated { .. })),
        "{what}: expected Unauthenticated, got {result:?}"
    );
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => pending.push(path),
                Ok(t) if t.is_file() => {
                    let bytes = std::fs::read(&path).unwrap_or_default();
                    if bytes.windows(needle.len()).any(|w| w == needle) {
                        found.push(path);
                    }
                }
                _ => {}
            }
        }
    }
    found
}

/// The object API of node 2, called with certificate `cert` and `authorization` header.
async fn object_api_get(tc: &TestCluster, cert: &str, header: &str) -> Result<(), tonic::Status> {
    let spec = tc.cluster.spec().clone();
    let mut api = ObjectServiceClient::new(grpc_channel(&spec, &spec.node_addr(2), cert));
    let mut req = tonic::Request::new(GetObjectRequest {
        bucket: "shared".into(),
        key: "doc".into(),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("authorization", header.parse().unwrap());
    let mut stream = api.get_object(req).await?.into_inner();
    while stream.message().await?.is_some() {}
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tokens_act_as_their_user_until_revoked() {
    let tc = TestCluster::start(3, 3, Redundancy::Ec { k: 2, m: 1 }).await;
    let admin = &tc.client; // the cluster file's `client` certificate: a cluster admin
    admin
        .create_bucket("shared", Redundancy::Ec { k: 2, m: 1 })
        .await
        .unwrap();
    let data = random_bytes(200_000, 3);
    admin.put("shared", "doc", &data[..]).await.unwrap();

    // `cairn user add`: to a new 0600 file, or to standard output.
    let keep = tempfile::tempdir().unwrap();
    let carol_file = keep.path().join("carol.token");
    let out = tc.cli(&[
        "user",
        "add",
        "carol",
        "--out",
        carol_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::metadata(&carol_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let carol_token = read_token_file(&carol_file).unwrap();
    let out = tc.cli(&["user", "add", "dave"]);
    assert!(out.status.success(), "{out:?}");
    let dave_token = ApiToken::parse(&String::from_utf8(out.stdout).unwrap()).unwrap();
    admin.set_grant("shared", "carol", "read").await.unwrap();

    // One application certificate with no grant of its own, acting as token users.
    let app = tc.client_with_new_cert("app-server");
    denied_as(
        get(&app, "doc").await,
        "app-server",
        "the certificate alone",
    );
    let carol = app.with_token(&carol_token).unwrap();
    assert!(get(&carol, "doc").await.unwrap() == data);
    // Through a follower, which forwards the token to the leader.
    let leader = tc.leader().await as usize;
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    let mut file = tc
        .cluster
        .cluster_file_for(vec![tc.cluster.spec().meta_addr(follower)]);
    file.tls_name = "app-server".into();
    let carol_via_follower = Client::new(&file)
        .unwrap()
        .with_token(&carol_token)
        .unwrap();
    assert!(get(&carol_via_follower, "doc").await.unwrap() == data);
    denied_as(
        carol_via_follower.put("shared", "new", &b"x"[..]).await,
        "carol",
        "a read grant, through a follower",
    );
    let names: Vec<String> = carol
        .list_buckets()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, ["shared"]);
    denied_as(
        carol.put("shared", "new", &b"x"[..]).await,
        "carol",
        "a read grant does not allow writes",
    );
    let dave = app.with_token(&dave_token).unwrap();
    denied_as(get(&dave, "doc").await, "dave", "a token without a grant");
    // A token holder is its user, not an admin, whatever the certificate.
    denied_as(carol.add_token("eve").await, "carol", "carol makes a token");
    denied_as(
        app.list_tokens().await,
        "app-server",
        "a non-admin lists tokens",
    );
    let via_admin_cert = admin.with_token(&dave_token).unwrap();
    denied_as(
        get(&via_admin_cert, "doc").await,
        "dave",
        "a token on an admin certificate",
    );

    // Forged (a known id with another secret) and malformed tokens.
    let forged =
        ApiToken::parse(&format!("cairn_{}_{}", carol_token.id(), "ab".repeat(32))).unwrap();
    unauthenticated(
        get(&app.with_token(&forged).unwrap(), "doc").await,
        "a forged token",
    );

    // The object API: the node passes the token on; the metadata service resolves it.
    let bearer = |t: &ApiToken| format!("Bearer {}", t.reveal());
    object_api_get(&tc, "app-server", &bearer(&carol_token))
        .await
        .unwrap();
    let as_dave = object_api_get(&tc, "app-server", &bearer(&dave_token)).await;
    assert_eq!(as_dave.unwrap_err().code(), Code::PermissionDenied);
    let malformed = object_api_get(&tc, "app-server", "Bearer cairn_nonsense").await;
    assert_eq!(malformed.unwrap_err().code(), Code::Unauthenticated);
    let spec = tc.cluster.spec().clone();
    let mut api = ObjectServiceClient::new(grpc_channel(&spec, &spec.node_addr(1), "app-server"));
    let mut list = tonic::Request::new(ListObjectsRequest {
        bucket: "shared".into(),
        ..Default::default()
    });
    list.metadata_mut()
        .insert("authorization", bearer(&carol_token).parse().unwrap());
    assert_eq!(
        api.list_objects(list)
            .await
            .unwrap()
            .into_inner()
            .objects
            .len(),
        1
    );

    // `cairn user ls` shows both tokens (ids and users, never secrets).
    let out = tc.cli(&["user", "ls", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut pairs: Vec<(String, String)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["user"].as_str().unwrap().into(),
                t["id"].as_str().unwrap().into(),
            )
        })
        .collect();
    pairs.sort();
    assert_eq!(
        pairs,
        [
            ("carol".to_string(), carol_token.id().to_string()),
            ("dave".to_string(), dave_token.id().to_string())
        ]
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&carol_token.reveal()));

    // Revocation takes effect at once, everywhere.
    let out = tc.cli(&["user", "revoke", carol_token.id()]);
    assert!(out.status.success(), "{out:?}");
    unauthenticated(get(&carol, "doc").await, "a revoked token");
    unauthenticated(
        get(&carol_via_follower, "doc").await,
        "a revoked token, through a follower",
    );
    let revoked = object_api_get(&tc, "app-server", &bearer(&carol_token)).await;
    assert_eq!(revoked.unwrap_err().code(), Code::Unauthenticated);
    let again = tc.cli(&["user", "revoke", carol_token.id()]);
    assert!(!again.status.success(), "revoking twice is an error");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("does not exist"),
        "{again:?}"
    );
    // Dave's token is untouched: still his, still without a grant until given one.
    denied_as(
        get(&dave, "doc").await,
        "dave",
        "dave after carol's revocation",
    );
    admin.set_grant("shared", "dave", "read").await.unwrap();
    assert!(get(&dave, "doc").await.unwrap() == data);

    // The secrets are nowhere in the cluster's files (Raft logs, snapshots, logs). The
    // ids, which the metadata store does hold, are found there by the same scan.
    for token in [&carol_token, &dave_token] {
        let secret = token.reveal();
        let secret = secret.rsplit('_').next().unwrap();
        assert_eq!(
            files_containing(tc.dir(), secret.as_bytes()),
            Vec::<std::path::PathBuf>::new()
        );
        for i in 1..=3 {
            let store = tc.dir().join(format!("meta-{i}"));
            assert!(
                !files_containing(&store, token.id().as_bytes()).is_empty(),
                "{store:?} holds token {}",
                token.id()
            );
        }
    }
}
