//! The gRPC ObjectService (served by every storage node): a Python client generated from
//! the .proto files uses it end to end; preconditions let exactly one of two concurrent
//! writers win; a put cut off midway leaves nothing behind; a wrong expected hash commits
//! nothing; any node serves it, also with two storage nodes dead; health and reflection
//! answer generic tools.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cairn_common::Redundancy;
use cairn_devcluster::DevClusterSpec;
use cairn_proto::common::{precondition::Condition, Precondition};
use cairn_proto::object::object_service_client::ObjectServiceClient;
use cairn_proto::object::{
    get_object_response, put_object_request, GetObjectRequest, HeadObjectRequest, PutObjectHeader,
    PutObjectRequest,
};
use cairn_tests::{grpc_channel, random_bytes, TestCluster};
use tonic::transport::Channel;

fn python_client() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/object_api_client.py")
}

async fn object_client(spec: &DevClusterSpec, addr: &str) -> ObjectServiceClient<Channel> {
    ObjectServiceClient::new(grpc_channel(spec, addr, "client"))
        .max_decoding_message_size(cairn_proto::MAX_MESSAGE_BYTES)
}

/// `python3 object_api_client.py ARGS` with the cluster's client certificate.
fn python(spec: &DevClusterSpec) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(python_client())
        .env("CAIRN_TLS_DIR", spec.tls_dir())
        .env("CAIRN_TLS_NAME", "client");
    cmd
}

fn put_request(
    bucket: &str,
    key: &str,
    data: &[u8],
    expected: Option<[u8; 32]>,
    precondition: Option<Condition>,
) -> Vec<PutObjectRequest> {
    let mut msgs = vec![PutObjectRequest {
        part: Some(put_object_request::Part::Header(PutObjectHeader {
            bucket: bucket.into(),
            key: key.into(),
            expected_blake3: expected.map(|h| h.to_vec().into()).unwrap_or_default(),
            precondition: precondition.map(|c| Precondition { condition: Some(c) }),
            ..Default::default()
        })),
    }];
    for part in data.chunks(1 << 20) {
        msgs.push(PutObjectRequest {
            part: Some(put_object_request::Part::Data(part.to_vec().into())),
        });
    }
    msgs
}

async fn put(
    client: &mut ObjectServiceClient<Channel>,
    key: &str,
    data: &[u8],
    precondition: Option<Condition>,
) -> Result<u64, tonic::Status> {
    let msgs = put_request("default", key, data, None, precondition);
    let resp = client.put_object(tokio_stream_iter(msgs)).await?;
    Ok(resp.into_inner().object.expect("object info").generation)
}

fn tokio_stream_iter(
    msgs: Vec<PutObjectRequest>,
) -> impl futures::Stream<Item = PutObjectRequest> + Send + 'static {
    futures::stream::iter(msgs)
}

async fn get(
    client: &mut ObjectServiceClient<Channel>,
    key: &str,
) -> Result<(u64, Vec<u8>), tonic::Status> {
    let mut stream = client
        .get_object(GetObjectRequest {
            bucket: "default".into(),
            key: key.into(),
            range: None,
        })
        .await?
        .into_inner();
    let (mut generation, mut data) = (0, Vec::new());
    while let Some(msg) = stream.message().await? {
        match msg.part {
            Some(get_object_response::Part::Info(i)) => generation = i.generation,
            Some(get_object_response::Part::Data(d)) => data.extend_from_slice(&d),
            None => {}
        }
    }
    Ok((generation, data))
}

/// Must-show 1 and 6: a Python client generated with grpcio-tools creates a bucket, puts
/// 0 B, 1 B, 5 MiB and 200 MiB objects in streamed parts, reads them whole and by range,
/// lists with prefix, delimiter and pagination, copies, deletes — all byte-identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_uses_the_object_api_end_to_end() {
    let tc = TestCluster::start(1, 6, Redundancy::Ec { k: 4, m: 2 }).await;
    let addr = tc.cluster.spec().node_addr(2);
    let mut python = python(tc.cluster.spec());
    let out = tokio::task::spawn_blocking(move || {
        python
            .args(["scenario", &addr])
            .output()
            .expect("run python3")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("scenario passed"),
        "python scenario failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.lines().filter(|l| l.starts_with("ok:")).count() > 30,
        "{stdout}"
    );
}

