//! Kubernetes' channel framing over WebSocket (apimachinery's wsstream), shared by
//! remote-command and port-forward:
//!
//! - `channel.k8s.io` (and `v4.`, `v5.`): binary messages, the first byte the channel number.
//! - `base64.channel.k8s.io` (and `v4.`): text messages, an ASCII channel digit (`'0' + n`)
//!   and then the payload in standard base64.
//! - `v5.channel.k8s.io` adds the close signal: channel 255 carrying one byte, the channel
//!   the client is done sending on (its stdin, in practice).
//!
//! The adapters turn channels into `AsyncRead` / `AsyncWrite` for the backend. Memory per
//! connection is bounded by [`MAX_MESSAGE`] times the channel queue lengths.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use base64::Engine as _;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame, Role};
use tokio_tungstenite::tungstenite::{protocol::WebSocketConfig, Message};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::PollSender;

/// Largest message (and frame) accepted from the client.
pub const MAX_MESSAGE: usize = 1024 * 1024;
/// Largest payload the server puts in one message.
const MAX_OUT_CHUNK: usize = 32 * 1024;
/// The v5 close signal's channel.
pub const CLOSE_CHANNEL: u8 = 255;

/// How the negotiated subprotocol frames channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    pub base64: bool,
    /// v5: the client may half-close a channel.
    pub close_signal: bool,
}

impl Framing {
    pub fn of(protocol: &str) -> Framing {
        Framing {
            base64: protocol.contains("base64."),
            close_signal: protocol.starts_with("v5."),
        }
    }

    pub fn encode(self, channel: u8, data: &[u8]) -> Message {
        if self.base64 {
            let mut s = String::with_capacity(1 + data.len().div_ceil(3) * 4);
            s.push(char::from(b'0'.wrapping_add(channel)));
            base64::engine::general_purpose::STANDARD.encode_string(data, &mut s);
            Message::text(s)
        } else {
            let mut v = Vec::with_capacity(1 + data.len());
            v.push(channel);
            v.extend_from_slice(data);
            Message::binary(v)
        }
    }

    /// The channel and payload of a data message; None for control messages, empty ones
    /// and base64 that does not decode (kubelet skips those too).
    pub fn decode(self, msg: &Message) -> Option<(u8, Bytes)> {
        let raw: &[u8] = match msg {
            Message::Binary(b) => b,
            Message::Text(t) => t.as_bytes(),
            _ => return None,
        };
        let (&first, rest) = raw.split_first()?;
        if self.base64 {
            let data = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()?;
            Some((first.wrapping_sub(b'0'), Bytes::from(data)))
        } else {
            Some((first, Bytes::copy_from_slice(rest)))
        }
    }
}

/// The server end of an upgraded WebSocket connection.
pub async fn accept<T>(io: T) -> WebSocketStream<T>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await
}

/// Forwards queued messages to the socket until every sender is gone, then closes the
/// WebSocket normally.
pub async fn write_all<S>(mut sink: S, mut rx: mpsc::Receiver<Message>)
where
    S: futures_util::Sink<Message> + Unpin,
{
    while let Some(m) = rx.recv().await {
        if sink.send(m).await.is_err() {
            return;
        }
    }
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        })))
        .await;
    let _ = sink.flush().await;
}

/// Reads until the client closes (or breaks) the connection, handing each data message to
/// `f`; `f` may wait (backpressure on the whole connection, as kubelet's pipes).
pub async fn read_all<S, F, Fut>(mut stream: S, framing: Framing, mut f: F)
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
    F: FnMut(u8, Bytes) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    while let Some(Ok(msg)) = stream.next().await {
        if msg.is_close() {
            return;
        }
        if let Some((ch, data)) = framing.decode(&msg) {
            f(ch, data).await;
        }
    }
}

/// One outgoing channel as an `AsyncWrite`.
pub struct ChannelWriter {
    tx: PollSender<Message>,
    framing: Framing,
    channel: u8,
}

impl ChannelWriter {
    pub fn new(tx: mpsc::Sender<Message>, framing: Framing, channel: u8) -> Self {
        ChannelWriter {
            tx: PollSender::new(tx),
            framing,
            channel,
        }
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "WebSocket connection is closed")
}

impl AsyncWrite for ChannelWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        match self.tx.poll_reserve(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(_)) => return Poll::Ready(Err(closed())),
            Poll::Ready(Ok(())) => {}
        }
        let n = buf.len().min(MAX_OUT_CHUNK);
        let msg = self.framing.encode(self.channel, &buf[..n]);
        match self.tx.send_item(msg) {
            Ok(()) => Poll::Ready(Ok(n)),
            Err(_) => Poll::Ready(Err(closed())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The protocol has no end-of-channel from the server: the connection's close is.
        self.tx.close();
        Poll::Ready(Ok(()))
    }
}

/// One incoming channel as an `AsyncRead`: EOF when its sender is dropped.
pub struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    cur: Bytes,
}

impl ChannelReader {
    pub fn new(rx: mpsc::Receiver<Bytes>) -> Self {
        ChannelReader {
            rx,
            cur: Bytes::new(),
        }
    }
}

impl AsyncRead for ChannelReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.cur.is_empty() {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(b)) => self.cur = b,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = self.cur.len().min(buf.remaining());
        let chunk = self.cur.split_to(n);
        buf.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_framing_prefixes_the_channel_byte() {
        let f = Framing::of("v4.channel.k8s.io");
        assert!(!f.base64 && !f.close_signal);
        assert_eq!(f.encode(1, b"hi"), Message::binary(vec![1, b'h', b'i']));
        assert_eq!(
            f.decode(&Message::binary(vec![0, b'x'])),
            Some((0, Bytes::from_static(b"x")))
        );
        assert_eq!(f.decode(&Message::binary(Vec::new())), None);
        assert!(Framing::of("v5.channel.k8s.io").close_signal);
        assert_eq!(Framing::of(""), f, "no subprotocol is plain channel.k8s.io");
    }

    #[test]
    fn base64_framing_uses_a_digit_and_base64() {
        // apimachinery's example: "foo\n" on stdin is "0Zm9vCg==", "\n" on stdout "1Cg==".
        let f = Framing::of("base64.channel.k8s.io");
        assert!(f.base64);
        assert_eq!(f.encode(1, b"\n"), Message::text("1Cg=="));
        assert_eq!(
            f.decode(&Message::text("0Zm9vCg==")),
            Some((0, Bytes::from_static(b"foo\n")))
        );
        assert_eq!(
            f.decode(&Message::text("0%%%")),
            None,
            "bad base64 is skipped"
        );
        assert!(Framing::of("v4.base64.channel.k8s.io").base64);
    }

    #[tokio::test]
    async fn adapters_move_bytes_and_end() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (tx, mut rx) = mpsc::channel(4);
        let mut w = ChannelWriter::new(tx, Framing::of(""), 2);
        w.write_all(b"err").await.unwrap();
        drop(w);
        assert_eq!(
            rx.recv().await,
            Some(Message::binary(vec![2, b'e', b'r', b'r']))
        );
        assert_eq!(rx.recv().await, None);

        let (tx, rx) = mpsc::channel(4);
        let mut r = ChannelReader::new(rx);
        tx.send(Bytes::from_static(b"ab")).await.unwrap();
        tx.send(Bytes::from_static(b"c")).await.unwrap();
        drop(tx);
        let mut s = String::new();
        r.read_to_string(&mut s).await.unwrap();
        assert_eq!(s, "abc");
    }
}
