//! The server side of a SPDY/3.1 session: peer-opened streams, each an `AsyncRead` +
//! `AsyncWrite`, multiplexed over one connection.
//!
//! ```text
//!   socket ──▶ reader ──▶ Shared { streams, outbound queue } ◀── Stream halves (app tasks)
//!   socket ◀── writer ◀──────────────┘
//! ```
//!
//! [`Session::new`] returns the handle, the [`Acceptor`] of new streams and the [`Driver`]
//! future that runs the reader and the writer; whoever owns the connection polls the driver
//! (it ends when the peer goes away, on a protocol error, or after [`Session::close`] once
//! everything queued is written and the peer has closed its side).
//!
//! Flow control (SPDY/3.1 section 2.6.8): every stream and the session have a 64 KiB window
//! each way.
//! - Receiving: what the application reads is acknowledged with WINDOW_UPDATE (stream and
//!   session) once half a window has been consumed. A stream buffers at most
//!   [`RECV_BUFFER`] bytes; a peer that sends past it (one that ignores windows) is not read
//!   from until the application catches up, so a connection's memory stays bounded either way.
//! - Sending: the peer's windows are tracked and honoured once the peer shows it does flow
//!   control: a SETTINGS with INITIAL_WINDOW_SIZE or any WINDOW_UPDATE. moby/spdystream
//!   (kubelet, client-go, crictl, kubectl) does neither: it ignores both frames and never
//!   sends them, so a server that waited for its window updates would stall every stream after
//!   64 KiB. Besides the windows, a stream's writes wait while more than [`MAX_QUEUED_DATA`]
//!   bytes are queued for the socket, so a slow reader holds back the writers, not memory.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::{
    rst, Decoder, Encoder, Frame, FrameError, Headers, DATA_CHUNK, DEFAULT_WINDOW, MAX_WINDOW,
    SETTINGS_INITIAL_WINDOW_SIZE,
};

/// Bytes a stream buffers from the peer before the reader stops reading the socket.
pub const RECV_BUFFER: usize = DEFAULT_WINDOW as usize;
/// DATA bytes queued for the socket (all streams) past which writers wait.
pub const MAX_QUEUED_DATA: usize = 256 * 1024;
/// Control frames queued for the socket past which the peer is taken to be flooding (PINGs it
/// never reads the answers to, frames that each earn a RST_STREAM) and the session ends.
const MAX_QUEUED_CONTROL: usize = 1024;
/// Streams open at once; more are refused (RST_STREAM REFUSED_STREAM).
pub const MAX_STREAMS: usize = 256;
/// Consumed bytes acknowledged with one WINDOW_UPDATE.
const ACK_THRESHOLD: u32 = DEFAULT_WINDOW / 2;
/// New streams waiting to be accepted; more are refused.
const ACCEPT_BACKLOG: usize = 32;

/// A stream the peer opened, with the headers of its SYN_STREAM.
pub struct Incoming {
    pub headers: Headers,
    pub stream: Stream,
}

/// Receives the streams the peer opens. Dropping it refuses any later ones.
pub struct Acceptor {
    rx: mpsc::Receiver<Incoming>,
}

impl Acceptor {
    /// The next stream the peer opens; None once the session is over.
    pub async fn accept(&mut self) -> Option<Incoming> {
        self.rx.recv().await
    }
}

/// A handle on the session (cheap to clone).
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
}

/// Runs the session's reader and writer; see the module docs.
pub type Driver = Pin<Box<dyn Future<Output = ()> + Send>>;

struct Shared {
    state: Mutex<State>,
    /// The writer waits here for frames.
    writer_wake: Notify,
    /// The reader waits here for buffer space in a stream.
    reader_wake: Notify,
    /// The peer is gone (or the session failed): streams fail, the writer stops at once.
    dead: CancellationToken,
}

