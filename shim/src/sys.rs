//! Thin wrappers over the libc calls the shim needs, each returning `io::Result`.
//!
//! All the shim's `unsafe` code lives here, but for `syncfd.rs` adopting the inherited fd 3, so
//! the other modules are plain safe Rust. The wrappers retry on EINTR where a retry is the only
//! sensible reaction. `spawn` is a bare fork + execvp: std's `Command` would pull in tens of KiB
//! of code (env capture, posix_spawn paths), and the shim's resident size matters.

use std::ffi::{CStr, CString};
use std::io;
use std::mem::{self, MaybeUninit};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use libc::c_int;

/// Return types of libc calls that signal failure with `-1` and the reason in errno.
trait MinusOne: Copy + PartialEq {
    const MINUS_ONE: Self;
}

impl MinusOne for c_int {
    const MINUS_ONE: Self = -1;
}

impl MinusOne for isize {
    const MINUS_ONE: Self = -1;
}

/// Turns a `-1` libc return into the errno as an `io::Error`.
fn cvt<T: MinusOne>(ret: T) -> io::Result<T> {
    if ret == T::MINUS_ONE {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Like [`cvt`], but calls `f` again while it fails with EINTR.
fn cvt_retry<T: MinusOne>(mut f: impl FnMut() -> T) -> io::Result<T> {
    loop {
        match cvt(f()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// True if `fd` is an open descriptor of this process.
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor flags; an unknown fd just yields EBADF.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// Sets or clears FD_CLOEXEC on `fd`.
pub fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on an integer fd has no memory-safety requirements.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    let new = if on {
        flags | libc::FD_CLOEXEC
    } else {
        flags & !libc::FD_CLOEXEC
    };
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, new) })?;
    Ok(())
}

/// Puts `fd` (its open file description) in non-blocking mode.
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an integer fd has no memory-safety requirements.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    Ok(())
}

/// Makes sure fds 0, 1 and 2 are open (on /dev/null if they were closed), so that descriptors
/// the shim creates later can never land on a standard stream number by accident.
pub fn ensure_std_fds() -> io::Result<()> {
    for fd in 0..3 {
        if fd_is_open(fd) {
            continue;
        }
        // open() returns the lowest free number, which is `fd` itself (all lower ones are open).
        let nul = open_devnull()?;
        if nul.as_raw_fd() == fd {
            set_cloexec(fd, false)?;
            mem::forget(nul); // keep it: it is now the standard stream
        } else {
            // SAFETY: dup2 between two integer fds; `nul` stays owned and is closed on drop.
            cvt(unsafe { libc::dup2(nul.as_raw_fd(), fd) })?;
        }
    }
    Ok(())
}

/// Closes every descriptor numbered `first` or above: close_range(2) where the kernel has it,
/// else each fd listed in /proc/self/fd.
pub fn close_fds_from(first: RawFd) -> io::Result<()> {
    // SAFETY: close_range takes plain integers. It runs at startup, when no Rust object of this
    // process owns an fd numbered `first` or above: closing inherited strays is the point.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first as libc::c_uint, !0u32, 0u32) };
    if ret == 0 {
        return Ok(());
    }
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd >= first)
        .collect();
    // The directory's own fd was in the list but is closed by now: EBADF there is fine.
    for fd in fds {
        // SAFETY: as above: these fds are not owned by any Rust object.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// Opens /dev/null read-write, close-on-exec.
pub fn open_devnull() -> io::Result<OwnedFd> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    Ok(f.into())
}

/// A pipe, both ends close-on-exec: `(read end, write end)`.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as c_int; 2];
    // SAFETY: pipe2 writes two ints into the array we pass.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both are fresh fds that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// read(2), retried on EINTR. `Ok(0)` is end of file.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the kernel writes at most buf.len() bytes into buf.
    let n = cvt_retry(|| unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })?;
    Ok(n as usize)
}

/// read(2) into the spare capacity of `buf` (appending), retried on EINTR; returns the count.
/// Unlike a zero-filled buffer, memory the kernel never writes is never touched, so a large
/// read buffer costs resident memory only as far as data actually arrives.
pub fn read_append(fd: RawFd, buf: &mut Vec<u8>) -> io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    // SAFETY: the kernel writes at most spare.len() bytes into the spare capacity.
    let n = cvt_retry(|| unsafe { libc::read(fd, spare.as_mut_ptr().cast(), spare.len()) })?;
    // SAFETY: the kernel initialised the first n bytes after the current length.
    unsafe { buf.set_len(buf.len() + n as usize) };
    Ok(n as usize)
}

