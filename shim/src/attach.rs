//! The monitor's attach server: serves the container's stdio to attach clients (the daemon,
//! for CRI Attach) on `<bundle>/attach.sock`, in the framing of `attachproto.rs`.
//!
//! Because the monitor, not the daemon, holds the container's stdin (pipe write end or pty
//! master) and reads its output, attach works the same after a daemon restart. Every client
//! gets every output byte from the moment it connects, the same bytes the CRI log records.
//! Nothing a client does can stall the container or the log: output for a client that does
//! not read is buffered up to [`CLIENT_OUT_MAX`], then that client is dropped; stdin from
//! clients is buffered up to [`STDIN_MAX`], and clients are not read while it is full.
//!
//! With `stdin_once`, the container's stdin is closed once the first client that sent stdin
//! ends it (closes its stdin or disconnects), as kubelet's `stdinOnce` asks. With a tty the
//! pty master is never closed (that would hang up the terminal): stdin_once then only applies
//! to pipes.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::attachproto::{self as proto, Decoder};
use crate::sys;

/// Output buffered for one client before it is dropped as too slow.
pub const CLIENT_OUT_MAX: usize = 1024 * 1024;

/// Stdin bytes buffered before clients stop being read.
pub const STDIN_MAX: usize = 64 * 1024;

/// Clients served at once; more are refused (closed at once).
const MAX_CLIENTS: usize = 32;

/// How long the final flush to clients may take once the container ended.
const FINAL_FLUSH: Duration = Duration::from_secs(1);

struct Client {
    sock: UnixStream,
    dec: Decoder,
    /// Framed output not yet written to the client.
    out: Vec<u8>,
    /// The client sent stdin (data or its end): it counts for `stdin_once`.
    used_stdin: bool,
    /// This client's stdin ended (so later stdin frames from it are ignored).
    stdin_done: bool,
    gone: bool,
}

pub struct AttachServer {
    listener: UnixListener,
    path: PathBuf,
    clients: Vec<Client>,
    /// Where stdin goes: the stdin pipe's write end, or a duplicate of the pty master.
    stdin: Option<OwnedFd>,
    /// The pty master (a duplicate), for resizes.
    tty: Option<OwnedFd>,
    stdin_once: bool,
    /// Stdin bytes not yet written to the container.
    pending: Vec<u8>,
    /// Close `stdin` once `pending` is written (stdin_once fired).
    close_after_flush: bool,
}

impl AttachServer {
    /// Listens on `<bundle>/attach.sock` (mode 0600), before the container exists; its stdio
    /// is given with [`AttachServer::connect_container`] once it does.
    pub fn bind(bundle: &Path, stdin_once: bool) -> io::Result<AttachServer> {
        let path = bundle.join(proto::SOCKET);
        let _ = std::fs::remove_file(&path);
        // Created 0600 from the start (no window where another user could connect); the
        // monitor is single-threaded, so the umask change affects nothing else.
        let old = sys::umask(0o177);
        let bound = bind_long(bundle, &path);
        sys::umask(old);
        let listener = bound?;
        listener.set_nonblocking(true)?;
        Ok(AttachServer {
            listener,
            path,
            clients: Vec::new(),
            stdin: None,
            tty: None,
            stdin_once,
            pending: Vec::new(),
            close_after_flush: false,
        })
    }

    /// The container's stdin (non-blocking: a pipe's write end or the pty master), if it
    /// has one, and its pty master for resizes, if it has a tty.
    pub fn connect_container(&mut self, stdin: Option<OwnedFd>, tty: Option<OwnedFd>) {
        self.stdin = stdin;
        self.tty = tty;
    }

    /// Appends the pollfds the server needs now; [`AttachServer::handle`] takes their results
    /// back in the same order.
    pub fn fds(&self, out: &mut Vec<libc::pollfd>) {
        let pfd = |fd: i32, events: i16| libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        out.push(pfd(self.listener.as_raw_fd(), libc::POLLIN));
        let stdin_fd = match (&self.stdin, self.pending.is_empty()) {
            (Some(fd), false) => fd.as_raw_fd(),
            _ => -1,
        };
        out.push(pfd(stdin_fd, libc::POLLOUT));
        let read = self.pending.len() < STDIN_MAX;
        for c in &self.clients {
            let mut ev = if read { libc::POLLIN } else { 0 };
            if !c.out.is_empty() {
                ev |= libc::POLLOUT;
            }
            out.push(pfd(c.sock.as_raw_fd(), ev));
        }
    }

