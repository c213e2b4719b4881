//! Bounded pipes that carry a download's chunks from the async task receiving them to the
//! blocking threads that consume them (the blob writer, the unpacker), and the tee that feeds
//! one download to both.
//!
//! A pipe holds a few chunks, so a consumer that falls behind slows the download down instead
//! of the daemon buffering the layer. A reader sees the end of the stream only when the sender
//! said so ([`PipeSender::finish`]); a sender dropped without it (the pull was cancelled) or
//! [`PipeSender::fail`]ed makes the reader fail, so a consumer never takes a cut stream for a
//! whole one.

use std::io::{self, BufRead, Read};

use bytes::Bytes;
use tokio::sync::mpsc;

/// Chunks a pipe holds. A chunk is one read of the connection, up to ~400 KiB on a fast one
/// (hyper's largest read buffer), and pins that much memory until its last consumer is done
/// with it; two keep the consumers fed (four measured no faster) at under 1 MiB a pipe.
pub const PIPE_CHUNKS: usize = 2;

enum Msg {
    Data(Bytes),
    End,
    Failed(String),
}

/// The reader is gone: it failed, or it returned before the end of the stream.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed;

/// A new pipe holding up to `capacity` chunks.
pub fn pipe(capacity: usize) -> (PipeSender, PipeReader) {
    let (tx, rx) = mpsc::channel(capacity);
    (
        PipeSender { tx },
        PipeReader {
            rx,
            buf: Bytes::new(),
            ended: false,
        },
    )
}

pub struct PipeSender {
    tx: mpsc::Sender<Msg>,
}

impl PipeSender {
    /// Queues a chunk, waiting while the pipe is full.
    pub async fn send(&self, chunk: Bytes) -> Result<(), Closed> {
        if chunk.is_empty() {
            return Ok(()); // an empty read means the end to a reader
        }
        self.tx.send(Msg::Data(chunk)).await.map_err(|_| Closed)
    }

    /// Ends the stream: the reader sees EOF after the chunks sent.
    pub async fn finish(self) {
        let _ = self.tx.send(Msg::End).await;
    }

    /// Ends the stream with an error the reader gets after the chunks sent.
    pub async fn fail(self, reason: &str) {
        let _ = self.tx.send(Msg::Failed(reason.to_string())).await;
    }
}

/// The blocking end of a pipe. Its methods block the thread: use it from a blocking thread
/// (`spawn_blocking`), never from async code.
pub struct PipeReader {
    rx: mpsc::Receiver<Msg>,
    buf: Bytes,
    ended: bool,
}

impl BufRead for PipeReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.buf.is_empty() && !self.ended {
            match self.rx.blocking_recv() {
                Some(Msg::Data(b)) => self.buf = b,
                Some(Msg::End) => self.ended = true,
                Some(Msg::Failed(reason)) => return Err(io::Error::other(reason)),
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the download stopped before the end of the blob",
                    ))
                }
            }
        }
        Ok(&self.buf)
    }

    fn consume(&mut self, n: usize) {
        let _ = self.buf.split_to(n.min(self.buf.len()));
    }
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = out.len().min(avail.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// One download fed to several consumers: each chunk goes to every pipe whose reader is still
/// there. A reader that leaves early is dropped from the tee and the rest are still fed, so
/// that, say, a layer that fails to unpack is still downloaded to the end and its digest
/// checked, which tells a corrupted download from a bad layer.
pub struct Tee {
    outs: Vec<PipeSender>,
}

impl Tee {
    pub fn new(outs: Vec<PipeSender>) -> Tee {
        Tee { outs }
    }

    /// Sends `chunk` to every reader still there; `Closed` once none is.
    pub async fn send(&mut self, chunk: Bytes) -> Result<(), Closed> {
        let mut i = 0;
        while i < self.outs.len() {
            if self.outs[i].send(chunk.clone()).await.is_ok() {
                i += 1;
            } else {
                drop(self.outs.swap_remove(i));
            }
        }
        if self.outs.is_empty() {
            Err(Closed)
        } else {
            Ok(())
        }
    }

    /// Ends the stream for every reader.
    pub async fn finish(self) {
        for out in self.outs {
            out.finish().await;
        }
    }

    /// Fails the stream for every reader.
    pub async fn fail(self, reason: &str) {
        for out in self.outs {
            out.fail(reason).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads everything on a blocking thread, as the store's consumers do.
    fn read_all(mut r: PipeReader) -> tokio::task::JoinHandle<io::Result<Vec<u8>>> {
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            r.read_to_end(&mut out).map(|_| out)
        })
    }

    #[tokio::test]
    async fn chunks_arrive_in_order_and_end_only_when_finished() {
        let (tx, rx) = pipe(2);
        let reader = read_all(rx);
        for c in [&b"ab"[..], b"", b"cde", b"f"] {
            tx.send(Bytes::copy_from_slice(c)).await.unwrap();
        }
        tx.finish().await;
        assert_eq!(reader.await.unwrap().unwrap(), b"abcdef");
    }

    #[tokio::test]
    async fn a_dropped_or_failed_sender_is_an_error_not_an_end() {
        let (tx, rx) = pipe(2);
        let reader = read_all(rx);
        tx.send(Bytes::from_static(b"half")).await.unwrap();
        drop(tx);
        let e = reader.await.unwrap().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);

        let (tx, rx) = pipe(2);
        let reader = read_all(rx);
        tx.send(Bytes::from_static(b"half")).await.unwrap();
        tx.fail("cut off").await;
        let e = reader.await.unwrap().unwrap_err();
        assert_eq!(e.to_string(), "cut off");
    }

    #[tokio::test]
    async fn a_full_pipe_holds_the_sender_back() {
        let (tx, mut rx) = pipe(2);
        tx.send(Bytes::from_static(b"1")).await.unwrap();
        tx.send(Bytes::from_static(b"2")).await.unwrap();
        let third = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            tx.send(Bytes::from_static(b"3")),
        );
        assert!(third.await.is_err(), "the third chunk waited");
        let first = tokio::task::spawn_blocking(move || {
            let mut b = [0u8; 1];
            rx.read_exact(&mut b).map(|_| (b, rx))
        });
        let (b, _rx) = first.await.unwrap().unwrap();
        assert_eq!(&b, b"1");
        tx.send(Bytes::from_static(b"3")).await.unwrap();
    }

    #[tokio::test]
    async fn the_tee_feeds_every_reader_left() {
        let (a_tx, a_rx) = pipe(1);
        let (b_tx, b_rx) = pipe(1);
        let a = read_all(a_rx);
        // `b` reads one chunk and leaves, as an unpacker that failed would.
        let b = tokio::task::spawn_blocking(move || {
            let mut b_rx = b_rx;
            let mut first = [0u8; 3];
            b_rx.read_exact(&mut first).map(|_| first)
        });
        let mut tee = Tee::new(vec![a_tx, b_tx]);
        for i in 0..20u8 {
            tee.send(Bytes::from(vec![i; 3])).await.unwrap();
        }
        tee.finish().await;
        assert_eq!(b.await.unwrap().unwrap(), [0, 0, 0]);
        let got = a.await.unwrap().unwrap();
        assert_eq!(got.len(), 60, "the reader left still got everything");
        assert_eq!(got[57..], [19, 19, 19]);

        // With no reader left, the tee says so.
        let (tx, rx) = pipe(1);
        drop(rx);
        let mut tee = Tee::new(vec![tx]);
        assert_eq!(tee.send(Bytes::from_static(b"x")).await, Err(Closed));
    }
}