/// Writes all of `buf` to `fd`, looping over short writes and EINTR.
pub fn write_all(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: the kernel reads at most buf.len() bytes from buf.
        let n = cvt_retry(|| unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) })?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// fork + execvp of `argv` (`argv[0]` is the program: a path, or a name looked up in $PATH;
/// the environment is inherited), with the given descriptors as the child's stdin, stdout and
/// stderr. Those must be numbered 3 or above (so that placing one cannot clobber another);
/// every other fd of the shim is close-on-exec. In the child, the signals the shim ignores or
/// blocks are reset: ignored dispositions and the mask survive exec, and a container that
/// cannot get SIGTERM would be a nasty surprise. Returns the child's PID once exec succeeded;
/// an exec failure is returned as its errno (sent back over a close-on-exec pipe) and the
/// child is reaped.
pub fn spawn(argv: &[CString], stdio: [RawFd; 3]) -> io::Result<libc::pid_t> {
    if argv.is_empty() || stdio.iter().any(|&fd| fd < 3) {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let empty = SigSet::empty();
    let (err_r, err_w) = pipe()?;
    // SAFETY: the shim is single-threaded; the child branch only calls async-signal-safe
    // functions (dup2, signal, sigprocmask, execvp, write, _exit) on data prepared above.
    let pid = cvt(unsafe { libc::fork() })?;
    if pid == 0 {
        // SAFETY: as above; every pointer stays valid (the child has a copy of this memory).
        unsafe {
            for (target, &fd) in stdio.iter().enumerate() {
                if libc::dup2(fd, target as c_int) == -1 {
                    child_fail(err_w.as_raw_fd());
                }
            }
            for sig in [libc::SIGPIPE, libc::SIGHUP, libc::SIGINT, libc::SIGTERM] {
                libc::signal(sig, libc::SIG_DFL);
            }
            libc::sigprocmask(libc::SIG_SETMASK, &empty.0, std::ptr::null_mut());
            libc::execvp(ptrs[0], ptrs.as_ptr());
            child_fail(err_w.as_raw_fd());
        }
    }
    drop(err_w);
    let mut errno = [0u8; 4];
    let n = read(err_r.as_raw_fd(), &mut errno)?;
    if n == errno.len() {
        let _ = wait_pid(pid);
        return Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno)));
    }
    Ok(pid)
}

/// In a forked child: sends errno to the parent over `err_fd` and exits 127.
///
/// # Safety
/// Only to be called in the child of a fork (it calls `_exit`).
unsafe fn child_fail(err_fd: RawFd) -> ! {
    let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
    let bytes = errno.to_ne_bytes();
    // SAFETY: write and _exit are async-signal-safe; `bytes` is a live local array.
    unsafe {
        libc::write(err_fd, bytes.as_ptr().cast(), bytes.len());
        libc::_exit(127)
    }
}

/// Blocking waitpid for one child; returns its raw status.
pub fn wait_pid(pid: libc::pid_t) -> io::Result<c_int> {
    let mut status = 0;
    // SAFETY: waitpid writes one int into `status`.
    cvt_retry(|| unsafe { libc::waitpid(pid, &mut status, 0) })?;
    Ok(status)
}

/// setsid(2): a new session and process group, detached from any controlling terminal.
pub fn setsid() -> io::Result<()> {
    // SAFETY: no arguments.
    cvt(unsafe { libc::setsid() })?;
    Ok(())
}

/// prctl(PR_SET_CHILD_SUBREAPER, 1): orphaned descendants are re-parented to this process.
pub fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: this prctl takes one integer argument.
    cvt(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong) })?;
    Ok(())
}

/// Sets the disposition of `sig` to SIG_IGN.
pub fn ignore_signal(sig: c_int) -> io::Result<()> {
    set_disposition(sig, libc::SIG_IGN)
}

/// Sets the disposition of `sig` back to SIG_DFL.
pub fn default_signal(sig: c_int) -> io::Result<()> {
    set_disposition(sig, libc::SIG_DFL)
}

