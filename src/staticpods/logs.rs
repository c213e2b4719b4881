//! The log route's reading side: a container's CRI log file decoded into kubectl's lines
//! (`crate::cli::logs`), whole, or followed while the container instance runs.

// The error of a request is the API's Status, made once per request and sent as it is:
// its size (a few strings) costs nothing worth boxing it for.
#![allow(clippy::result_large_err)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Bytes;
use k8s_openapi::api::core::v1::Pod;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::Shared;
use crate::cli::logs::{self, Decoder, LogOptions};
use crate::cli::status::ApiStatus;

/// How often a followed file is polled for more: kubelet's follow reacts within this too.
const POLL: Duration = Duration::from_millis(100);

/// What the route sends: the whole text, or a stream of chunks ending when the container
/// instance is over and its file drained.
pub enum Logs {
    Whole(String),
    Follow(mpsc::Receiver<Bytes>),
}

/// The file of instance `instance` of `container`: kubelet's layout.
fn log_file(shared: &Shared, pod: &Pod, container: &str, instance: i32) -> PathBuf {
    let m = &pod.metadata;
    shared
        .log_root
        .join(format!(
            "{}_{}_{}",
            m.namespace.as_deref().unwrap_or("default"),
            m.name.as_deref().unwrap_or_default(),
            m.uid.as_deref().unwrap_or_default()
        ))
        .join(container)
        .join(format!("{instance}.log"))
}

/// The logs of pod `ns/name` as `opts` ask, or the API's error.
pub async fn pod_logs(
    shared: Arc<Shared>,
    ns: &str,
    name: &str,
    opts: LogOptions,
) -> Result<Logs, ApiStatus> {
    let pod = shared
        .pod(ns, name)
        .ok_or_else(|| ApiStatus::pod_not_found(name))?;
    let container = logs::pick_container(&pod, opts.container.as_deref())?;
    let instance = logs::log_instance(&pod, &container, opts.previous)?;
    let path = log_file(&shared, &pod, &container, instance);
    if !opts.follow || opts.previous {
        // A file not there (yet, or any more) is no lines, as kubelet reads it.
        let bytes = tokio::fs::read(&path).await.unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        return Ok(Logs::Whole(
            logs::decode_all(&text, opts.timestamps, opts.tail_lines).concat(),
        ));
    }
    let (tx, rx) = mpsc::channel(16);
    let (ns, name) = (ns.to_string(), name.to_string());
    let uid = pod.metadata.uid.clone();
    tokio::spawn(async move {
        let done = || {
            let p = shared.pod(&ns, &name).filter(|p| p.metadata.uid == uid);
            logs::instance_done(p.as_ref(), &container, instance)
        };
        follow(path, opts, tx, done).await;
    });
    Ok(Logs::Follow(rx))
}

/// Sends the file's lines (the last `tail_lines` first), then what is appended, until `done`
/// says the instance is over and the file is drained, or the receiver goes away.
async fn follow(path: PathBuf, opts: LogOptions, tx: mpsc::Sender<Bytes>, done: impl Fn() -> bool) {
    let mut dec = Decoder::new(opts.timestamps);
    let mut file = None;
    let mut pending: Vec<u8> = Vec::new();
    let mut first = true;
    loop {
        // Seen before reading: what was written before the instance ended is then all read.
        let finished = done();
        if file.is_none() {
            file = tokio::fs::File::open(&path).await.ok();
        }
        if let Some(f) = file.as_mut() {
            let mut chunk = Vec::new();
            if f.read_to_end(&mut chunk).await.is_err() {
                return;
            }
            pending.extend_from_slice(&chunk);
        }
        // Only whole records are decoded; a record still being written waits for its end.
        let cut = pending
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        let whole: Vec<u8> = pending.drain(..cut).collect();
        let text = String::from_utf8_lossy(&whole);
        let mut lines: Vec<String> = text.lines().filter_map(|l| dec.record(l)).collect();
        if first && file.is_some() {
            first = false;
            if let Some(n) = opts.tail_lines {
                let skip = lines.len().saturating_sub(n);
                lines.drain(..skip);
            }
        }
        if finished {
            if !pending.is_empty() {
                let rest = String::from_utf8_lossy(&pending).into_owned();
                lines.extend(dec.record(&rest));
            }
            lines.extend(dec.finish());
        }
        if !lines.is_empty() && tx.send(Bytes::from(lines.concat())).await.is_err() {
            return;
        }
        if finished {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = tx.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[tokio::test]
    async fn follow_sends_the_tail_then_what_is_appended_until_done() {
        let dir = std::env::temp_dir().join(format!(
            "peapod-follow-{}-{}",
            std::process::id(),
            crate::fsutil::new_id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("0.log");
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(b"2024-01-01T00:00:00Z stdout F old\n2024-01-01T00:00:01Z stdout F last\n")
            .unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let (tx, mut rx) = mpsc::channel(16);
        let opts = LogOptions {
            follow: true,
            tail_lines: Some(1),
            ..Default::default()
        };
        let d = done.clone();
        let task = tokio::spawn(follow(path, opts, tx, move || d.load(Ordering::SeqCst)));
        assert_eq!(rx.recv().await.unwrap(), "last\n");
        // A record written in two steps, and a line in two partial records.
        f.write_all(b"2024-01-01T00:00:02Z stdout P a").unwrap();
        f.flush().unwrap();
        tokio::time::sleep(POLL * 2).await;
        f.write_all(b"b\n2024-01-01T00:00:03Z stdout F c\n")
            .unwrap();
        assert_eq!(rx.recv().await.unwrap(), "abc\n");
        // Written just before the instance ended: still sent, then the stream ends.
        f.write_all(b"2024-01-01T00:00:04Z stderr F bye\n").unwrap();
        done.store(true, Ordering::SeqCst);
        let mut rest = String::new();
        while let Some(b) = rx.recv().await {
            rest.push_str(std::str::from_utf8(&b).unwrap());
        }
        assert_eq!(rest, "bye\n");
        task.await.unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
