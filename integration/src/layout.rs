//! OCI image layouts made on the spot, for pushing to a test registry.

use std::path::{Path, PathBuf};

/// Writes `data` as a blob of an OCI layout; returns its digest.
fn put_blob(layout: &Path, data: &[u8]) -> String {
    use sha2::Digest as _;
    let hex = hex::encode(sha2::Sha256::digest(data));
    std::fs::write(layout.join("blobs/sha256").join(&hex), data).unwrap();
    format!("sha256:{hex}")
}

/// An OCI layout with one gzip layer of `bytes` of incompressible data (4 files); returns
/// the layer blob's path and size.
pub fn random_image(layout: &Path, bytes: usize) -> (PathBuf, u64) {
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for f in 0..4 {
        let mut data = vec![0u8; bytes / 4];
        for chunk in data.chunks_mut(8) {
            // xorshift64: fast and incompressible enough that gzip cannot shrink it.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            chunk.copy_from_slice(&seed.to_le_bytes()[..chunk.len()]);
        }
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, format!("data/blob{f}"), data.as_slice())
            .unwrap();
    }
    let gz = tar.into_inner().unwrap().finish().unwrap();
    let uncompressed: Vec<u8> = {
        use std::io::Read;
        let mut v = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut v)
            .unwrap();
        v
    };
    let diff_id = {
        use sha2::Digest as _;
        format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(&uncompressed))
        )
    };
    let layer = put_blob(layout, &gz);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    });
    let config = serde_json::to_vec(&config).unwrap();
    let cfg_digest = put_blob(layout, &config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": gz.len()}],
    });
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let m_digest = put_blob(layout, &manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m_digest, "size": manifest.len()}],
    });
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let hexname = layer.trim_start_matches("sha256:").to_string();
    (layout.join("blobs/sha256").join(hexname), gz.len() as u64)
}
