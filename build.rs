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
    daemon_layout();
    Ok(())
}

/// How the release daemon is laid out, for its memory: most of its resident set is pages of its
/// own code, which the kernel maps 64 KiB at a time around each one touched.
/// - `hack/daemon.order` (written by `make text-order` from a profiling run) names the functions
///   a daemon runs, so that the linker puts them together instead of scattered through 16 MB
///   of text. Names it does not find (changed code) keep their default place.
/// - Packed relative relocations: a PIE's 900 KB of `.rela.dyn`, read whole at every start,
///   shrink to a bitmap of a few KiB.
///
/// The symbol order is an lld option. lld is this target's default linker since Rust 1.90; it is
/// left out where another linker may be in use.
fn daemon_layout() {
    println!("cargo:rerun-if-changed=hack/daemon.order");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    if var("PROFILE") != "release" {
        return;
    }
    println!("cargo:rustc-link-arg-bin=peapod=-Wl,-z,pack-relative-relocs");
    let order = std::path::Path::new(&var("CARGO_MANIFEST_DIR")).join("hack/daemon.order");
    let lld = var("TARGET") == "x86_64-unknown-linux-gnu"
        && var("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_empty()
        && !var("CARGO_ENCODED_RUSTFLAGS").contains("link");
    if lld && order.exists() {
        println!(
            "cargo:rustc-link-arg-bin=peapod=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bin=peapod=-Wl,--no-warn-symbol-ordering");
    }
}