#[derive(Default)]
struct State {
    streams: HashMap<u32, StreamState>,
    /// Highest stream ID the peer opened.
    last_peer_stream: u32,
    queue: VecDeque<Frame>,
    queued_data: usize,
    queued_control: usize,
    /// Our send window on the session (SPDY/3.1), and each new stream's initial one.
    send_window: i64,
    initial_send_window: i64,
    /// Session-level bytes consumed but not yet acknowledged.
    recv_unacked: u32,
    /// The peer sent SETTINGS INITIAL_WINDOW_SIZE or a WINDOW_UPDATE: honour its windows.
    peer_flow_control: bool,
    /// close() was called (GOAWAY queued): the writer ends once the queue is empty.
    closing: bool,
    /// The peer sent GOAWAY.
    peer_goaway: bool,
    dead: bool,
}

#[derive(Default)]
struct StreamState {
    inbound: VecDeque<Bytes>,
    inbound_len: usize,
    remote_fin: bool,
    local_fin: bool,
    reset: bool,
    replied: bool,
    recv_dropped: bool,
    send_dropped: bool,
    recv_unacked: u32,
    send_window: i64,
    recv_waker: Option<Waker>,
    send_waker: Option<Waker>,
}

impl StreamState {
    fn wake(&mut self) {
        if let Some(w) = self.recv_waker.take() {
            w.wake();
        }
        if let Some(w) = self.send_waker.take() {
            w.wake();
        }
    }

    /// Nothing more will happen on the stream: its entry can go.
    fn finished(&self) -> bool {
        self.recv_dropped
            && self.send_dropped
            && (self.reset || (self.local_fin && self.remote_fin))
    }
}

impl State {
    fn push_control(&mut self, f: Frame) {
        self.queued_control += 1;
        self.queue.push_back(f);
    }

    /// SYN_REPLY goes before anything else we send on a stream (spdystream drops DATA on a
    /// stream it has no reply for).
    fn ensure_replied(&mut self, id: u32) {
        if let Some(s) = self.streams.get_mut(&id) {
            if !s.replied {
                s.replied = true;
                self.push_control(Frame::SynReply {
                    stream_id: id,
                    fin: false,
                    headers: Headers::default(),
                });
            }
        }
    }

    /// Counts `n` bytes of stream `id` as consumed and queues the WINDOW_UPDATEs due.
    fn consumed(&mut self, id: u32, n: usize) {
        let n = n as u32;
        if let Some(s) = self.streams.get_mut(&id) {
            s.recv_unacked += n;
            if s.recv_unacked >= ACK_THRESHOLD && !s.remote_fin && !s.reset {
                let delta = std::mem::take(&mut s.recv_unacked);
                self.push_control(Frame::WindowUpdate {
                    stream_id: id,
                    delta,
                });
            }
        }
        self.recv_unacked += n;
        if self.recv_unacked >= ACK_THRESHOLD {
            let delta = std::mem::take(&mut self.recv_unacked);
            self.push_control(Frame::WindowUpdate {
                stream_id: 0,
                delta,
            });
        }
    }

    fn remove_if_finished(&mut self, id: u32) {
        if self.streams.get(&id).is_some_and(StreamState::finished) {
            self.streams.remove(&id);
        }
    }

