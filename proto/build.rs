//! Generates the gRPC code with the vendored protoc, so no system protoc is needed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // `bytes` fields as `bytes::Bytes`: decoding a shard slices the received buffer
    // instead of copying it into a Vec (see BENCHMARKS.md, profile).
    config.bytes(["."]);
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("cairn_descriptor.bin"))
        .compile_with_config(
            config,
            &[
                "proto/cairn/common.proto",
                "proto/cairn/node.proto",
                "proto/cairn/meta.proto",
                "proto/cairn/object.proto",
            ],
            &["proto"],
        )?;
    Ok(())
}
