//! One thin netlink socket wrapper for both protocols the network speaks (NETLINK_ROUTE and
//! NETLINK_NETFILTER): requests are encoded with the netlink-packet-* types into one buffer,
//! sent in a single datagram, and the replies are matched to them by sequence number.
//!
//! Sending several requests at once is what keeps a pod's setup to a few round trips: the
//! kernel handles the messages of one datagram in order, and each one asked for an ACK (or is
//! a dump ending in NLMSG_DONE), so the reply for every request is known. The socket is
//! blocking with a receive timeout; callers run it on a blocking thread.

use std::fmt::Debug;
use std::time::Duration;

use netlink_packet_core::{NetlinkMessage, NetlinkSerializable, NLM_F_REQUEST};
use netlink_sys::{Socket, SocketAddr};

use super::error::KernelError;

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;
const RECV_TIMEOUT: Duration = Duration::from_secs(10);

/// How the reply to one request ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// An NLMSG_ERROR (0 for an ACK); messages before it (a GET's answer) are collected.
    Ack,
    /// NLMSG_DONE after any number of messages.
    Dump,
}

/// Requests to send together: the encoded bytes and, per request, its sequence number.
#[derive(Default)]
pub(crate) struct Batch {
    buf: Vec<u8>,
    waits: Vec<(u32, Expect)>,
    /// Requests sent without asking for a reply: only an error can come for them.
    silent: Vec<u32>,
}

impl Batch {
    pub(crate) fn is_empty(&self) -> bool {
        self.waits.is_empty()
    }

    /// Appends `msg` with `flags` (NLM_F_REQUEST is added). With `expect` None the kernel sends
    /// no reply for it (nf_tables batch delimiters).
    pub(crate) fn push<I>(
        &mut self,
        sock: &mut NlSocket,
        mut msg: NetlinkMessage<I>,
        flags: u16,
        expect: Option<Expect>,
    ) -> u32
    where
        I: NetlinkSerializable + Debug,
    {
        sock.seq = sock.seq.wrapping_add(1).max(1);
        let seq = sock.seq;
        msg.header.flags = flags | NLM_F_REQUEST;
        msg.header.sequence_number = seq;
        msg.finalize();
        let start = self.buf.len();
        let len = msg.buffer_len();
        self.buf.resize(start + align4(len), 0);
        msg.serialize(&mut self.buf[start..start + len]);
        match expect {
            Some(e) => self.waits.push((seq, e)),
            None => self.silent.push(seq),
        }
        seq
    }
}

/// The outcome of one request: the messages that answered it, or the kernel's error.
pub(crate) type Reply = Result<Vec<Vec<u8>>, KernelError>;

pub(crate) struct NlSocket {
    sock: Socket,
    seq: u32,
    rx: Vec<u8>,
}

impl NlSocket {
    /// A socket in the calling thread's network namespace.
    pub(crate) fn open(protocol: isize) -> Result<Self, KernelError> {
        let io = |e: std::io::Error| KernelError::from_io(&e);
        let mut sock = Socket::new(protocol).map_err(io)?;
        sock.bind_auto().map_err(io)?;
        sock.connect(&SocketAddr::new(0, 0)).map_err(io)?;
        // Errors carry the kernel's explanation; ACKs do not echo the whole request.
        let _ = sock.set_ext_ack(true);
        let _ = sock.set_cap_ack(true);
        let _ = sock.set_rx_buf_sz(1 << 20);
        set_recv_timeout(&sock, RECV_TIMEOUT).map_err(io)?;
        Ok(NlSocket {
            sock,
            seq: 0,
            rx: vec![0u8; 1 << 18],
        })
    }

