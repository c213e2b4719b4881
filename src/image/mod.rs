//! The local image store: content, layers, image records and container rootfs snapshots.
//!
//! Everything lives under one root directory (e.g. `/var/lib/peapod/images`):
//!
//! ```text
//! blobs/sha256/<hex>            content-addressed blobs (manifests, configs, layer tars),
//!                               verified against their digest before they get their name
//! ingest/                       temporary files of blobs being written; emptied at open
//! layers/<chain-id-hex>/        one unpacked layer: `diff/` (the layer content in overlayfs
//!                               form), `layer.json` (chain id, diff id, parent) and
//!                               `.complete` (written last; a layer without it is never used)
//! layers/.tmp-*                 layers being unpacked; renamed into place when complete
//! images/<config-hex>.json      one image record per image ID
//! layers/.trash-*               layers being deleted by [`gc`]; removed at open
//! ```
//!
//! Data flows one way: [`import`] and [`pull`] (from registries configured by
//! [`RegistryConfig`]) write blobs with [`ImageStore::write_blob`], unpack layers with
//! [`ImageStore::unpack_layer`] (a pull with [`ImageStore::prepare_layer`] while the blob is
//! being written, and [`ImageStore::commit_layer`] bottom-up) and record the image with
//! [`ImageStore::add_image`]; the pod engine then looks images up with [`ImageStore::get`] and
//! mounts a container rootfs from [`ImageStore::layer_dirs`] with [`mount_rootfs`].
//! [`ImageStore::remove`] drops a record; [`gc`] then frees the blobs and layers no image and
//! no container uses any more.
//!
//! The API is synchronous: every call does blocking file I/O, so async callers should run it
//! on a blocking thread (`tokio::task::spawn_blocking`). The store is `Send + Sync`; its
//! in-memory index is guarded by a lock and all on-disk writes are crash-safe (temp + rename).

mod decompress;
pub mod gc;
pub mod import;
pub mod platform;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod snapshot;
pub mod store;
pub mod unpack;
mod xattr;

use std::path::PathBuf;

pub use gc::{gc, GcStats};
pub use import::import;
pub use pull::{pull, PullAuth};
pub use reference::Reference;
pub use registry::RegistryConfig;
pub use snapshot::{is_mounted, mount_rootfs, unmount_rootfs};
pub use store::{ImageRecord, ImageStore, PreparedLayer};

/// Everything that can go wrong in the image store, with enough context (path, digest, entry)
/// to act on the message without a debugger.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// No image matches the reference (tag, digest or ID).
    #[error("image {reference:?} not found")]
    NotFound { reference: String },

    /// An ID prefix matches more than one image.
    #[error("image ID prefix {reference:?} is ambiguous")]
    Ambiguous { reference: String },

    /// The string is not a valid image reference.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },

    /// Content does not hash to the digest it was announced with.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: String, actual: String },

    /// A layer entry tried to leave its layer directory or to plant something unsafe.
    #[error("unsafe layer entry {entry:?}: {reason}")]
    UnsafePath { entry: String, reason: String },

    /// A filesystem operation failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Malformed or unsupported input: JSON documents, archives, media types, mount options.
    #[error("{what}: {reason}")]
    Format { what: String, reason: String },

    /// A registry refused the credentials given (or their absence): HTTP 401/403, a failed
    /// token exchange.
    #[error("registry {registry}: unauthorized: {reason}")]
    Unauthorized { registry: String, reason: String },

    /// Any other failure talking to a registry: connection, TLS, HTTP 5xx, protocol errors.
    #[error("registry {registry}: {reason}")]
    Registry { registry: String, reason: String },
}

impl ImageError {
    /// An [`ImageError::Format`] from anything printable.
    pub(crate) fn format(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        ImageError::Format {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}

/// Attaches a path to `io::Error`s, the context almost every I/O error in this module needs.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, ImageError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, ImageError> {
        self.map_err(|source| ImageError::Io {
            path: path.into(),
            source,
        })
    }
}

impl<T> IoContext<T> for nix::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, ImageError> {
        self.map_err(|errno| ImageError::Io {
            path: path.into(),
            source: std::io::Error::from(errno),
        })
    }
}