fn set_disposition(sig: c_int, handler: libc::sighandler_t) -> io::Result<()> {
    // SAFETY: SIG_IGN/SIG_DFL are not function pointers, so no handler code is installed.
    // signal() is async-signal-safe, so this may run between fork and exec.
    if unsafe { libc::signal(sig, handler) } == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A set of signals (`sigset_t`).
#[derive(Clone, Copy)]
pub struct SigSet(libc::sigset_t);

impl SigSet {
    /// The empty set.
    pub fn empty() -> SigSet {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the whole set.
        unsafe {
            libc::sigemptyset(set.as_mut_ptr());
            SigSet(set.assume_init())
        }
    }

    /// Every signal.
    pub fn full() -> SigSet {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigfillset initialises the whole set.
        unsafe {
            libc::sigfillset(set.as_mut_ptr());
            SigSet(set.assume_init())
        }
    }

    /// The set of the given signals.
    pub fn of(sigs: &[c_int]) -> SigSet {
        let mut set = SigSet::empty();
        for &s in sigs {
            // SAFETY: `set.0` is an initialised sigset_t; a bad number only returns EINVAL.
            unsafe { libc::sigaddset(&mut set.0, s) };
        }
        set
    }

    /// Blocks the signals of this set (adds them to the mask).
    pub fn block(&self) -> io::Result<()> {
        // SAFETY: the set is initialised; the old mask is not asked for.
        cvt(unsafe { libc::sigprocmask(libc::SIG_BLOCK, &self.0, std::ptr::null_mut()) })?;
        Ok(())
    }

    /// sigwaitinfo(2): waits for one signal of this set (they must be blocked) and returns
    /// its number.
    pub fn wait(&self) -> io::Result<c_int> {
        // SAFETY: siginfo_t is plain data, all-zero is a valid value; the kernel fills it.
        let mut info: libc::siginfo_t = unsafe { mem::zeroed() };
        // SAFETY: both pointers point at live, initialised values.
        cvt_retry(|| unsafe { libc::sigwaitinfo(&self.0, &mut info) })
    }

    /// A signalfd (non-blocking, close-on-exec) for this set. The signals must be blocked.
    pub fn signalfd(&self) -> io::Result<OwnedFd> {
        // SAFETY: -1 asks for a new fd; the set is initialised.
        let fd =
            cvt(unsafe { libc::signalfd(-1, &self.0, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) })?;
        // SAFETY: a fresh fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

/// Reads one pending signal from a non-blocking signalfd: `Ok(None)` when none is left.
pub fn read_signalfd(fd: RawFd) -> io::Result<Option<u32>> {
    // SAFETY: signalfd_siginfo is plain data; all-zero is a valid value.
    let mut info: libc::signalfd_siginfo = unsafe { mem::zeroed() };
    let size = mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: the kernel writes at most `size` bytes into `info`, which is that large.
    let ret = cvt_retry(|| unsafe { libc::read(fd, (&raw mut info).cast(), size) });
    match ret {
        Ok(n) if n as usize == size => Ok(Some(info.ssi_signo)),
        Ok(_) => Err(io::Error::other("short read from signalfd")),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

/// waitpid(-1, WNOHANG): one exited child as `(pid, raw status)`, or `None` when no child has
/// changed state (or there are no children at all).
pub fn reap_any() -> io::Result<Option<(libc::pid_t, c_int)>> {
    let mut status = 0;
    // SAFETY: waitpid writes one int into `status`.
    match cvt_retry(|| unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) }) {
        Ok(0) => Ok(None),
        Ok(pid) => Ok(Some((pid, status))),
        Err(e) if e.raw_os_error() == Some(libc::ECHILD) => Ok(None),
        Err(e) => Err(e),
    }
}

/// poll(2) with no timeout (waits until something is ready). EINTR yields `Ok(0)`.
pub fn poll(fds: &mut [libc::pollfd]) -> io::Result<usize> {
    // SAFETY: the kernel reads and writes exactly fds.len() pollfd entries.
    match cvt(unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) }) {
        Ok(n) => Ok(n as usize),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
        Err(e) => Err(e),
    }
}

/// sethostname(2) in the caller's UTS namespace.
pub fn sethostname(name: &[u8]) -> io::Result<()> {
    // SAFETY: the kernel reads name.len() bytes from the slice (no NUL terminator needed).
    cvt(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })?;
    Ok(())
}