    fn wake_senders(&mut self) {
        for s in self.streams.values_mut() {
            if let Some(w) = s.send_waker.take() {
                w.wake();
            }
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves counters, not invariants memory depends on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn kill(&self) {
        let mut st = self.lock();
        st.dead = true;
        for s in st.streams.values_mut() {
            s.wake();
        }
        drop(st);
        self.dead.cancel();
        self.reader_wake.notify_one();
    }
}

impl Session {
    /// Starts a session on an upgraded connection (server side: the peer opens odd streams).
    pub fn new<T>(io: T) -> (Session, Acceptor, Driver)
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                send_window: i64::from(DEFAULT_WINDOW),
                initial_send_window: i64::from(DEFAULT_WINDOW),
                ..State::default()
            }),
            writer_wake: Notify::new(),
            reader_wake: Notify::new(),
            dead: CancellationToken::new(),
        });
        let (tx, rx) = mpsc::channel(ACCEPT_BACKLOG);
        let (rd, wr) = tokio::io::split(io);
        let driver = {
            let shared = shared.clone();
            Box::pin(async move {
                let reader = read_loop(shared.clone(), rd, tx);
                let writer = write_loop(shared.clone(), wr);
                tokio::join!(reader, writer);
                shared.kill();
            })
        };
        (Session { shared }, Acceptor { rx }, driver)
    }

    /// Ends the session gracefully: GOAWAY after everything queued so far, then the writer
    /// closes its side of the connection. Streams still open see errors from then on.
    pub fn close(&self) {
        let mut st = self.shared.lock();
        if !st.closing {
            st.closing = true;
            let last = st.last_peer_stream;
            st.push_control(Frame::GoAway {
                last_good_stream_id: last,
                status: super::goaway::OK,
            });
        }
        drop(st);
        self.shared.writer_wake.notify_one();
    }

    /// Resolves once the peer is gone or the session failed.
    pub async fn dead(&self) {
        self.shared.dead.cancelled().await
    }

    /// Whether the peer has said GOAWAY.
    pub fn peer_gone_away(&self) -> bool {
        self.shared.lock().peer_goaway
    }
}

async fn read_loop<R: AsyncRead>(
    shared: Arc<Shared>,
    rd: tokio::io::ReadHalf<R>,
    accept: mpsc::Sender<Incoming>,
) {
    let mut rd = rd;
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut dec = Decoder::new();
    let result: Result<(), FrameError> = async {
        loop {
            while let Some(frame) = dec.decode(&mut buf)? {
                if !handle(&shared, &accept, frame).await {
                    return Ok(());
                }
            }
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(16 * 1024);
            }
            let n = tokio::select! {
                r = rd.read_buf(&mut buf) => r,
                _ = shared.dead.cancelled() => return Ok(()),
            };
            match n {
                Ok(0) | Err(_) => return Ok(()),
                Ok(_) => {}
            }
        }
    }
    .await;
    match result {
        Ok(()) => shared.kill(),
        Err(e) => {
            tracing::debug!(error = %e, "SPDY protocol error; going away");
            let mut st = shared.lock();
            st.dead = true;
            for s in st.streams.values_mut() {
                s.wake();
            }
            if !st.closing {
                st.closing = true;
                let last = st.last_peer_stream;
                st.push_control(Frame::GoAway {
                    last_good_stream_id: last,
                    status: super::goaway::PROTOCOL_ERROR,
                });
            }
            drop(st);
            shared.writer_wake.notify_one();
        }
    }
}