/// Must-show 2: two writers race with put-if-absent, then with compare-and-swap on the
/// same generation: exactly one wins each round, the loser gets FAILED_PRECONDITION, and a
/// reader running meanwhile only ever sees one writer's complete bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preconditions_let_exactly_one_of_two_writers_win() {
    let tc = TestCluster::start(1, 3, Redundancy::Ec { k: 2, m: 1 }).await;
    let spec = tc.cluster.spec().clone();
    let mut a = object_client(&spec, &spec.node_addr(1)).await;
    let mut b = object_client(&spec, &spec.node_addr(2)).await;
    let mut reader = object_client(&spec, &spec.node_addr(3)).await;
    let values: Vec<Vec<u8>> = (0..2).map(|i| random_bytes(300_000, 100 + i)).collect();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        let values = values.clone();
        tokio::spawn(async move {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((_, data)) = get(&mut reader, "race").await {
                    assert!(values.contains(&data), "a torn or mixed object was read");
                    reads += 1;
                }
            }
            reads
        })
    };

    for round in 0..5 {
        let key_taken = tokio::join!(
            put(&mut a, "race", &values[0], Some(Condition::IfAbsent(true))),
            put(&mut b, "race", &values[1], Some(Condition::IfAbsent(true))),
        );
        let wins = [&key_taken.0, &key_taken.1]
            .iter()
            .filter(|r| r.is_ok())
            .count();
        assert_eq!(wins, 1, "round {round}: {key_taken:?}");
        let loser = [key_taken.0.as_ref().err(), key_taken.1.as_ref().err()]
            .into_iter()
            .flatten()
            .next()
            .unwrap();
        assert_eq!(loser.code(), tonic::Code::FailedPrecondition, "{loser:?}");

        let (generation, _) = get(&mut a, "race").await.unwrap();
        let cas = tokio::join!(
            put(
                &mut a,
                "race",
                &values[0],
                Some(Condition::IfGenerationMatch(generation))
            ),
            put(
                &mut b,
                "race",
                &values[1],
                Some(Condition::IfGenerationMatch(generation))
            ),
        );
        let wins = [&cas.0, &cas.1].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {cas:?}");
        let (_, data) = get(&mut a, "race").await.unwrap();
        let winner = if cas.0.is_ok() {
            &values[0]
        } else {
            &values[1]
        };
        assert_eq!(&data, winner);

        // Conditional delete with a stale generation is refused; with the current one it works.
        let current = cas.0.as_ref().or(cas.1.as_ref()).copied().unwrap();
        let stale = a
            .delete_object(cairn_proto::object::DeleteObjectRequest {
                bucket: "default".into(),
                key: "race".into(),
                if_generation_match: generation,
            })
            .await
            .unwrap_err();
        assert_eq!(stale.code(), tonic::Code::FailedPrecondition);
        a.delete_object(cairn_proto::object::DeleteObjectRequest {
            bucket: "default".into(),
            key: "race".into(),
            if_generation_match: current,
        })
        .await
        .unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = watcher.await.unwrap();
    assert!(reads > 0, "the reader never saw the object");
}