/// Sets IFF_UP on the network interface `name` (e.g. `c"lo"`) of the caller's network
/// namespace, with the classic SIOCGIFFLAGS/SIOCSIFFLAGS ioctls on a UDP socket.
pub fn interface_up(name: &CStr) -> io::Result<()> {
    let bytes = name.to_bytes_with_nul();
    if bytes.len() > libc::IFNAMSIZ {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    // SAFETY: plain socket(2) call.
    let fd = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: a fresh fd that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data (a name array and a union of plain fields); zero is valid.
    let mut req: libc::ifreq = unsafe { mem::zeroed() };
    for (dst, &src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name from and writes the flags into `req`, a live ifreq.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) })?;
    // SAFETY: after SIOCGIFFLAGS the union holds ifru_flags.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    if flags & libc::IFF_UP as libc::c_short != 0 {
        return Ok(());
    }
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads the name and flags from `req`, a live ifreq.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) })?;
    Ok(())
}

/// Receives one file descriptor sent with SCM_RIGHTS on the connected unix socket `sock` (the
/// way runc hands over a container's pty master). The fd arrives close-on-exec; any extra fds
/// in the same message are closed.
pub fn recv_fd(sock: RawFd) -> io::Result<OwnedFd> {
    // runc sends the pty's path as the data bytes; we only need room for it, not its value.
    let mut data = [0u8; 256];
    // Room for a few fds, aligned for cmsghdr (u64 alignment covers it on Linux).
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; all-zero (null pointers, zero lengths) is valid.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = mem::size_of_val(&control) as _;
    // SAFETY: msg points at live buffers of the stated sizes, which the kernel fills.
    let n = cvt_retry(|| unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) })?;
    let mut received: Vec<OwnedFd> = Vec::new();
    // SAFETY: the CMSG_* helpers walk the control buffer the kernel just filled, bounded by
    // msg_controllen; each SCM_RIGHTS payload is an array of ints that are new fds we now own.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let payload = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let p = libc::CMSG_DATA(cmsg).cast::<c_int>();
                for i in 0..payload / mem::size_of::<c_int>() {
                    received.push(OwnedFd::from_raw_fd(p.add(i).read_unaligned()));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::other("control message truncated"));
    }
    if received.is_empty() {
        return Err(io::Error::other(if n == 0 {
            "peer closed without sending a descriptor"
        } else {
            "message carried no descriptor"
        }));
    }
    // Extra fds (never sent by runc) are closed when `received` drops.
    Ok(received.swap_remove(0))
}

/// One write(2) to `fd` (non-blocking ones return `WouldBlock`); retries EINTR. Returns how
/// many bytes were written.
pub fn write_some(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: the kernel reads at most buf.len() bytes from buf.
    let n = cvt_retry(|| unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) })?;
    Ok(n as usize)
}

/// Sets the window size of the terminal whose master (or slave) is `fd` (TIOCSWINSZ); the
/// foreground process group gets SIGWINCH.
pub fn set_winsize(fd: RawFd, cols: u16, rows: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, a live local.
    cvt(unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) })?;
    Ok(())
}

/// Sets the process's umask; returns the previous one.
pub fn umask(mask: libc::mode_t) -> libc::mode_t {
    // SAFETY: umask(2) cannot fail and touches no memory.
    unsafe { libc::umask(mask) }
}

/// A close-on-exec duplicate of `fd`, sharing its open file description.
pub fn dup_cloexec(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor, which we then own.
    let new = cvt(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) })?;
    // SAFETY: `new` was just returned by fcntl and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// poll(2) waiting at most `limit`. EINTR yields `Ok(0)`.
pub fn poll_timeout(fds: &mut [libc::pollfd], limit: std::time::Duration) -> io::Result<usize> {
    let ms = limit.as_millis().min(c_int::MAX as u128) as c_int;
    // SAFETY: the kernel reads and writes exactly fds.len() pollfd entries.
    match cvt(unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) }) {
        Ok(n) => Ok(n as usize),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
        Err(e) => Err(e),
    }
}