/// Handles one frame from the peer; false ends the reader (the session is being torn down).
async fn handle(shared: &Arc<Shared>, accept: &mpsc::Sender<Incoming>, frame: Frame) -> bool {
    match frame {
        Frame::Data {
            stream_id,
            fin,
            data,
        } => return on_data(shared, stream_id, fin, data).await,
        Frame::SynStream {
            stream_id,
            fin,
            unidirectional,
            headers,
            ..
        } => {
            let mut st = shared.lock();
            let refuse = |st: &mut State, status| {
                st.push_control(Frame::RstStream { stream_id, status });
            };
            if stream_id.is_multiple_of(2) || stream_id <= st.last_peer_stream {
                refuse(&mut st, rst::PROTOCOL_ERROR);
            } else {
                st.last_peer_stream = stream_id;
                if st.closing || st.dead || st.streams.len() >= MAX_STREAMS {
                    refuse(&mut st, rst::REFUSED_STREAM);
                } else {
                    let state = StreamState {
                        remote_fin: fin,
                        // We may not send on a unidirectional stream: nothing to finish.
                        local_fin: unidirectional,
                        replied: unidirectional,
                        send_window: st.initial_send_window,
                        ..StreamState::default()
                    };
                    st.streams.insert(stream_id, state);
                    drop(st);
                    let stream = Stream::new(shared.clone(), stream_id);
                    if let Err(e) = accept.try_send(Incoming { headers, stream }) {
                        // Dropping the stream in `e` finishes it; refuse it as well.
                        let inc = match e {
                            mpsc::error::TrySendError::Full(i)
                            | mpsc::error::TrySendError::Closed(i) => i,
                        };
                        inc.stream.reset(rst::REFUSED_STREAM);
                    }
                    st = shared.lock();
                }
            }
            overflowed(shared, st)
        }
        Frame::RstStream { stream_id, .. } => {
            let mut st = shared.lock();
            if let Some(s) = st.streams.get_mut(&stream_id) {
                s.reset = true;
                s.inbound.clear();
                s.inbound_len = 0;
                s.wake();
            }
            st.remove_if_finished(stream_id);
            true
        }
        Frame::Settings { entries, .. } => {
            let mut st = shared.lock();
            for (_, id, value) in entries {
                if id == SETTINGS_INITIAL_WINDOW_SIZE {
                    let value = i64::from(value).min(MAX_WINDOW);
                    let delta = value - st.initial_send_window;
                    st.initial_send_window = value;
                    st.peer_flow_control = true;
                    for s in st.streams.values_mut() {
                        s.send_window += delta;
                    }
                }
            }
            st.wake_senders();
            true
        }
        Frame::WindowUpdate { stream_id, delta } => {
            let mut st = shared.lock();
            st.peer_flow_control = true;
            let delta = i64::from(delta);
            if stream_id == 0 {
                st.send_window = (st.send_window + delta).min(MAX_WINDOW);
            } else if let Some(s) = st.streams.get_mut(&stream_id) {
                s.send_window += delta;
                if s.send_window > MAX_WINDOW {
                    s.reset = true;
                    s.wake();
                    st.push_control(Frame::RstStream {
                        stream_id,
                        status: rst::FLOW_CONTROL_ERROR,
                    });
                }
            }
            st.wake_senders();
            overflowed(shared, st)
        }
        Frame::Ping { id } => {
            let mut st = shared.lock();
            // Odd IDs are the client's: echo them. Even ones would answer ours; we send none.
            if !id.is_multiple_of(2) {
                st.push_control(Frame::Ping { id });
            }
            overflowed(shared, st)
        }
        Frame::GoAway { .. } => {
            shared.lock().peer_goaway = true;
            true
        }
        // We open no streams, so a SYN_REPLY answers nothing; HEADERS carry nothing we use.
        Frame::SynReply { stream_id, .. } => {
            let mut st = shared.lock();
            st.push_control(Frame::RstStream {
                stream_id,
                status: rst::PROTOCOL_ERROR,
            });
            overflowed(shared, st)
        }
        Frame::Headers { .. } | Frame::Unknown { .. } => true,
    }
}

/// Wakes the writer; false (the session ends) when the peer is flooding us with frames that
/// each need an answer it does not read.
fn overflowed(shared: &Shared, st: MutexGuard<'_, State>) -> bool {
    let flooded = st.queued_control > MAX_QUEUED_CONTROL;
    drop(st);
    shared.writer_wake.notify_one();
    if flooded {
        tracing::debug!("SPDY peer floods control frames; closing");
        shared.kill();
    }
    !flooded
}

async fn on_data(shared: &Arc<Shared>, id: u32, fin: bool, data: Bytes) -> bool {
    loop {
        if let Some(go_on) = take_data(shared, id, fin, &data) {
            return go_on;
        }
        // Backpressure: wait for the application to read (see the module docs). A read
        // between the check and here leaves a permit, so no wake-up is lost.
        tokio::select! {
            _ = shared.reader_wake.notified() => {}
            _ = shared.dead.cancelled() => return false,
        }
    }
}

