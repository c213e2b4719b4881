//! One layer of a pull, from the registry to its name in the store.
//!
//! The download is tee'd into two pipes, each drained by a blocking thread: the store's blob
//! writer (hashing and writing `ingest/`) and the unpacker (decompressing, hashing for the diff
//! ID and untarring into a temporary layer directory). So a layer is unpacked while it
//! arrives, and several layers are at once, each in its own task.
//!
//! Nothing gets its final name before it is verified: the blob is renamed into `blobs/` by the
//! writer once its digest matched, and the layer directory only once the blob is in place, the
//! diff ID matched, and every layer below is complete ([`BottomUp`]). On any failure both
//! temporaries are removed (by the consumers, which see the stream fail, and by
//! [`Unplaced`]); a cancelled pull drops the task, which ends both streams the same way.
//!
//! Which error a failed layer reports: the download's (cut off, wrong size, digest check of the
//! registry client), else the blob's (its digest), else the unpacker's. A corrupted download
//! usually breaks the decompressor long before its digest can be checked, so the unpacker's
//! failure alone says little; the download then goes on to the end, for the digest.

use std::sync::Arc;
use std::time::Instant;

use oci_spec::image::Descriptor;
use tokio::sync::OwnedSemaphorePermit;
use tokio_stream::StreamExt;

use super::order::BottomUp;
use super::pipe::{pipe, Tee, PIPE_CHUNKS};
use super::{blocking, key, lock_key, Remote};
use crate::image::{ImageError, ImageStore, PreparedLayer};

/// A layer of the image being pulled that is not in the store.
pub struct LayerJob {
    /// Its position in the manifest, bottom layer 0.
    pub index: usize,
    pub desc: Descriptor,
    /// The chain ID of the layer below.
    pub parent: Option<String>,
    pub diff_id: String,
    pub chain: String,
}

/// Puts one missing layer into the store, downloading its blob unless that is present, and
/// returns the bytes downloaded. `permit` is this layer's share of the pull's parallelism; it
/// is given back once the layer is unpacked, before waiting for the layers below.
pub async fn fetch(
    store: Arc<ImageStore>,
    remote: Arc<Remote>,
    job: LayerJob,
    permit: OwnedSemaphorePermit,
    order: BottomUp,
) -> Result<u64, ImageError> {
    // Held until the layer has its name, so that concurrent pulls of it share the work: the
    // next one to get the lock finds it complete.
    let _layer = lock_key(key(&store, "layer", &job.chain)).await;
    if store.has_layer(&job.chain) {
        order.complete(job.index);
        return Ok(0);
    }
    let (mut prepared, downloaded) = {
        let _permit = permit;
        // Only ever held around this layer's own I/O, never while waiting for another task,
        // so two layers of an image with the same blob cannot deadlock on it.
        let _blob = lock_key(key(&store, "blob", job.desc.digest().as_ref())).await;
        if store.has_blob(job.desc.digest()) {
            (unpack_stored(&store, &job).await?, 0)
        } else {
            download_and_unpack(&store, &remote, &job).await?
        }
    };
    order.below(job.index).await;
    let layer = prepared
        .0
        .take()
        .expect("a prepared layer is committed once");
    let committed = {
        let store = store.clone();
        blocking(move || store.commit_layer(layer)).await?
    };
    debug_assert_eq!(committed, job.chain);
    order.complete(job.index);
    Ok(downloaded)
}

/// Unpacks a layer whose blob is in the store already (an earlier pull failed after the
/// download, or the layer was collected and the blob was not).
async fn unpack_stored(store: &Arc<ImageStore>, job: &LayerJob) -> Result<Unplaced, ImageError> {
    let store = store.clone();
    let (parent, diff, desc) = (job.parent.clone(), job.diff_id.clone(), job.desc.clone());
    blocking(move || {
        let path = store.blob_path(desc.digest())?;
        store
            .prepare_stored_layer(parent.as_deref(), &diff, &path, desc.media_type())
            .map(Unplaced::new)
    })
    .await
}

/// Downloads the blob into the store and unpacks it at the same time; returns the unpacked
/// layer (not yet named) and the bytes downloaded.
async fn download_and_unpack(
    store: &Arc<ImageStore>,
    remote: &Remote,
    job: &LayerJob,
) -> Result<(Unplaced, u64), ImageError> {
    let desc = &job.desc;
    let started = Instant::now();
    let mut stream = remote.blob_stream(desc).await?;
    let (blob_tx, blob_rx) = pipe(PIPE_CHUNKS);
    let (unpack_tx, unpack_rx) = pipe(PIPE_CHUNKS);
    let writer = {
        let store = store.clone();
        let digest = desc.digest().clone();
        tokio::task::spawn_blocking(move || store.write_blob(&digest, blob_rx))
    };
    let unpacker = {
        let store = store.clone();
        let (parent, diff, media_type) = (
            job.parent.clone(),
            job.diff_id.clone(),
            desc.media_type().clone(),
        );
        tokio::task::spawn_blocking(move || {
            store
                .prepare_layer(parent.as_deref(), &diff, unpack_rx, &media_type)
                .map(Unplaced::new)
        })
    };

    let mut tee = Tee::new(vec![blob_tx, unpack_tx]);
    let mut received = 0u64;
    let mut failure = None;
    let mut to_the_end = true;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => {
                received += chunk.len() as u64;
                if received > desc.size() {
                    failure = Some(remote.too_long(desc));
                    break;
                }
                if tee.send(chunk).await.is_err() {
                    // Both consumers gave up; their errors say why.
                    to_the_end = false;
                    break;
                }
            }
            Err(e) => {
                failure = Some(remote.stream_error(e, desc));
                break;
            }
        }
    }
    // A blob shorter than its descriptor says is refused as containerd does: the descriptor
    // is wrong, and its size is what the image's size is computed from.
    if failure.is_none() && to_the_end && received != desc.size() {
        failure = Some(remote.wrong_size(desc, received));
    }
    match failure {
        // The consumers must fail too, so that they remove their temporaries.
        Some(_) => tee.fail("the download failed").await,
        None => tee.finish().await,
    }
    let written = writer
        .await
        .map_err(|e| ImageError::format(format!("storing blob {}", desc.digest()), e));
    let unpacked = unpacker
        .await
        .map_err(|e| ImageError::format(format!("unpacking layer {}", desc.digest()), e));
    if let Some(f) = failure {
        return Err(f);
    }
    written??;
    let layer = unpacked??;
    tracing::debug!(
        digest = %desc.digest(),
        bytes = received,
        secs = started.elapsed().as_secs_f32(),
        "layer downloaded and unpacked"
    );
    Ok((layer, received))
}

/// A prepared layer held by async code. Removing its directory is blocking I/O (a big layer
/// takes a while), so when it is dropped uncommitted (a failed or cancelled pull) that is
/// done on a blocking thread.
struct Unplaced(Option<PreparedLayer>);

impl Unplaced {
    fn new(layer: PreparedLayer) -> Unplaced {
        Unplaced(Some(layer))
    }
}

impl Drop for Unplaced {
    fn drop(&mut self) {
        if let Some(layer) = self.0.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn_blocking(move || drop(layer));
                }
                Err(_) => drop(layer),
            }
        }
    }
}
