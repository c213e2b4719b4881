//! Choosing this machine's image from a multi-platform index, for pulls and imports alike.

use oci_spec::image::{Descriptor, ImageIndex};

/// The entry of `index` for linux/<host arch> (an entry without platform when it is the only
/// one); the error lists what the index offers.
pub fn pick_platform(index: &ImageIndex) -> Result<Descriptor, String> {
    let arch = host_arch();
    let matching = index.manifests().iter().find(|m| {
        m.platform()
            .as_ref()
            .is_some_and(|p| p.os().to_string() == "linux" && p.architecture().to_string() == arch)
    });
    match matching {
        Some(m) => Ok(m.clone()),
        None if index.manifests().len() == 1 && index.manifests()[0].platform().is_none() => {
            Ok(index.manifests()[0].clone())
        }
        None => {
            let available: Vec<String> = index
                .manifests()
                .iter()
                .filter_map(|m| m.platform().as_ref())
                .map(|p| format!("{}/{}", p.os(), p.architecture()))
                .collect();
            Err(format!(
                "no manifest for linux/{arch} (available: {})",
                available.join(", ")
            ))
        }
    }
}

/// The GOARCH name of this machine, as OCI platforms spell it.
pub(crate) fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}
