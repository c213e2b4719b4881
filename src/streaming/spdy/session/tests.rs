//! The session against a hand-driven peer: raw frames over an in-memory pipe.

use super::super::goaway;
use super::*;
use std::time::Duration;
use tokio::io::DuplexStream;

struct Peer {
    io: DuplexStream,
    enc: Encoder,
    dec: Decoder,
    buf: BytesMut,
}

impl Peer {
    async fn send(&mut self, f: Frame) {
        let mut out = BytesMut::new();
        self.enc.encode(&f, &mut out);
        self.io.write_all(&out).await.unwrap();
    }

    /// The next frame from the server (DATA pieces as they come), None at EOF.
    async fn recv(&mut self) -> Option<Frame> {
        let fut = async {
            loop {
                if let Some(f) = self.dec.decode(&mut self.buf).unwrap() {
                    return Some(f);
                }
                if self.io.read_buf(&mut self.buf).await.unwrap() == 0 {
                    return None;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), fut)
            .await
            .expect("a frame within 5 s")
    }

    async fn open(&mut self, id: u32, t: &str) {
        self.send(Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            fin: false,
            unidirectional: false,
            headers: Headers::from_pairs([("streamType", t)]),
        })
        .await;
    }

    async fn data(&mut self, id: u32, fin: bool, d: &[u8]) {
        self.send(Frame::Data {
            stream_id: id,
            fin,
            data: Bytes::copy_from_slice(d),
        })
        .await;
    }

    /// Frames until `pred` matches one (returned); the others are collected in `seen`.
    async fn until(&mut self, seen: &mut Vec<Frame>, pred: impl Fn(&Frame) -> bool) -> Frame {
        loop {
            let f = self.recv().await.expect("frame before EOF");
            if pred(&f) {
                return f;
            }
            seen.push(f);
        }
    }
}

fn setup() -> (Peer, Session, Acceptor, tokio::task::JoinHandle<()>) {
    let (a, b) = tokio::io::duplex(1 << 20);
    let (session, acceptor, driver) = Session::new(b);
    let task = tokio::spawn(driver);
    let peer = Peer {
        io: a,
        enc: Encoder::new(),
        dec: Decoder::new(),
        buf: BytesMut::new(),
    };
    (peer, session, acceptor, task)
}