/// Delivers a DATA piece to its stream: Some(keep reading?), or None when the stream's
/// buffer is full and the reader must wait.
fn take_data(shared: &Shared, id: u32, fin: bool, data: &Bytes) -> Option<bool> {
    let mut st = shared.lock();
    if st.dead {
        return Some(false);
    }
    let known = st.last_peer_stream;
    let Some(s) = st.streams.get_mut(&id) else {
        if id > known || id.is_multiple_of(2) {
            st.push_control(Frame::RstStream {
                stream_id: id,
                status: rst::INVALID_STREAM,
            });
        }
        // Otherwise a stream we already finished: drop the data, but give the window back.
        st.consumed(id, data.len());
        return Some(overflowed(shared, st));
    };
    if s.remote_fin {
        s.reset = true;
        s.wake();
        st.push_control(Frame::RstStream {
            stream_id: id,
            status: rst::STREAM_ALREADY_CLOSED,
        });
        st.remove_if_finished(id);
        return Some(overflowed(shared, st));
    }
    if s.recv_dropped || s.reset {
        s.remote_fin |= fin;
        st.consumed(id, data.len());
        st.remove_if_finished(id);
        return Some(overflowed(shared, st));
    }
    if s.inbound_len > 0 && s.inbound_len + data.len() > RECV_BUFFER {
        return None;
    }
    s.inbound_len += data.len();
    if !data.is_empty() {
        s.inbound.push_back(data.clone());
    }
    s.remote_fin = fin;
    if let Some(w) = s.recv_waker.take() {
        w.wake();
    }
    st.remove_if_finished(id);
    Some(true)
}

async fn write_loop<W: AsyncWrite>(shared: Arc<Shared>, wr: tokio::io::WriteHalf<W>) {
    let mut wr = wr;
    let mut enc = Encoder::new();
    let mut out = BytesMut::with_capacity(64 * 1024);
    loop {
        let (batch, closing) = {
            let mut st = shared.lock();
            (st.queue.drain(..).collect::<Vec<_>>(), st.closing)
        };
        if batch.is_empty() {
            if closing {
                let _ = tokio::select! {
                    r = wr.shutdown() => r,
                    _ = shared.dead.cancelled() => Ok(()),
                };
                return;
            }
            tokio::select! {
                _ = shared.writer_wake.notified() => continue,
                _ = shared.dead.cancelled() => {}
            }
            // Dead: a protocol error leaves GOAWAY queued with `closing` set; write it.
            if !shared.lock().closing {
                return;
            }
            continue;
        }
        let (mut data, mut control) = (0, 0);
        out.clear();
        for f in &batch {
            match f {
                Frame::Data { data: d, .. } => data += d.len(),
                _ => control += 1,
            }
            enc.encode(f, &mut out);
        }
        let written = async {
            wr.write_all(&out).await?;
            wr.flush().await
        };
        let ok = if shared.lock().closing {
            // Tearing down: the caller bounds how long we try.
            written.await.is_ok()
        } else {
            tokio::select! {
                r = written => r.is_ok(),
                _ = shared.dead.cancelled() => false,
            }
        };
        if !ok {
            shared.kill();
            return;
        }
        let mut st = shared.lock();
        st.queued_data -= data;
        st.queued_control -= control;
        st.wake_senders();
    }
}

/// One stream: reads what the peer sends on it, writes to the peer. `shutdown` (or dropping
/// the write half) sends FIN; dropping the read half discards what the peer sends later.
pub struct Stream {
    recv: RecvStream,
    send: SendStream,
}

/// The read half of a [`Stream`].
pub struct RecvStream {
    shared: Arc<Shared>,
    id: u32,
}

/// The write half of a [`Stream`].
pub struct SendStream {
    shared: Arc<Shared>,
    id: u32,
}

impl Stream {
    fn new(shared: Arc<Shared>, id: u32) -> Self {
        Stream {
            recv: RecvStream {
                shared: shared.clone(),
                id,
            },
            send: SendStream { shared, id },
        }
    }

    pub fn id(&self) -> u32 {
        self.recv.id
    }

    /// Accepts the stream (SYN_REPLY). Writing does it too, if not done before.
    pub fn reply(&self) {
        let mut st = self.send.shared.lock();
        st.ensure_replied(self.id());
        drop(st);
        self.send.shared.writer_wake.notify_one();
    }

    /// Aborts the stream with RST_STREAM `status`.
    pub fn reset(self, status: u32) {
        let mut st = self.send.shared.lock();
        if let Some(s) = st.streams.get_mut(&self.id()) {
            if !s.reset {
                s.reset = true;
                s.local_fin = true;
                st.push_control(Frame::RstStream {
                    stream_id: self.id(),
                    status,
                });
            }
        }
        drop(st);
        self.send.shared.writer_wake.notify_one();
    }