    /// Acts on the poll results for the fds [`AttachServer::fds`] gave.
    pub fn handle(&mut self, polled: &[libc::pollfd]) {
        let (head, clients) = polled.split_at(2.min(polled.len()));
        for (c, pfd) in self.clients.iter_mut().zip(clients) {
            if pfd.revents & libc::POLLOUT != 0 {
                c.flush();
            }
        }
        let mut buf = [0u8; 16 * 1024];
        // By index: reading a client may also touch the server's stdin state.
        let n = self.clients.len().min(clients.len());
        for (i, pfd) in clients.iter().enumerate().take(n) {
            if pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                self.read_client(i, &mut buf);
            }
        }
        if head.get(1).is_some_and(|p| p.revents != 0) {
            self.write_stdin();
        }
        if head.first().is_some_and(|p| p.revents != 0) {
            self.accept();
        }
        self.reap_clients();
    }

    /// Sends container output (`kind` is `STDOUT` or `STDERR`) to every client.
    pub fn broadcast(&mut self, kind: u8, data: &[u8]) {
        if data.is_empty() || self.clients.is_empty() {
            return;
        }
        for c in &mut self.clients {
            for chunk in data.chunks(proto::MAX_PAYLOAD) {
                proto::encode_into(&mut c.out, kind, chunk);
            }
            c.flush();
            if c.out.len() > CLIENT_OUT_MAX {
                eprintln!("peapod-shim monitor: dropping an attach client that does not read");
                c.gone = true;
            }
        }
        self.reap_clients();
    }

    /// After the container ended and its output was broadcast: gives clients up to
    /// [`FINAL_FLUSH`] to take what is buffered, then closes them and removes the socket.
    pub fn finish(mut self) {
        let deadline = Instant::now() + FINAL_FLUSH;
        loop {
            self.clients.retain(|c| !c.gone && !c.out.is_empty());
            if self.clients.is_empty() {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let mut fds: Vec<libc::pollfd> = self
                .clients
                .iter()
                .map(|c| libc::pollfd {
                    fd: c.sock.as_raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                })
                .collect();
            if sys::poll_timeout(&mut fds, left).is_err() {
                break;
            }
            for (c, p) in self.clients.iter_mut().zip(&fds) {
                if p.revents & (libc::POLLERR | libc::POLLHUP) != 0 {
                    c.gone = true;
                } else if p.revents != 0 {
                    c.flush();
                }
            }
        }
        // Dropping closes the clients (they see EOF) and the listener.
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((sock, _)) => {
                    if self.clients.len() >= MAX_CLIENTS || sock.set_nonblocking(true).is_err() {
                        continue; // dropped: closed at once
                    }
                    self.clients.push(Client {
                        sock,
                        dec: Decoder::default(),
                        out: Vec::new(),
                        used_stdin: false,
                        stdin_done: false,
                        gone: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    eprintln!("peapod-shim monitor: accepting an attach client: {e}");
                    return;
                }
            }
        }
    }

    fn read_client(&mut self, i: usize, buf: &mut [u8]) {
        let c = &mut self.clients[i];
        let n = match (&c.sock).read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return,
            Err(_) => 0,
        };
        if n == 0 {
            c.gone = true;
            return;
        }
        c.dec.feed(&buf[..n]);
        let mut frames: Vec<(u8, Vec<u8>)> = Vec::new();
        if let Err(e) = c.dec.frames(|k, p| frames.push((k, p.to_vec()))) {
            eprintln!("peapod-shim monitor: attach client: {e}");
            c.gone = true;
        }
        for (kind, payload) in frames {
            self.client_frame(i, kind, &payload);
        }
    }

    fn client_frame(&mut self, i: usize, kind: u8, payload: &[u8]) {
        let c = &mut self.clients[i];
        match kind {
            proto::STDIN if !c.stdin_done => {
                c.used_stdin = true;
                if self.stdin.is_some() && !self.close_after_flush {
                    self.pending.extend_from_slice(payload);
                    self.write_stdin();
                }
            }
            proto::STDIN_CLOSE if !c.stdin_done => {
                c.used_stdin = true;
                c.stdin_done = true;
                self.stdin_ended();
            }
            proto::RESIZE => {
                if let (Some(fd), Some((cols, rows))) = (&self.tty, proto::parse_resize(payload)) {
                    if let Err(e) = sys::set_winsize(fd.as_raw_fd(), cols, rows) {
                        eprintln!("peapod-shim monitor: resizing the terminal: {e}");
                    }
                }
            }
            _ => {} // stdin after its end, resize without a tty, unknown kinds
        }
    }

    /// A client's stdin ended: with stdin_once (and a pipe), the container's stdin closes once
    /// what is buffered is written.
    fn stdin_ended(&mut self) {
        if self.stdin_once && self.tty.is_none() && self.stdin.is_some() {
            self.close_after_flush = true;
            self.write_stdin();
        }
    }

    fn write_stdin(&mut self) {
        let Some(fd) = &self.stdin else {
            self.pending.clear();
            return;
        };
        while !self.pending.is_empty() {
            match sys::write_some(fd.as_raw_fd(), &self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // EPIPE: nobody in the container reads stdin any more.
                    if e.raw_os_error() != Some(libc::EPIPE) {
                        eprintln!("peapod-shim monitor: writing the container's stdin: {e}");
                    }
                    self.pending.clear();
                    self.stdin = None;
                    return;
                }
            }
        }
        if self.close_after_flush {
            self.stdin = None;
        }
    }

    /// Drops clients that went away; one that used stdin counts as its stdin ending.
    fn reap_clients(&mut self) {
        let mut ended = false;
        self.clients.retain(|c| {
            if c.gone && c.used_stdin && !c.stdin_done {
                ended = true;
            }
            !c.gone
        });
        if ended {
            self.stdin_ended();
        }
    }
}