/// Must-show 4: a wrong expected blake3 is refused and nothing is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_expected_hash_commits_nothing() {
    let tc = TestCluster::start(1, 3, Redundancy::Ec { k: 2, m: 1 }).await;
    let mut client = object_client(tc.cluster.spec(), &tc.cluster.spec().node_addr(1)).await;
    let data = random_bytes(2_000_000, 1);
    let mut wrong = *blake3::hash(&data).as_bytes();
    wrong[0] ^= 1;
    let err = client
        .put_object(tokio_stream_iter(put_request(
            "default",
            "hashed",
            &data,
            Some(wrong),
            None,
        )))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("hash mismatch"), "{err:?}");
    let head = client
        .head_object(HeadObjectRequest {
            bucket: "default".into(),
            key: "hashed".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(head.code(), tonic::Code::NotFound);
    // The right hash is accepted and returned.
    let right = *blake3::hash(&data).as_bytes();
    let info = client
        .put_object(tokio_stream_iter(put_request(
            "default",
            "hashed",
            &data,
            Some(right),
            None,
        )))
        .await
        .unwrap()
        .into_inner()
        .object
        .unwrap();
    assert_eq!(info.blake3, right.to_vec());
}

/// Must-show 3: a client killed in the middle of a PutObject stream leaves no visible
/// object, and its shards are reclaimed by the orphan sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_off_put_leaves_no_object_and_no_shards() {
    let tc = TestCluster::start_with(1, 3, Redundancy::Ec { k: 2, m: 1 }, |s| {
        s.chunk_size = 1 << 20;
        s.env
            .push(("CAIRN_NODE_ORPHAN_GRACE_MS".into(), "1000".into()));
        s.env
            .push(("CAIRN_NODE_ORPHAN_SWEEP_INTERVAL_MS".into(), "500".into()));
        s.env
            .push(("CAIRN_META_PENDING_CHUNK_TTL_MS".into(), "2000".into()));
    })
    .await;
    tc.must_put("default", "keep", &random_bytes(3 << 20, 3))
        .await;
    let baseline = tc.shard_files().len();

    let addr = tc.cluster.spec().node_addr(1);
    let mut child = python(tc.cluster.spec())
        .args(["hang", &addr, "default", "cut-off"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start python3");
    let stdout = child.stdout.take().unwrap();
    let sent = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|l| l == "sent")
    });
    let sent = tokio::time::timeout(Duration::from_secs(60), sent).await;
    // Shards of the partial upload reach the disks.
    let deadline = Instant::now() + Duration::from_secs(30);
    while tc.shard_files().len() <= baseline && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let written = tc.shard_files().len();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        matches!(sent, Ok(Ok(true))),
        "the client never sent its data"
    );
    assert!(
        written > baseline,
        "no shard of the partial upload was written"
    );

    let mut client = object_client(tc.cluster.spec(), &addr).await;
    let err = client
        .head_object(HeadObjectRequest {
            bucket: "default".into(),
            key: "cut-off".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let deadline = Instant::now() + Duration::from_secs(30);
    while tc.shard_files().len() != baseline {
        assert!(
            Instant::now() < deadline,
            "orphan shards remain: {} files, {baseline} expected",
            tc.shard_files().len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tc.must_get_equal("default", "keep", &random_bytes(3 << 20, 3))
        .await;
}

/// Must-show 5: every node serves the API; with two of seven storage nodes killed
/// (ec 4+2: five left, enough for the k+1 durable shards a write needs), puts and gets
/// through surviving nodes still work. Also: health and reflection answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_serves_the_api_with_two_nodes_down() {
    let mut tc = TestCluster::start(1, 7, Redundancy::Ec { k: 4, m: 2 }).await;
    let spec = tc.cluster.spec().clone();
    let data = random_bytes(9 << 20, 77);
    let mut first = object_client(&spec, &spec.node_addr(1)).await;
    put(&mut first, "everywhere", &data, None).await.unwrap();
    for j in 1..=7 {
        let mut c = object_client(&spec, &spec.node_addr(j)).await;
        assert_eq!(
            get(&mut c, "everywhere").await.unwrap().1,
            data,
            "via node {j}"
        );
    }

    tc.cluster.kill("node-1");
    tc.cluster.kill("node-2");
    tc.wait_status("two nodes down", Duration::from_secs(30), |s| {
        s.nodes.iter().filter(|n| n.state == "down").count() == 2
    })
    .await;
    let mut third = object_client(&spec, &spec.node_addr(3)).await;
    assert_eq!(get(&mut third, "everywhere").await.unwrap().1, data);
    let more = random_bytes(5 << 20, 78);
    put(&mut third, "while-degraded", &more, None)
        .await
        .unwrap();
    let mut seventh = object_client(&spec, &spec.node_addr(7)).await;
    assert_eq!(get(&mut seventh, "while-degraded").await.unwrap().1, more);

    // Generic tools: the standard health service and server reflection.
    let channel = grpc_channel(&spec, &spec.node_addr(3), "client");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "cairn.object.v1.ObjectService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let mut reflection = ServerReflectionClient::new(channel);
    let mut replies = reflection
        .server_reflection_info(futures::stream::iter([ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reflection reply");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"cairn.object.v1.ObjectService".to_string()),
        "{names:?}"
    );
}