    pub fn into_split(self) -> (RecvStream, SendStream) {
        (self.recv, self.send)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.recv).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.send).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.send).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.send).poll_shutdown(cx)
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "SPDY session is closed")
}

fn reset_err() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "SPDY stream was reset")
}

impl AsyncRead for RecvStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut st = self.shared.lock();
        let dead = st.dead;
        let Some(s) = st.streams.get_mut(&self.id) else {
            return Poll::Ready(Ok(()));
        };
        if let Some(front) = s.inbound.front_mut() {
            let n = front.len().min(buf.remaining());
            buf.put_slice(&front.split_to(n));
            if front.is_empty() {
                s.inbound.pop_front();
            }
            s.inbound_len -= n;
            st.consumed(self.id, n);
            drop(st);
            self.shared.writer_wake.notify_one();
            self.shared.reader_wake.notify_one();
            return Poll::Ready(Ok(()));
        }
        if s.remote_fin {
            return Poll::Ready(Ok(()));
        }
        if s.reset {
            return Poll::Ready(Err(reset_err()));
        }
        if dead {
            return Poll::Ready(Err(gone()));
        }
        s.recv_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for RecvStream {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        let Some(s) = st.streams.get_mut(&self.id) else {
            return;
        };
        s.recv_dropped = true;
        let buffered = std::mem::take(&mut s.inbound_len);
        s.inbound.clear();
        st.consumed(self.id, buffered);
        st.remove_if_finished(self.id);
        drop(st);
        self.shared.writer_wake.notify_one();
        self.shared.reader_wake.notify_one();
    }
}

impl AsyncWrite for SendStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut guard = self.shared.lock();
        let st = &mut *guard;
        if st.dead || st.closing {
            return Poll::Ready(Err(gone()));
        }
        let (enforce, session_window, queued) =
            (st.peer_flow_control, st.send_window, st.queued_data);
        let Some(s) = st.streams.get_mut(&self.id) else {
            return Poll::Ready(Err(reset_err()));
        };
        if s.reset {
            return Poll::Ready(Err(reset_err()));
        }
        if s.local_fin {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "SPDY stream is closed for writing",
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut n = buf.len().min(DATA_CHUNK);
        if enforce {
            n = n.min(s.send_window.min(session_window).max(0) as usize);
        }
        if n == 0 || queued >= MAX_QUEUED_DATA {
            s.send_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        s.send_window -= n as i64;
        st.send_window -= n as i64;
        st.ensure_replied(self.id);
        st.queued_data += n;
        st.queue.push_back(Frame::Data {
            stream_id: self.id,
            fin: false,
            data: Bytes::copy_from_slice(&buf[..n]),
        });
        drop(guard);
        self.shared.writer_wake.notify_one();
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The writer flushes the socket after every batch.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.finish();
        Poll::Ready(Ok(()))
    }
}

impl SendStream {
    /// Sends FIN once (after everything written before it).
    fn finish(&self) {
        let mut st = self.shared.lock();
        let live = !st.dead && !st.closing;
        let Some(s) = st.streams.get_mut(&self.id) else {
            return;
        };
        if s.local_fin || s.reset || !live {
            return;
        }
        s.local_fin = true;
        st.ensure_replied(self.id);
        // An empty DATA frame: counted neither as data nor as control by the writer.
        st.queue.push_back(Frame::Data {
            stream_id: self.id,
            fin: true,
            data: Bytes::new(),
        });
        st.remove_if_finished(self.id);
        drop(st);
        self.shared.writer_wake.notify_one();
    }
}

impl Drop for SendStream {
    fn drop(&mut self) {
        self.finish();
        let mut st = self.shared.lock();
        if let Some(s) = st.streams.get_mut(&self.id) {
            s.send_dropped = true;
        }
        st.remove_if_finished(self.id);
    }
}

#[cfg(test)]
mod tests;