impl Client {
    fn flush(&mut self) {
        while !self.out.is_empty() && !self.gone {
            match sys::write_some(self.sock.as_raw_fd(), &self.out) {
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => self.gone = true,
            }
        }
        if self.out.capacity() > 4 * proto::MAX_PAYLOAD && self.out.is_empty() {
            self.out = Vec::new();
        }
    }
}

impl Drop for AttachServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds `path` (= `dir/attach.sock`); a path too long for a socket address is reached
/// through `/proc/self/fd/N/` of the directory, which the kernel resolves the same way.
fn bind_long(dir: &Path, path: &Path) -> io::Result<UnixListener> {
    if path.as_os_str().len() <= proto::SUN_PATH_MAX {
        return UnixListener::bind(path);
    }
    let d = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)?;
    let short = format!("/proc/self/fd/{}/{}", d.as_raw_fd(), proto::SOCKET);
    UnixListener::bind(short)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn poll_once(s: &mut AttachServer) {
        let mut fds = Vec::new();
        s.fds(&mut fds);
        sys::poll_timeout(&mut fds, Duration::from_millis(200)).unwrap();
        s.handle(&fds);
    }

    fn frames_of(sock: &mut UnixStream, want: usize) -> Vec<(u8, Vec<u8>)> {
        let mut d = Decoder::default();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        while got.len() < want {
            let n = sock.read(&mut buf).unwrap();
            assert!(n > 0, "closed early");
            d.feed(&buf[..n]);
            d.frames(|k, p| got.push((k, p.to_vec()))).unwrap();
        }
        got
    }

    #[test]
    fn output_reaches_clients_and_stdin_reaches_the_pipe_once() {
        let dir = std::env::temp_dir().join(format!("attach-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (stdin_r, stdin_w) = sys::pipe().unwrap();
        sys::set_nonblocking(stdin_w.as_raw_fd()).unwrap();
        let mut s = AttachServer::bind(&dir, true).unwrap();
        s.connect_container(Some(stdin_w), None);
        let path = dir.join(proto::SOCKET);
        let mode = std::fs::metadata(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);

        let mut a = UnixStream::connect(&path).unwrap();
        let mut b = UnixStream::connect(&path).unwrap();
        poll_once(&mut s);
        assert_eq!(s.clients.len(), 2);
        s.broadcast(proto::STDOUT, b"out");
        s.broadcast(proto::STDERR, b"err");
        for c in [&mut a, &mut b] {
            assert_eq!(
                frames_of(c, 2),
                vec![
                    (proto::STDOUT, b"out".to_vec()),
                    (proto::STDERR, b"err".to_vec())
                ]
            );
        }

        let mut wire = Vec::new();
        proto::encode_into(&mut wire, proto::STDIN, b"typed\n");
        proto::encode_into(&mut wire, proto::STDIN_CLOSE, b"");
        a.write_all(&wire).unwrap();
        for _ in 0..3 {
            poll_once(&mut s);
        }
        // stdin_once: the pipe is closed after the bytes, so the reader sees them then EOF.
        let mut got = Vec::new();
        let mut f = std::fs::File::from(stdin_r);
        f.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"typed\n");

        // A client that disconnects is dropped; the other still gets output.
        drop(a);
        poll_once(&mut s);
        assert_eq!(s.clients.len(), 1);
        s.broadcast(proto::STDOUT, b"more");
        assert_eq!(
            frames_of(&mut b, 1),
            vec![(proto::STDOUT, b"more".to_vec())]
        );
        s.finish();
        assert!(!path.exists(), "the socket file is removed at the end");
        let mut rest = Vec::new();
        b.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "closed after the end");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_client_that_does_not_read_is_dropped() {
        let dir = std::env::temp_dir().join(format!("attach-slow-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = AttachServer::bind(&dir, false).unwrap();
        let _slow = UnixStream::connect(dir.join(proto::SOCKET)).unwrap();
        poll_once(&mut s);
        assert_eq!(s.clients.len(), 1);
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..64 {
            s.broadcast(proto::STDOUT, &chunk);
        }
        assert!(s.clients.is_empty(), "4 MiB unread: the client is dropped");
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