    /// Sends the batch in one datagram and waits for the reply to each request, returned in
    /// the order they were pushed. Replies to requests of earlier, abandoned exchanges are
    /// skipped by their sequence numbers.
    pub(crate) fn exchange(&mut self, batch: Batch) -> Result<Vec<Reply>, KernelError> {
        if batch.is_empty() && batch.buf.is_empty() {
            return Ok(Vec::new());
        }
        let n = self
            .sock
            .send(&batch.buf, 0)
            .map_err(|e| KernelError::from_io(&e))?;
        if n != batch.buf.len() {
            return Err(KernelError {
                errno: libc::EMSGSIZE,
                message: Some("short netlink send".into()),
            });
        }
        let mut replies: Vec<Option<Reply>> = vec![None; batch.waits.len()];
        let mut parts: Vec<Vec<Vec<u8>>> = vec![Vec::new(); batch.waits.len()];
        let mut open = batch.waits.len();
        // Once a request failed, the replies still missing are taken only from what is already
        // queued: the kernel answers every request of a datagram, but a failed nf_tables batch
        // must not hang the caller should it not.
        let mut failed = false;
        while open > 0 {
            let len = loop {
                let flags = if failed { libc::MSG_DONTWAIT } else { 0 };
                // SAFETY: recv writes at most rx.len() bytes into the buffer it is given.
                let r = unsafe {
                    libc::recv(
                        self.sock_fd(),
                        self.rx.as_mut_ptr().cast(),
                        self.rx.len(),
                        flags,
                    )
                };
                if r >= 0 {
                    break r as usize;
                }
                let e = std::io::Error::last_os_error();
                if failed && e.kind() == std::io::ErrorKind::WouldBlock {
                    return Ok(replies
                        .into_iter()
                        .map(|r| {
                            r.unwrap_or(Err(KernelError {
                                errno: libc::ECANCELED,
                                message: Some("not applied: an earlier request failed".into()),
                            }))
                        })
                        .collect());
                }
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(KernelError::from_io(&e));
                }
            };
            let mut off = 0;
            while off + NLMSG_HDRLEN <= len {
                let b = &self.rx[off..len];
                let mlen = u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize;
                if mlen < NLMSG_HDRLEN || mlen > b.len() {
                    break;
                }
                let mtype = u16::from_ne_bytes(b[4..6].try_into().unwrap());
                let mflags = u16::from_ne_bytes(b[6..8].try_into().unwrap());
                let seq = u32::from_ne_bytes(b[8..12].try_into().unwrap());
                let msg = &b[..mlen];
                off += align4(mlen);
                let Some(i) = batch.waits.iter().position(|(s, _)| *s == seq) else {
                    if mtype == NLMSG_ERROR && batch.silent.contains(&seq) && mlen >= 20 {
                        let code = i32::from_ne_bytes(msg[16..20].try_into().unwrap());
                        if code != 0 {
                            return Err(KernelError {
                                errno: -code,
                                message: ext_ack_message(msg, mflags),
                            });
                        }
                    }
                    continue;
                };
                if replies[i].is_some() {
                    continue;
                }
                match mtype {
                    NLMSG_ERROR => {
                        let code = if mlen >= NLMSG_HDRLEN + 4 {
                            i32::from_ne_bytes(msg[16..20].try_into().unwrap())
                        } else {
                            -libc::EIO
                        };
                        replies[i] = Some(if code == 0 {
                            Ok(std::mem::take(&mut parts[i]))
                        } else {
                            failed = true;
                            Err(KernelError {
                                errno: -code,
                                message: ext_ack_message(msg, mflags),
                            })
                        });
                        open -= 1;
                    }
                    NLMSG_DONE => {
                        let code = if mlen >= NLMSG_HDRLEN + 4 {
                            i32::from_ne_bytes(msg[16..20].try_into().unwrap())
                        } else {
                            0
                        };
                        replies[i] = Some(if code == 0 {
                            Ok(std::mem::take(&mut parts[i]))
                        } else {
                            Err(KernelError {
                                errno: -code,
                                message: None,
                            })
                        });
                        open -= 1;
                    }
                    _ => parts[i].push(msg.to_vec()),
                }
            }
        }
        Ok(replies.into_iter().map(|r| r.unwrap()).collect())
    }

    fn sock_fd(&self) -> libc::c_int {
        use std::os::fd::AsRawFd;
        self.sock.as_raw_fd()
    }
}

fn set_recv_timeout(sock: &Socket, d: Duration) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let tv = libc::timeval {
        tv_sec: d.as_secs() as libc::time_t,
        tv_usec: d.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: setsockopt reads a timeval of the size given from a valid pointer.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

pub(crate) fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The NLMSGERR_ATTR_MSG of an error reply: after the error code come the echoed request
/// header (or the whole request when not capped), then the extended ACK attributes.
fn ext_ack_message(msg: &[u8], flags: u16) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 || msg.len() < NLMSG_HDRLEN + 4 + NLMSG_HDRLEN {
        return None;
    }
    let echoed = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        u32::from_ne_bytes(msg[20..24].try_into().unwrap()) as usize
    };
    let tlvs = msg.get(NLMSG_HDRLEN + 4 + align4(echoed)..)?;
    attrs(tlvs)
        .find(|(kind, _)| *kind == NLMSGERR_ATTR_MSG)
        .map(|(_, v)| {
            String::from_utf8_lossy(v.split(|b| *b == 0).next().unwrap_or(v)).into_owned()
        })
}

/// Iterates the netlink attributes (type without the nested/byte-order bits, value) of `buf`.
pub(crate) fn attrs(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut off = 0;
    std::iter::from_fn(move || {
        if off + 4 > buf.len() {
            return None;
        }
        let len = u16::from_ne_bytes([buf[off], buf[off + 1]]) as usize;
        let kind = u16::from_ne_bytes([buf[off + 2], buf[off + 3]]) & 0x3fff;
        if len < 4 || off + len > buf.len() {
            return None;
        }
        let v = &buf[off + 4..off + len];
        off += align4(len);
        Some((kind, v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_walked_with_padding() {
        // A 5-byte attribute (1 byte of value, padded to 8) then a 8-byte one.
        let mut b = vec![5, 0, 1, 0, b'x', 0, 0, 0];
        b.extend_from_slice(&[8, 0, 0x02, 0x80, 1, 2, 3, 4]);
        let got: Vec<_> = attrs(&b).collect();
        assert_eq!(got, vec![(1, &b"x"[..]), (2, &[1u8, 2, 3, 4][..])]);
    }

    #[test]
    fn ext_ack_message_is_found_after_a_capped_header() {
        let mut m = vec![0u8; 16];
        m.extend_from_slice(&(-17i32).to_ne_bytes());
        m.extend_from_slice(&[0u8; 16]);
        m.extend_from_slice(&[8, 0, 1, 0, b'b', b'a', b'd', 0]);
        assert_eq!(
            ext_ack_message(&m, NLM_F_CAPPED | NLM_F_ACK_TLVS).as_deref(),
            Some("bad")
        );
        assert_eq!(ext_ack_message(&m, NLM_F_CAPPED), None);
    }
}
