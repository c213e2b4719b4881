//! Fuzz targets for everything peapod parses from untrusted bytes: layer tars, registry JSON,
//! image references, CRI requests (through the OCI spec translation) and pod manifests.
//!
//! Each target is a `bolero::check!` test. Under `cargo test` it replays its committed corpus
//! (`__fuzz__/<module>__<test>/corpus/` beside this file) and then runs random inputs for
//! [`TEST_TIME`]; `BOLERO_RANDOM_TEST_TIME_MS` or `BOLERO_RANDOM_ITERATIONS` make that longer
//! (`make fuzz`), and `cargo bolero test` on nightly runs the same targets under libFuzzer.
//! A failure prints the input (or `BOLERO_RANDOM_SEED=N`, which replays it).

use std::time::Duration;

mod cri_spec;
mod image_json;
mod manifest;
mod reference;
mod tar_layer;

/// How long each target generates random inputs in a plain `cargo test`, after its corpus:
/// short enough for the normal test run, long enough for a few thousand inputs.
pub const TEST_TIME: Duration = Duration::from_secs(2);

/// A unique scratch directory under the system temp dir, removed on drop.
pub struct Scratch(pub std::path::PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "peapod-fuzz-{tag}-{}",
            &peapod::fsutil::new_id()[..12]
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        force_remove(&self.0);
    }
}

/// Removes a tree whatever its modes: directories a fuzz input left at 0000 are opened up
/// first (without root nothing below them could be removed). Symlinks are never followed.
pub fn force_remove(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if meta.is_dir() {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
        if let Ok(entries) = std::fs::read_dir(path) {
            for e in entries.flatten() {
                force_remove(&e.path());
            }
        }
        let _ = std::fs::remove_dir(path);
    } else {
        let _ = std::fs::remove_file(path);
    }
}