/// Reads into `buf` until it is full or the reader is at its end; returns the bytes read.
/// Content is written in pieces of the caller's size, not of whatever a reader hands out.
pub(crate) fn read_full(reader: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Streaming SHA-256 in the `sha256:<hex>` form used by OCI digests, diff IDs and chain IDs.
///
/// ring's SHA-256 (OpenSSL's assembly: SHA-NI, AVX2, ARMv8 crypto extensions) rather than
/// sha2's: a pull hashes every layer twice (blob and diff ID), and on x86 CPUs without SHA-NI
/// sha2 falls back to portable code about five times slower, which then bounds the pull. The
/// two are equally fast where SHA-NI is there.
pub(crate) mod digest {
    use ring::digest::{Context, SHA256};
    use std::io::{self, Read, Write};

    /// `sha256:<hex>` of `data`.
    pub fn sha256(data: &[u8]) -> String {
        format!(
            "sha256:{}",
            hex::encode(ring::digest::digest(&SHA256, data))
        )
    }

    /// The chain ID of a layer: its diff ID when it is the bottom layer, otherwise
    /// `sha256(parent_chain + " " + diff_id)` (OCI image spec, config.md "ChainID").
    pub fn chain_id(parent: Option<&str>, diff_id: &str) -> String {
        match parent {
            None => diff_id.to_string(),
            Some(p) => sha256(format!("{p} {diff_id}").as_bytes()),
        }
    }

    fn hex_digest(hasher: Context) -> String {
        format!("sha256:{}", hex::encode(hasher.finish()))
    }

    /// A reader that hashes and counts everything read through it, so content is verified in
    /// the same pass that stores or unpacks it.
    pub struct HashingReader<R> {
        inner: R,
        hasher: Context,
        count: u64,
    }

    impl<R: Read> HashingReader<R> {
        pub fn new(inner: R) -> Self {
            HashingReader {
                inner,
                hasher: Context::new(&SHA256),
                count: 0,
            }
        }

        /// Reads whatever is left (tar padding after the end-of-archive marker counts towards
        /// the diff ID) and returns `(sha256:<hex>, bytes read)`.
        pub fn finish(mut self) -> io::Result<(String, u64)> {
            io::copy(&mut self, &mut io::sink())?;
            Ok((hex_digest(self.hasher), self.count))
        }
    }

    impl<R: Read> Read for HashingReader<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.hasher.update(&buf[..n]);
            self.count += n as u64;
            Ok(n)
        }
    }

    /// A writer that hashes everything written through it.
    pub struct HashingWriter<W> {
        pub inner: W,
        hasher: Context,
        pub count: u64,
    }

    impl<W: Write> HashingWriter<W> {
        pub fn new(inner: W) -> Self {
            HashingWriter {
                inner,
                hasher: Context::new(&SHA256),
                count: 0,
            }
        }

        /// `sha256:<hex>` of everything written.
        pub fn digest(&self) -> String {
            hex_digest(self.hasher.clone())
        }
    }

    impl<W: Write> Write for HashingWriter<W> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = self.inner.write(buf)?;
            self.hasher.update(&buf[..n]);
            self.count += n as u64;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            self.inner.flush()
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn chain_ids_follow_the_spec() {
            let a = sha256(b"a");
            let b = sha256(b"b");
            assert_eq!(chain_id(None, &a), a);
            assert_eq!(
                chain_id(Some(&a), &b),
                sha256(format!("{a} {b}").as_bytes())
            );
            // The empty string's well-known digest guards against a wrong hash function.
            assert_eq!(
                sha256(b""),
                "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            );
        }

        #[test]
        fn hashing_writer_hashes_across_writes() {
            let mut w = HashingWriter::new(Vec::new());
            for piece in [&b"a"[..], b"", b"bc"] {
                w.write_all(piece).unwrap();
            }
            assert_eq!(w.count, 3);
            // FIPS 180-2's "abc" test vector.
            assert_eq!(
                w.digest(),
                "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
            );
            assert_eq!(w.inner, b"abc");
        }

        #[test]
        fn hashing_reader_counts_the_tail() {
            let mut r = HashingReader::new(&b"hello world"[..]);
            let mut first = [0u8; 5];
            r.read_exact(&mut first).unwrap();
            let (d, n) = r.finish().unwrap();
            assert_eq!(n, 11);
            assert_eq!(d, sha256(b"hello world"));
        }
    }
}
