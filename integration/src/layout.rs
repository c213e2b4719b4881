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

/// An OCI layout of one image with a gzip layer per entry of `sizes`, layer `i` holding
/// `sizes[i]` bytes of random hex text (4 bits of entropy per byte, so gzip about halves it, as
/// it does a typical image's binaries and text) in files of at most 1 MiB, 64 to a directory.
/// Returns each layer blob's path and size, bottom layer first.
pub fn random_image_layers(layout: &Path, sizes: &[usize]) -> Vec<(PathBuf, u64)> {
    const FILE: usize = 1 << 20;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut layers = Vec::with_capacity(sizes.len());
    for (l, &size) in sizes.iter().enumerate() {
        let mut tar = tar::Builder::new(Vec::new());
        let mut left = size;
        let mut f = 0;
        while left > 0 {
            let mut data = vec![0u8; left.min(FILE)];
            for chunk in data.chunks_mut(16) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                for (i, b) in chunk.iter_mut().enumerate() {
                    *b = b"0123456789abcdef"[(seed >> (4 * i)) as usize & 15];
                }
            }
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            let name = format!("layer{l}/d{}/f{f}", f / 64);
            tar.append_data(&mut h, &name, data.as_slice()).unwrap();
            left -= data.len();
            f += 1;
        }
        let tar = tar.into_inner().unwrap();
        // Not `fast()`: some zlib backends' fastest level uses fixed Huffman codes, which do
        // not shrink text of few symbols.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        layers.push(Layer {
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            diff_id: sha256(&tar),
            blob: gz.finish().unwrap(),
        });
    }
    let config = config_json(serde_json::json!({}), &layers);
    write_layout(layout, &config, &layers);
    layers
        .iter()
        .map(|l| {
            let path = layout.join("blobs/sha256").join(&sha256(&l.blob)[7..]);
            (path, l.blob.len() as u64)
        })
        .collect()
}
