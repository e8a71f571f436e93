"""A Python client of Cairn's ObjectService, generated from the .proto files with
grpcio-tools at run time: the integration tests use it to prove that a generic gRPC client
in another language can use the cluster.

Usage:
  object_api_client.py scenario ADDR   full round trip (buckets, sizes, ranges, listing)
  object_api_client.py hang ADDR BUCKET KEY
                                       start a PutObject stream, send 8 MiB, print "sent",
                                       then wait to be killed (a client dying mid-upload)
"""

import hashlib
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.join(HERE, "..", "..", "proto", "proto")


def load_stubs():
    from grpc_tools import protoc

    out = tempfile.mkdtemp(prefix="cairn-pystubs-")
    rc = protoc.main([
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        os.path.join(PROTO_DIR, "cairn", "common.proto"),
        os.path.join(PROTO_DIR, "cairn", "object.proto"),
    ])
    try:
        if rc != 0:
            raise SystemExit(f"protoc failed with {rc}")
        sys.path.insert(0, out)
        from cairn import common_pb2, object_pb2, object_pb2_grpc  # noqa: E402
    finally:
        # The modules are loaded: the generated files are not needed any more, and a
        # client killed later (the "hang" scenario) must not leave them behind.
        shutil.rmtree(out, ignore_errors=True)
        if out in sys.path:
            sys.path.remove(out)
    return common_pb2, object_pb2, object_pb2_grpc


common_pb2, pb, pb_grpc = load_stubs()
import grpc  # noqa: E402

FRAME = 1 << 20
OPTIONS = [("grpc.max_receive_message_length", 16 << 20), ("grpc.max_send_message_length", 16 << 20)]


def open_channel(addr):
    """Mutual TLS with the certificate CAIRN_TLS_NAME (default "client") from CAIRN_TLS_DIR
    when that is set (the cluster's default), else plaintext (an --insecure cluster)."""
    tls_dir = os.environ.get("CAIRN_TLS_DIR")
    if not tls_dir:
        return grpc.insecure_channel(addr, options=OPTIONS)
    name = os.environ.get("CAIRN_TLS_NAME", "client")

    def read(file):
        with open(os.path.join(tls_dir, file), "rb") as f:
            return f.read()

    creds = grpc.ssl_channel_credentials(
        root_certificates=read("ca.pem"),
        private_key=read(f"{name}.key"),
        certificate_chain=read(f"{name}.pem"),
    )
    options = OPTIONS + [("grpc.ssl_target_name_override", "cairn-cluster")]
    return grpc.secure_channel(addr, creds, options=options)


def data_of(size, seed):
    # Deterministic, incompressible-looking bytes without holding a PRNG state.
    out = bytearray()
    block = hashlib.sha256(str(seed).encode()).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:size])


def put(stub, bucket, key, data, part=FRAME, **header):
    def messages():
        yield pb.PutObjectRequest(header=pb.PutObjectHeader(bucket=bucket, key=key, **header))
        for i in range(0, len(data), part):
            yield pb.PutObjectRequest(data=data[i:i + part])
    return stub.PutObject(messages(), timeout=300).object


def get(stub, bucket, key, offset=None, length=0):
    req = pb.GetObjectRequest(bucket=bucket, key=key)
    if offset is not None:
        req.range.offset = offset
        req.range.length = length
    info, chunks = None, []
    for msg in stub.GetObject(req, timeout=300):
        if msg.HasField("info"):
            info = msg.info
        else:
            chunks.append(msg.data)
    return info, b"".join(chunks)


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok:", what, flush=True)