fn data_of(frames: &[Frame], id: u32) -> Vec<u8> {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::Data {
                stream_id, data, ..
            } if *stream_id == id => Some(data.to_vec()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[tokio::test]
async fn echo_on_a_stream_then_goaway() {
    let (mut peer, session, mut acceptor, driver) = setup();
    peer.open(1, "stdin").await;
    let inc = acceptor.accept().await.unwrap();
    assert_eq!(inc.headers.get("streamtype"), Some("stdin"));
    let mut stream = inc.stream;
    stream.reply();
    assert_eq!(
        peer.recv().await,
        Some(Frame::SynReply {
            stream_id: 1,
            fin: false,
            headers: Headers::default()
        })
    );
    peer.data(1, false, b"ping").await;
    peer.data(1, true, b"!").await;
    let mut got = String::new();
    stream.read_to_string(&mut got).await.unwrap();
    assert_eq!(got, "ping!", "FIN is EOF");
    stream.write_all(b"pong").await.unwrap();
    stream.shutdown().await.unwrap();
    assert_eq!(
        peer.recv().await,
        Some(Frame::Data {
            stream_id: 1,
            fin: false,
            data: Bytes::from_static(b"pong")
        })
    );
    assert_eq!(
        peer.recv().await,
        Some(Frame::Data {
            stream_id: 1,
            fin: true,
            data: Bytes::new()
        })
    );
    drop(stream);
    session.close();
    assert_eq!(
        peer.recv().await,
        Some(Frame::GoAway {
            last_good_stream_id: 1,
            status: goaway::OK
        })
    );
    assert_eq!(peer.recv().await, None, "the server closes its side");
    drop(peer);
    driver.await.unwrap();
}

#[tokio::test]
async fn writing_first_sends_the_reply_first_and_pings_are_echoed() {
    let (mut peer, _session, mut acceptor, _driver) = setup();
    peer.open(1, "stdout").await;
    let mut s = acceptor.accept().await.unwrap().stream;
    s.write_all(b"x").await.unwrap();
    assert!(matches!(
        peer.recv().await,
        Some(Frame::SynReply { stream_id: 1, .. })
    ));
    assert!(matches!(
        peer.recv().await,
        Some(Frame::Data { stream_id: 1, .. })
    ));
    peer.send(Frame::Ping { id: 7 }).await;
    assert_eq!(peer.recv().await, Some(Frame::Ping { id: 7 }));
    // Even IDs would be replies to the server's own pings: not echoed.
    peer.send(Frame::Ping { id: 8 }).await;
    peer.send(Frame::Ping { id: 9 }).await;
    assert_eq!(peer.recv().await, Some(Frame::Ping { id: 9 }));
}

#[tokio::test]
async fn consumed_data_is_acknowledged_with_window_updates() {
    let (mut peer, _session, mut acceptor, _driver) = setup();
    peer.open(1, "stdin").await;
    let mut s = acceptor.accept().await.unwrap().stream;
    s.reply();
    let chunk = vec![b'z'; 16 * 1024];
    for _ in 0..4 {
        peer.data(1, false, &chunk).await;
    }
    let mut buf = vec![0u8; 64 * 1024];
    s.read_exact(&mut buf).await.unwrap();
    let mut seen = Vec::new();
    let mut stream_acked = 0;
    let mut session_acked = 0;
    while stream_acked < 65536 || session_acked < 65536 {
        match peer
            .until(&mut seen, |f| matches!(f, Frame::WindowUpdate { .. }))
            .await
        {
            Frame::WindowUpdate {
                stream_id: 1,
                delta,
            } => stream_acked += delta,
            Frame::WindowUpdate {
                stream_id: 0,
                delta,
            } => session_acked += delta,
            f => panic!("{f:?}"),
        }
    }
    assert_eq!((stream_acked, session_acked), (65536, 65536));
}

#[tokio::test]
async fn a_peer_without_flow_control_gets_more_than_a_window() {
    // spdystream never sends WINDOW_UPDATE: the server must not wait for one.
    let (mut peer, _session, mut acceptor, _driver) = setup();
    peer.open(1, "stdout").await;
    let mut s = acceptor.accept().await.unwrap().stream;
    let big = vec![b'o'; 300 * 1024];
    let writer = tokio::spawn(async move {
        s.write_all(&big).await.unwrap();
        s.shutdown().await.unwrap();
        s
    });
    let mut seen = Vec::new();
    peer.until(&mut seen, |f| matches!(f, Frame::Data { fin: true, .. }))
        .await;
    assert_eq!(data_of(&seen, 1).len(), 300 * 1024);
    assert!(seen
        .iter()
        .all(|f| !matches!(f, Frame::Data { data, .. } if data.len() > DATA_CHUNK)));
    writer.await.unwrap();
}

#[tokio::test]
async fn a_peer_with_flow_control_has_its_windows_honoured() {
    let (mut peer, _session, mut acceptor, _driver) = setup();
    peer.send(Frame::Settings {
        clear: false,
        entries: vec![(0, SETTINGS_INITIAL_WINDOW_SIZE, 10)],
    })
    .await;
    peer.open(1, "stdout").await;
    let mut s = acceptor.accept().await.unwrap().stream;
    let writer = tokio::spawn(async move {
        s.write_all(b"0123456789abcdefghij").await.unwrap();
        s.shutdown().await.unwrap();
        s
    });
    let mut seen = Vec::new();
    let first = peer
        .until(&mut seen, |f| matches!(f, Frame::Data { .. }))
        .await;
    seen.push(first);
    // Only the window's 10 bytes came; nothing more until the peer opens it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!writer.is_finished(), "the writer waits for the window");
    peer.send(Frame::WindowUpdate {
        stream_id: 1,
        delta: 10,
    })
    .await;
    let f = peer
        .until(&mut seen, |f| matches!(f, Frame::Data { fin: true, .. }))
        .await;
    seen.push(f);
    let all: Vec<Frame> = seen
        .iter()
        .filter(|f| matches!(f, Frame::Data { .. }))
        .cloned()
        .collect();
    assert_eq!(data_of(&all, 1), b"0123456789abcdefghij");
    writer.await.unwrap();
}

#[tokio::test]
async fn a_fast_sender_is_held_back_not_buffered() {
    let (mut peer, _session, mut acceptor, _driver) = setup();
    peer.open(1, "stdin").await;
    let mut s = acceptor.accept().await.unwrap().stream;
    s.reply();
    // 1 MiB pushed without waiting for windows, as spdystream would; the session buffers at
    // most RECV_BUFFER of it and stops reading the pipe meanwhile.
    let total = 1024 * 1024;
    let sender = tokio::spawn(async move {
        let chunk = vec![b's'; 32 * 1024];
        for i in 0..total / chunk.len() {
            peer.data(1, i + 1 == total / chunk.len(), &chunk).await;
        }
        peer
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    {
        let st = s.recv.shared.lock();
        assert!(st.streams[&1].inbound_len <= RECV_BUFFER);
    }
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    assert_eq!(got.len(), total);
    sender.await.unwrap();
}

#[tokio::test]
async fn protocol_errors_end_the_session_with_goaway() {
    let (mut peer, _session, mut acceptor, driver) = setup();
    peer.open(1, "error").await;
    let s = acceptor.accept().await.unwrap().stream;
    // An even (server-side) stream ID: refused, session goes on.
    peer.open(2, "stdin").await;
    assert_eq!(
        peer.recv().await,
        Some(Frame::RstStream {
            stream_id: 2,
            status: rst::PROTOCOL_ERROR
        })
    );
    // A frame of SPDY version 2: the session is over.
    peer.io
        .write_all(&[0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1])
        .await
        .unwrap();
    let mut seen = Vec::new();
    let f = peer
        .until(&mut seen, |f| matches!(f, Frame::GoAway { .. }))
        .await;
    assert_eq!(
        f,
        Frame::GoAway {
            last_good_stream_id: 1,
            status: goaway::PROTOCOL_ERROR
        }
    );
    assert_eq!(peer.recv().await, None);
    let (mut r, mut w) = s.into_split();
    assert!(r.read(&mut [0u8; 8]).await.is_err());
    assert!(w.write_all(b"x").await.is_err());
    drop(peer);
    driver.await.unwrap();
    assert!(acceptor.accept().await.is_none());
}

#[tokio::test]
async fn a_vanished_peer_fails_the_streams_and_ends_the_driver() {
    let (mut peer, session, mut acceptor, driver) = setup();
    peer.open(1, "stdin").await;
    let s = acceptor.accept().await.unwrap().stream;
    drop(peer);
    tokio::time::timeout(Duration::from_secs(5), session.dead())
        .await
        .unwrap();
    driver.await.unwrap();
    let (mut r, mut w) = s.into_split();
    assert!(r.read(&mut [0u8; 8]).await.is_err());
    assert!(w.write_all(b"x").await.is_err());
}

#[tokio::test]
async fn resets_and_refusals() {
    let (mut peer, session, mut acceptor, _driver) = setup();
    peer.open(1, "stdout").await;
    let s = acceptor.accept().await.unwrap().stream;
    peer.send(Frame::RstStream {
        stream_id: 1,
        status: rst::CANCEL,
    })
    .await;
    let (mut r, mut w) = s.into_split();
    let e = r.read(&mut [0u8; 8]).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
    assert!(w.write_all(b"x").await.is_err());
    // Data on a stream never opened is INVALID_STREAM.
    peer.data(11, false, b"?").await;
    assert_eq!(
        peer.recv().await,
        Some(Frame::RstStream {
            stream_id: 11,
            status: rst::INVALID_STREAM
        })
    );
    // Once the acceptor is gone, new streams are refused.
    drop(acceptor);
    peer.open(3, "stdin").await;
    assert_eq!(
        peer.recv().await,
        Some(Frame::RstStream {
            stream_id: 3,
            status: rst::REFUSED_STREAM
        })
    );
    drop((r, w));
    session.close();
    assert!(matches!(peer.recv().await, Some(Frame::GoAway { .. })));
}

#[tokio::test]
async fn a_ping_flood_that_is_never_read_ends_the_session() {
    // The peer writes PINGs and never reads: once the answers pile up, the session ends
    // instead of queueing them forever.
    let (a, b) = tokio::io::duplex(4096);
    let (session, _acceptor, driver) = Session::new(b);
    let driver = tokio::spawn(driver);
    let (_ra, mut wa) = tokio::io::split(a);
    let mut enc = Encoder::new();
    let flood = async {
        for i in 0..100_000u32 {
            let mut out = BytesMut::new();
            enc.encode(&Frame::Ping { id: 2 * i + 1 }, &mut out);
            if wa.write_all(&out).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = flood => {}
        _ = session.dead() => {}
    }
    tokio::time::timeout(Duration::from_secs(5), session.dead())
        .await
        .expect("the session gives up on the flooding peer");
    driver.await.unwrap();
}
