//! Sets `cfg(peapod_crictl)` when this build can see a crictl ($CRICTL, or crictl on PATH), so
//! that without one the crictl test is listed as ignored instead of passing without running.

use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(peapod_crictl)");
    println!("cargo::rerun-if-env-changed=CRICTL");
    println!("cargo::rerun-if-env-changed=PATH");
    let named = std::env::var_os("CRICTL").filter(|p| !p.is_empty());
    let found = match named {
        Some(p) => Path::new(&p).is_file(),
        None => std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join("crictl").is_file())),
    };
    if found {
        println!("cargo::rustc-cfg=peapod_crictl");
    }
}
