//! Compiles the upstream CRI `api.proto` (runtime.v1), and grpc.health.v1 for gRPC probes,
//! into tonic services at build time.
//! protoc comes from the protoc-bin-vendored crate so a fresh machine needs no system package.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    println!("cargo:rerun-if-changed=proto/api.proto");
    println!("cargo:rerun-if-changed=proto/health.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // The unfiltered List replies are kept encoded between changes (src/cri/list.rs).
        .extern_path(
            ".runtime.v1.ListPodSandboxResponse",
            "crate::cri::list::ListPodSandboxResponse",
        )
        .extern_path(
            ".runtime.v1.ListContainersResponse",
            "crate::cri::list::ListContainersResponse",
        )
        .compile_protos(&["proto/api.proto", "proto/health.proto"], &["proto"])?;
    Ok(())
}