def scenario(addr):
    channel = open_channel(addr)
    stub = pb_grpc.ObjectServiceStub(channel)
    stub.CreateBucket(pb.CreateBucketRequest(
        name="py-bucket",
        redundancy=common_pb2.Redundancy(ec=common_pb2.ErasureCoding(k=4, m=2))))
    names = [b.name for b in stub.ListBuckets(pb.ListBucketsRequest()).buckets]
    check("py-bucket" in names, "bucket created and listed")
    try:
        stub.CreateBucket(pb.CreateBucketRequest(name="py-bucket"))
        check(False, "second CreateBucket refused")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.ALREADY_EXISTS, "second CreateBucket is ALREADY_EXISTS")

    sizes = {"empty": 0, "one": 1, "five-mib": 5 << 20, "big": 200 << 20}
    for i, (name, size) in enumerate(sizes.items()):
        data = data_of(size, i)
        key = f"sizes/{name}"
        # Streamed in parts of varying size (64 KiB .. 3 MiB).
        part = [65536, 1 << 20, 3 << 20, 777777][i % 4]
        info = put(stub, "py-bucket", key, data, part=part, content_type="application/x-test",
                   metadata={"seed": str(i)})
        check(info.size == size and info.generation > 0, f"put {key} ({size} bytes)")
        head = stub.HeadObject(pb.HeadObjectRequest(bucket="py-bucket", key=key)).object
        check(head.size == size and head.content_type == "application/x-test"
              and head.metadata["seed"] == str(i) and len(head.blake3) == 32,
              f"head {key} has size, content type, metadata and a 32-byte hash")
        got_info, got = get(stub, "py-bucket", key)
        check(got_info.size == size and got_info.blake3 == head.blake3, f"get {key} info")
        check(hashlib.sha256(got).digest() == hashlib.sha256(data).digest(),
              f"get {key} is byte-identical")
        if size > 10:
            for off, ln in [(0, 1), (size // 3, size // 3), (size - 7, 0), (size // 2, 5)]:
                _, part_bytes = get(stub, "py-bucket", key, off, ln)
                want = data[off:] if ln == 0 else data[off:off + ln]
                check(part_bytes == want, f"range {off}+{ln} of {key}")
        del data, got

    try:
        get(stub, "py-bucket", "sizes/one", 0, 2)
        check(False, "range past the end refused")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.INVALID_ARGUMENT, "range past the end is INVALID_ARGUMENT")

    # Listing: prefix, delimiter, pagination.
    keys = [f"tree/a/{i:02}" for i in range(5)] + [f"tree/b/{i:02}" for i in range(3)] \
        + ["tree/c", "tree/d", "other"]
    for k in keys:
        put(stub, "py-bucket", k, k.encode())
    resp = stub.ListObjects(pb.ListObjectsRequest(bucket="py-bucket", prefix="tree/", delimiter="/"))
    check([o.key for o in resp.objects] == ["tree/c", "tree/d"]
          and list(resp.common_prefixes) == ["tree/a/", "tree/b/"]
          and resp.next_page_token == "", "list with prefix and delimiter")
    seen, token, pages = [], "", 0
    while True:
        resp = stub.ListObjects(pb.ListObjectsRequest(
            bucket="py-bucket", prefix="tree/", page_size=3, page_token=token))
        pages += 1
        seen += [o.key for o in resp.objects]
        token = resp.next_page_token
        if not token:
            break
    check(seen == sorted(k for k in keys if k.startswith("tree/")) and pages == 4,
          "list in pages of 3 returns every key once, in order")
    seen, token = [], ""
    while True:
        resp = stub.ListObjects(pb.ListObjectsRequest(
            bucket="py-bucket", prefix="tree/", delimiter="/", page_size=1, page_token=token))
        seen += [o.key for o in resp.objects] + list(resp.common_prefixes)
        token = resp.next_page_token
        if not token:
            break
    check(seen == ["tree/a/", "tree/b/", "tree/c", "tree/d"],
          "delimiter listing pages one entry at a time")

    copied = stub.CopyObject(pb.CopyObjectRequest(
        source_bucket="py-bucket", source_key="sizes/five-mib", bucket="py-bucket",
        key="copies/five")).object
    _, a = get(stub, "py-bucket", "sizes/five-mib")
    _, b = get(stub, "py-bucket", "copies/five")
    check(a == b and copied.size == len(a), "copy is byte-identical")

    try:
        stub.DeleteBucket(pb.DeleteBucketRequest(name="py-bucket"))
        check(False, "deleting a non-empty bucket is refused")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.FAILED_PRECONDITION, "non-empty DeleteBucket is FAILED_PRECONDITION")
    all_keys, token = [], ""
    while True:
        resp = stub.ListObjects(pb.ListObjectsRequest(bucket="py-bucket", page_token=token))
        all_keys += [o.key for o in resp.objects]
        token = resp.next_page_token
        if not token:
            break
    for k in all_keys:
        stub.DeleteObject(pb.DeleteObjectRequest(bucket="py-bucket", key=k))
    try:
        stub.HeadObject(pb.HeadObjectRequest(bucket="py-bucket", key="sizes/big"))
        check(False, "deleted object is gone")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.NOT_FOUND, "deleted object is NOT_FOUND")
    stub.DeleteBucket(pb.DeleteBucketRequest(name="py-bucket"))
    names = [b.name for b in stub.ListBuckets(pb.ListBucketsRequest()).buckets]
    check("py-bucket" not in names, "empty bucket deleted")
    print("scenario passed", flush=True)


def hang(addr, bucket, key):
    channel = open_channel(addr)
    stub = pb_grpc.ObjectServiceStub(channel)

    def messages():
        yield pb.PutObjectRequest(header=pb.PutObjectHeader(bucket=bucket, key=key))
        for i in range(8):
            yield pb.PutObjectRequest(data=data_of(FRAME, i))
        print("sent", flush=True)
        while True:
            time.sleep(3600)
            yield pb.PutObjectRequest(data=b"x")

    stub.PutObject(messages(), timeout=3600)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "scenario":
        scenario(sys.argv[2])
    elif len(sys.argv) == 5 and sys.argv[1] == "hang":
        hang(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        raise SystemExit(__doc__)
