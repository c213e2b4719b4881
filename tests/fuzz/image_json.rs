//! Registry JSON: what a pull does with a manifest or index before trusting it
//! (`image::pull::parse_manifest`, then the platform choice of an index or the config and
//! layer descriptors of a manifest). Image configs go through the spec translation in
//! `cri_spec::image_config_json`.

use oci_spec::image::Digest;
use peapod::image::platform::pick_platform;
use peapod::image::pull::{parse_manifest, Doc};

use crate::TEST_TIME;

#[test]
fn manifest_or_index() {
    bolero::check!()
        .with_test_time(TEST_TIME)
        .for_each(|input: &[u8]| {
            use sha2::Digest as _;
            let hex = hex::encode(sha2::Sha256::digest(input));
            let digest: Digest = format!("sha256:{hex}").parse().unwrap();
            match parse_manifest(input, &digest) {
                Err(_) => {}
                Ok(Doc::Index(index)) => {
                    if let Ok(d) = pick_platform(&index) {
                        assert!(index.manifests().contains(&d));
                    }
                }
                Ok(Doc::Image(m)) => {
                    // What the pull reads of it next: the config and layer descriptors.
                    let _ = (m.config().digest(), m.config().media_type().to_string());
                    for l in m.layers() {
                        let _ = (l.digest().as_ref(), l.media_type().to_string(), l.size());
                    }
                }
            }
        });
}
