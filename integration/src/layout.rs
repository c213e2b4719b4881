//! OCI image layouts made on the spot, for pushing to a test registry.

use std::path::{Path, PathBuf};

use crate::hostile::{config_json, sha256, write_layout, Layer};

/// An OCI layout with one gzip layer of `bytes` of incompressible data (4 files); returns the
/// layer blob's path and size.
pub fn random_image(layout: &Path, bytes: usize) -> (PathBuf, u64) {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut uncompressed = tar::Builder::new(Vec::new());
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
        let name = format!("data/blob{f}");
        tar.append_data(&mut h.clone(), &name, data.as_slice())
            .unwrap();
        uncompressed
            .append_data(&mut h, &name, data.as_slice())
            .unwrap();
    }
    let gz = tar.into_inner().unwrap().finish().unwrap();
    let layer = Layer {
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        diff_id: sha256(&uncompressed.into_inner().unwrap()),
        blob: gz,
    };
    let config = config_json(serde_json::json!({}), std::slice::from_ref(&layer));
    write_layout(layout, &config, std::slice::from_ref(&layer));
    let path = layout.join("blobs/sha256").join(&sha256(&layer.blob)[7..]);
    (path, layer.blob.len() as u64)
}
