//! Per-bucket grants (security issue, must-show 3), on a real cluster with mutual TLS:
//! a user (client certificate name) without a grant on a bucket can neither read, list nor
//! write it, through the metadata API or a node's object API; a read grant does not allow
//! writes; write and revoke take effect; only cluster and bucket admins grant.

use cairn_client::{Client, ClientError, ListOptions};
use cairn_common::Redundancy;
use cairn_proto::object::object_service_client::ObjectServiceClient;
use cairn_proto::object::{GetObjectRequest, ListObjectsRequest};
use cairn_tests::{grpc_channel, random_bytes, read_object, TestCluster};
use tonic::Code;

fn denied<T: std::fmt::Debug>(result: cairn_client::Result<T>, what: &str) {
    match result {
        Err(ClientError::PermissionDenied { message }) => {
            assert!(
                message.contains("user \""),
                "{what}: names the user: {message}"
            )
        }
        other => panic!("{what}: expected PermissionDenied, got {other:?}"),
    }
}

async fn get(client: &Client, key: &str) -> cairn_client::Result<Vec<u8>> {
    read_object(client, "private", key).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_reach_only_the_buckets_they_were_granted() {
    let tc = TestCluster::start(3, 3, Redundancy::Ec { k: 2, m: 1 }).await;
    let admin = &tc.client; // the cluster file's `client` certificate: a cluster admin
    admin
        .create_bucket("private", Redundancy::Ec { k: 2, m: 1 })
        .await
        .unwrap();
    let data = random_bytes(300_000, 1);
    admin.put("private", "doc", &data[..]).await.unwrap();
    let alice = tc.client_with_new_cert("alice");
    let bob = tc.client_with_new_cert("bob");

    // No grant: no read, no list (not even the bucket's name), no write, no grant.
    denied(get(&bob, "doc").await, "bob reads");
    denied(
        bob.list_with("private", &ListOptions::default()).await,
        "bob lists",
    );
    denied(bob.put("private", "mine", &b"x"[..]).await, "bob writes");
    denied(bob.delete("private", "doc").await, "bob deletes");
    denied(
        bob.set_grant("private", "bob", "admin").await,
        "bob grants himself",
    );
    let names: Vec<String> = bob
        .list_buckets()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert!(!names.contains(&"private".to_string()), "{names:?}");
    denied(
        bob.create_bucket("bobs", Redundancy::Ec { k: 2, m: 1 })
            .await,
        "bob creates a bucket",
    );

    // A read grant: reads and lists, but no writes.
    admin.set_grant("private", "alice", "read").await.unwrap();
    assert!(get(&alice, "doc").await.unwrap() == data);
    let page = alice
        .list_with("private", &ListOptions::default())
        .await
        .unwrap();
    assert_eq!(page.objects.len(), 1);
    denied(
        alice.put("private", "new", &b"y"[..]).await,
        "alice writes with read",
    );
    denied(
        alice.delete("private", "doc").await,
        "alice deletes with read",
    );
    denied(get(&bob, "doc").await, "bob still reads nothing");

    // Through a node's object API the caller's own grants apply (the node's gateway
    // certificate acts for the caller).
    let spec = tc.cluster.spec().clone();
    for (user, allowed) in [("alice", true), ("bob", false)] {
        let mut api = ObjectServiceClient::new(grpc_channel(&spec, &spec.node_addr(2), user));
        let listed = api
            .list_objects(ListObjectsRequest {
                bucket: "private".into(),
                ..Default::default()
            })
            .await;
        let read = api
            .get_object(GetObjectRequest {
                bucket: "private".into(),
                key: "doc".into(),
                ..Default::default()
            })
            .await;
        if allowed {
            assert_eq!(listed.unwrap().into_inner().objects.len(), 1);
            read.unwrap();
        } else {
            assert_eq!(listed.unwrap_err().code(), Code::PermissionDenied);
            assert_eq!(read.unwrap_err().code(), Code::PermissionDenied);
        }
    }

    // Write, then revoke.
    admin.set_grant("private", "alice", "write").await.unwrap();
    alice.put("private", "new", &b"y"[..]).await.unwrap();
    admin.set_grant("private", "alice", "none").await.unwrap();
    denied(get(&alice, "new").await, "alice after revoke");
    // The admin still sees everything, and bad access names are refused.
    assert!(get(admin, "new").await.unwrap() == b"y");
    assert!(matches!(
        admin.set_grant("private", "alice", "root").await,
        Err(ClientError::InvalidArgument { .. })
    ));
}
