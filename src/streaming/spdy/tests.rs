use super::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn decode_all(dec: &mut Decoder, bytes: &[u8]) -> Vec<Frame> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(f) = dec.decode(&mut buf).unwrap() {
        out.push(f);
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    out
}

fn encode(enc: &mut Encoder, f: &Frame) -> Vec<u8> {
    let mut out = BytesMut::new();
    enc.encode(f, &mut out);
    out.to_vec()
}

fn stream_type(t: &str) -> Headers {
    Headers(vec![("streamtype".into(), t.into())])
}

#[test]
fn dictionary_is_the_spdy3_one() {
    assert_eq!(DICTIONARY.len(), 1423);
    // zlib reports the dictionary's Adler-32 when it is set; the spec's is 0xe3c6a7c2 (and
    // a stream compressed with it names that ID in its header: see the Go bytes below).
    let mut z = Compress::new(Compression::default(), true);
    assert_eq!(z.set_dictionary(DICTIONARY).unwrap(), 0xe3c6_a7c2);
    assert!(DICTIONARY.starts_with(b"\0\0\0\x07options\0\0\0\x04head"));
    assert!(DICTIONARY.ends_with(b"charset=iso-8859-1,utf-,*,enq=0."));
}

/// What moby/spdystream's framer writes for a client-go style exec: SYN_STREAM error (1),
/// stdin (3), stdout (5) with `streamType` headers, "hello\n" then FIN on stdin, PING 1 and
/// GOAWAY. Captured from `integration/go/spdy_client frames` (Go 1.19, spdystream 0.2.0).
const GO_EXEC_OPENING: &str = "80030001000000290000000100000000000078f9e3c6a7c26260606004a7b39\
    2a2d4c45c6851c29a0a0a6800000000ffff800300010000001700000003000000000000c22e555c92929907000\
    000ffff800300010000001900000005000000000000c22ac5565c92925f5a02000000ffff000000030000000668\
    656c6c6f0a000000030100000080030006000000040000000180030007000000080000000000000000";

#[test]
fn decodes_what_spdystream_sends() {
    let bytes = hex(&GO_EXEC_OPENING.replace(' ', ""));
    // The first header block opens the zlib stream with the dictionary's ID.
    assert_eq!(&bytes[18..24], &[0x78, 0xf9, 0xe3, 0xc6, 0xa7, 0xc2]);
    let frames = decode_all(&mut Decoder::new(), &bytes);
    let syn = |id, t: &str| Frame::SynStream {
        stream_id: id,
        associated_to: 0,
        priority: 0,
        fin: false,
        unidirectional: false,
        headers: stream_type(t),
    };
    assert_eq!(
        frames,
        vec![
            syn(1, "error"),
            syn(3, "stdin"),
            syn(5, "stdout"),
            Frame::Data {
                stream_id: 3,
                fin: false,
                data: Bytes::from_static(b"hello\n"),
            },
            Frame::Data {
                stream_id: 3,
                fin: true,
                data: Bytes::new(),
            },
            Frame::Ping { id: 1 },
            Frame::GoAway {
                last_good_stream_id: 0,
                status: goaway::OK,
            },
        ]
    );
    // Fed one byte at a time, the same frames come out (DATA in one-byte pieces).
    let mut dec = Decoder::new();
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for b in &bytes {
        buf.extend_from_slice(&[*b]);
        while let Some(f) = dec.decode(&mut buf).unwrap() {
            got.push(f);
        }
    }
    let hello: Vec<u8> = got
        .iter()
        .filter_map(|f| match f {
            Frame::Data { data, .. } => Some(data.to_vec()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(hello, b"hello\n");
    assert_eq!(
        got.iter()
            .filter(|f| !matches!(f, Frame::Data { .. }))
            .count(),
        5
    );
}

#[test]
fn fixed_frames_are_byte_exact() {
    let mut enc = Encoder::new();
    let cases: Vec<(Frame, &str)> = vec![
        (
            Frame::Data {
                stream_id: 5,
                fin: true,
                data: Bytes::from_static(b"ok"),
            },
            "00000005 01000002 6f6b",
        ),
        (
            Frame::RstStream {
                stream_id: 3,
                status: rst::CANCEL,
            },
            "80030003 00000008 00000003 00000005",
        ),
        (
            Frame::Settings {
                clear: false,
                entries: vec![(0, SETTINGS_INITIAL_WINDOW_SIZE, 0x10000)],
            },
            "80030004 0000000c 00000001 00000007 00010000",
        ),
        (Frame::Ping { id: 1 }, "80030006 00000004 00000001"),
        (
            Frame::GoAway {
                last_good_stream_id: 7,
                status: goaway::OK,
            },
            "80030007 00000008 00000007 00000000",
        ),
        (
            Frame::WindowUpdate {
                stream_id: 1,
                delta: 0x8000,
            },
            "80030009 00000008 00000001 00008000",
        ),
    ];
    for (frame, want) in cases {
        let want = hex(&want.replace(' ', ""));
        assert_eq!(encode(&mut enc, &frame), want, "{frame:?}");
        assert_eq!(decode_all(&mut Decoder::new(), &want), vec![frame]);
    }
}

#[test]
fn header_block_layout() {
    let h = Headers(vec![
        ("port".into(), "80".into()),
        ("streamtype".into(), "data".into()),
    ]);
    let b = header_block(&h);
    let want = hex(
        "00000002 00000004 706f7274 00000002 3830 0000000a 73747265616d74797065 00000004 \
         64617461"
            .replace(' ', "")
            .as_str(),
    );
    assert_eq!(b, want);
    assert_eq!(parse_header_block(&b).unwrap(), h);
    // Names come out lowercase whatever the peer sent; lookups ignore case.
    let mixed = header_block(&Headers(vec![("StreamType".into(), "error".into())]));
    let parsed = parse_header_block(&mixed).unwrap();
    assert_eq!(parsed.get("streamType"), Some("error"));
    assert_eq!(parsed.0[0].0, "streamtype");
}

#[test]
fn every_frame_round_trips_through_one_zlib_context() {
    let frames = vec![
        Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 3,
            fin: false,
            unidirectional: true,
            headers: stream_type("error"),
        },
        Frame::SynReply {
            stream_id: 1,
            fin: false,
            headers: Headers::default(),
        },
        Frame::SynStream {
            stream_id: 3,
            associated_to: 1,
            priority: 7,
            fin: true,
            unidirectional: false,
            headers: Headers(vec![
                ("streamtype".into(), "data".into()),
                ("port".into(), "8080".into()),
                ("requestid".into(), "0".into()),
                ("multi".into(), "a\0b".into()),
            ]),
        },
        Frame::Headers {
            stream_id: 3,
            fin: true,
            headers: stream_type("stdout"),
        },
        Frame::Data {
            stream_id: 3,
            fin: false,
            data: Bytes::from(vec![7u8; 1000]),
        },
        Frame::Settings {
            clear: true,
            entries: vec![(1, 4, 100), (0, 7, 1 << 20)],
        },
        Frame::WindowUpdate {
            stream_id: 0,
            delta: 12345,
        },
        Frame::Unknown { kind: 10 },
    ];
    let mut enc = Encoder::new();
    let mut dec = Decoder::new();
    let mut wire = Vec::new();
    for f in &frames {
        wire.extend(encode(&mut enc, f));
    }
    assert_eq!(decode_all(&mut dec, &wire), frames);
    // The contexts carry on: the same headers again compress to fewer bytes, and decode.
    let again = encode(&mut enc, &frames[0]);
    assert!(again.len() < encode(&mut Encoder::new(), &frames[0]).len());
    assert_eq!(decode_all(&mut dec, &again), vec![frames[0].clone()]);
}

#[test]
fn big_data_frames_come_out_in_bounded_pieces() {
    let payload: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    let mut wire = BytesMut::new();
    wire.put_u32(9);
    wire.put_u32(u32::from(FLAG_FIN) << 24 | payload.len() as u32);
    wire.extend_from_slice(&payload);
    let frames = decode_all(&mut Decoder::new(), &wire);
    assert_eq!(frames.len(), 4, "100000 bytes in 32 KiB pieces");
    let mut got = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let Frame::Data {
            stream_id,
            fin,
            data,
        } = f
        else {
            panic!("{f:?}")
        };
        assert_eq!(*stream_id, 9);
        assert!(data.len() <= DATA_CHUNK);
        assert_eq!(*fin, i == 3, "FIN only on the last piece");
        got.extend_from_slice(data);
    }
    assert_eq!(got, payload);
}

#[test]
fn malformed_input_is_an_error_not_a_panic() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (hex("80020001000000040000000100"), "version"),
        (hex("80030003000000040000000100"), "short RST_STREAM"),
        (
            hex("8003000400000008 00000005 00000000"
                .replace(' ', "")
                .as_str()),
            "SETTINGS count",
        ),
        (hex("8003000100ffffff"), "oversized control frame"),
        (
            hex("80030001 0000000e 00000001 00000000 0000 deadbeef"
                .replace(' ', "")
                .as_str()),
            "garbage header block",
        ),
    ];
    for (bytes, what) in cases {
        let mut buf = BytesMut::from(&bytes[..]);
        let mut dec = Decoder::new();
        let r = loop {
            match dec.decode(&mut buf) {
                Ok(Some(_)) => continue,
                other => break other,
            }
        };
        assert!(r.is_err(), "{what}: {r:?}");
    }
    // A header block that claims more pairs than it has, compressed properly.
    let mut z = Compress::new(Compression::default(), true);
    z.set_dictionary(DICTIONARY).unwrap();
    let mut block = Vec::with_capacity(64);
    z.compress_vec(&[0, 0, 0, 5, 0, 0, 0, 1], &mut block, FlushCompress::Sync)
        .unwrap();
    let mut wire = BytesMut::new();
    control_header(&mut wire, kind::SYN_REPLY, 0, 4 + block.len());
    wire.put_u32(1);
    wire.extend_from_slice(&block);
    assert!(matches!(
        Decoder::new().decode(&mut wire),
        Err(FrameError::HeaderBlock(_))
    ));
    // Truncated input is "need more", not an error.
    let mut part = BytesMut::from(&hex("8003000600000004000000")[..]);
    assert_eq!(Decoder::new().decode(&mut part), Ok(None));
}

#[test]
fn header_blocks_are_bounded() {
    // A compressed block that inflates past MAX_HEADER_BLOCK (a zip bomb) is refused.
    let mut h = vec![0u8, 0, 0, 1, 0, 0, 0, 1, b'x'];
    let big = MAX_HEADER_BLOCK + 10;
    h.extend_from_slice(&(big as u32).to_be_bytes());
    h.extend(std::iter::repeat_n(b'a', big));
    let mut z = Compress::new(Compression::best(), true);
    z.set_dictionary(DICTIONARY).unwrap();
    let mut block = Vec::with_capacity(big);
    z.compress_vec(&h, &mut block, FlushCompress::Sync).unwrap();
    assert!(block.len() < MAX_CONTROL_FRAME);
    let mut wire = BytesMut::new();
    control_header(&mut wire, kind::HEADERS, 0, 4 + block.len());
    wire.put_u32(1);
    wire.extend_from_slice(&block);
    let e = Decoder::new().decode(&mut wire).unwrap_err();
    assert!(e.to_string().contains("inflates to more than"), "{e}");
}
