//! Safe extraction of one layer tar into a directory, converting OCI whiteouts to the overlayfs
//! form. Layer tars are untrusted input, so this is the part of the store that must be right:
//!
//! - entry names are cleaned lexically; a leading `/` is dropped (as GNU tar does) and a `..`
//!   that would climb above the layer root is rejected;
//! - parents are resolved with [`resolve_in_root`], so a symlink planted by an earlier entry
//!   (`link -> /`, then `link/etc/evil`) is followed *inside* the layer, the way containerd's
//!   `fs.RootPath` does; the resolved path is then walked one component at a time with
//!   `O_NOFOLLOW|O_DIRECTORY`, and every file is created relative to its parent's descriptor
//!   with `O_EXCL|O_NOFOLLOW` (or the `*at` call that never follows), so the kernel never follows
//!   a symlink on our behalf;
//! - hard links may only point at entries inside the layer;
//! - permissions are set through descriptors (`fchmod`), never by a path that could be a
//!   symlink (containerd CVE-2021-32760), and symlinks are never chmod-ed at all;
//! - `trusted.overlay.*` xattrs from the tar are refused (they would steer overlayfs: opaque
//!   dirs, redirects, metacopy) and `security.*` other than file capabilities is dropped
//!   (SELinux labels and IMA signatures of the build host mean nothing here).
//!
//! Whiteouts: `.wh.NAME` becomes a 0/0 character device `NAME` and `.wh..wh..opq` sets
//! `trusted.overlay.opaque=y` on its directory, which is what overlayfs reads in a lower layer.
//! Both need root (mknod, trusted.* xattrs); without root, device nodes and fifos in the tar are
//! skipped with a warning and whiteouts are an error, since skipping them would resurrect
//! deleted files.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstatat, mkdirat, mknodat, utimensat, FchmodatFlags, Mode, SFlag,
    UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

use super::{read_full, xattr, ImageError, IoContext};
use crate::fsutil::resolve_in_root;

const WHITEOUT_PREFIX: &str = ".wh.";
const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";
const OVERLAY_OPAQUE_XATTR: &[u8] = b"trusted.overlay.opaque";
const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";
/// File content is copied through a buffer this big: `io::copy`'s 8 KiB made a write syscall
/// (and a decompressor call) per 8 KiB, a large share of the unpack time of a big layer.
const COPY_BUF: usize = 256 << 10;

/// What an extraction did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UnpackStats {
    /// Entries created (files, dirs, links, nodes, whiteouts).
    pub entries: u64,
    /// Entries skipped: device nodes and fifos without root, unknown entry types.
    pub skipped: u64,
}

/// Extracts the tar stream `reader` into `root`, an existing directory that only this call
/// writes to (the store passes a fresh temporary directory). Stops at the first error; the
/// caller then throws `root` away.
pub fn unpack(reader: impl Read, root: &Path) -> Result<UnpackStats, ImageError> {
    let root_fd = open_dir(None, root.as_os_str()).at(root)?;
    let mut u = Unpacker {
        root,
        root_fd,
        privileged: nix::unistd::geteuid().is_root(),
        cache: None,
        dir_times: Vec::new(),
        stats: UnpackStats::default(),
        buf: Vec::new(),
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|e| ImageError::format("layer tar", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ImageError::format("layer tar", e))?;
        u.entry(&mut entry)?;
    }
    u.finish_dir_times();
    Ok(u.stats)
}

/// A parent directory, opened: the (unresolved) entry components it was looked up by, the
/// components it resolved to, and the descriptor.
struct Parent {
    key: Vec<OsString>,
    resolved: Vec<OsString>,
    fd: OwnedFd,
}

struct Unpacker<'a> {
    root: &'a Path,
    root_fd: OwnedFd,
    privileged: bool,
    /// The last parent opened. Consecutive entries of a tar are mostly siblings, so this saves
    /// resolving and walking the same path again. It is dropped after every entry that could
    /// change how a path resolves (anything but a regular file created where nothing was).
    cache: Option<Parent>,
    /// Directory mtimes, applied at the end: creating children would change them again.
    dir_times: Vec<(Vec<OsString>, TimeSpec)>,
    stats: UnpackStats,
    /// The copy buffer for file content ([`COPY_BUF`]), allocated at the first file.
    buf: Vec<u8>,
}

/// What was at an entry's path before it was created.
#[derive(Debug, PartialEq, Eq)]
enum Existing {
    Nothing,
    Removed,
    KeptDir,
}

/// The entry's metadata, read once from the header and PAX records.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: TimeSpec,
    xattrs: Vec<(String, Vec<u8>)>,
}

impl Unpacker<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), ImageError> {
        let raw_name = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw_name).into_owned();
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(()); // global defaults (usually just a comment); nothing to create
        }
        let comps = clean_path(&raw_name).map_err(|reason| unsafe_path(&name, reason))?;
        let Some((base, parent_key)) = comps.split_last() else {
            // The layer root itself ("./"): its attributes are not used, overlayfs takes the
            // root's attributes from the upper directory.
            return Ok(());
        };
        let base_str = base.to_string_lossy();

        // Whiteouts first: their names are instructions, not files.
        if base_str == WHITEOUT_OPAQUE {
            let parent = self.parent(&name, parent_key)?;
            self.require_root(&name, "opaque directory whiteout")?;
            xattr::fset(&parent.fd, OVERLAY_OPAQUE_XATTR, b"y")
                .at(self.path_of(&parent.resolved, None))?;
            self.cache = Some(parent);
            self.stats.entries += 1;
            return Ok(());
        }
        if base_str.starts_with(WHITEOUT_META_PREFIX) {
            // Other AUFS bookkeeping (.wh..wh.plnk, .wh..wh.aufs): meaningless to overlayfs.
            self.stats.skipped += 1;
            return Ok(());
        }
        if let Some(hidden) = base_str.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(unsafe_path(&name, "whiteout of an invalid name"));
            }
            self.require_root(&name, "whiteout")?;
            let hidden = OsString::from_vec(base.as_bytes()[WHITEOUT_PREFIX.len()..].to_vec());
            let parent = self.parent(&name, parent_key)?;
            self.remove_existing(&parent, &hidden, false)?;
            let at = self.path_of(&parent.resolved, Some(&hidden));
            let pfd = Some(parent.fd.as_raw_fd());
            mknodat(pfd, hidden.as_os_str(), SFlag::S_IFCHR, Mode::empty(), 0).at(&at)?;
            fchownat(
                pfd,
                hidden.as_os_str(),
                Some(Uid::from_raw(0)),
                Some(Gid::from_raw(0)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .at(&at)?;
            self.stats.entries += 1;
            return Ok(()); // the cache is dropped: a directory may have been removed
        }

        let meta = read_meta(entry, &name)?;
        let parent = self.parent(&name, parent_key)?;
        let pfd = parent.fd.as_raw_fd();
        let at = self.path_of(&parent.resolved, Some(base));
        let mut keep_cache = false;

        if kind.is_dir() {
            if self.remove_existing(&parent, base, true)? != Existing::KeptDir {
                mkdirat(Some(pfd), base.as_os_str(), Mode::from_bits_truncate(0o700)).at(&at)?;
            }
            let dir = open_dir(Some(&parent.fd), base).at(&at)?;
            self.chown(pfd, base, &meta, &at)?;
            fchmod(dir.as_raw_fd(), Mode::from_bits_truncate(meta.mode)).at(&at)?;
            self.set_xattrs(pfd, base, &meta, &name, &at)?;
            let mut path = parent.resolved.clone();
            path.push(base.clone());
            self.dir_times.push((path, meta.mtime));
        } else if kind.is_file() || kind.is_contiguous() || kind.is_gnu_sparse() {
            let replaced = self.remove_existing(&parent, base, false)?;
            let fd = openat(
                Some(pfd),
                base.as_os_str(),
                OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_WRONLY
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            )
            .at(&at)?;
            // SAFETY: openat just returned this descriptor; nothing else owns it.
            let mut file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
            self.copy(entry, &mut file).at(&at)?;
            self.chown(pfd, base, &meta, &at)?;
            fchmod(file.as_raw_fd(), Mode::from_bits_truncate(meta.mode)).at(&at)?;
            drop(file);
            self.set_xattrs(pfd, base, &meta, &name, &at)?;
            self.set_mtime(pfd, base, meta.mtime, &at)?;
            keep_cache = replaced == Existing::Nothing;
        } else if kind.is_symlink() {
            let target = entry
                .link_name_bytes()
                .ok_or_else(|| unsafe_path(&name, "symlink without a target"))?
                .into_owned();
            self.remove_existing(&parent, base, false)?;
            // Created as-is: a symlink is only dangerous when followed, which never happens here.
            symlinkat(OsStr::from_bytes(&target), Some(pfd), base.as_os_str()).at(&at)?;
            self.chown(pfd, base, &meta, &at)?;
            self.set_xattrs(pfd, base, &meta, &name, &at)?;
            self.set_mtime(pfd, base, meta.mtime, &at)?;
        } else if kind.is_hard_link() {
            let target = entry
                .link_name_bytes()
                .ok_or_else(|| unsafe_path(&name, "hard link without a target"))?
                .into_owned();
            self.hard_link(&name, &parent, base, &target)?;
            // The link shares the target's inode, whose metadata came with the target's entry.
        } else if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            if !self.privileged {
                tracing::warn!(entry = %name, "skipping device node or fifo: not running as root");
                self.stats.skipped += 1;
                return Ok(());
            }
            let sflag = if kind.is_character_special() {
                SFlag::S_IFCHR
            } else if kind.is_block_special() {
                SFlag::S_IFBLK
            } else {
                SFlag::S_IFIFO
            };
            let header = entry.header();
            let major = header.device_major().ok().flatten().unwrap_or(0);
            let minor = header.device_minor().ok().flatten().unwrap_or(0);
            self.remove_existing(&parent, base, false)?;
            mknodat(
                Some(pfd),
                base.as_os_str(),
                sflag,
                Mode::empty(),
                libc::makedev(major, minor),
            )
            .at(&at)?;
            self.chown(pfd, base, &meta, &at)?;
            // No descriptor can be had for a device or fifo without opening it, so chmod goes
            // by name. It cannot be redirected: the node was created just now by mknodat under
            // a parent we hold open in a directory only we write to, and it is checked again.
            let st = fstatat(Some(pfd), base.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW).at(&at)?;
            if st.st_mode & libc::S_IFMT != sflag.bits() {
                return Err(unsafe_path(&name, "node changed type while unpacking"));
            }
            fchmodat(
                Some(pfd),
                base.as_os_str(),
                Mode::from_bits_truncate(meta.mode),
                FchmodatFlags::FollowSymlink,
            )
            .at(&at)?;
            self.set_xattrs(pfd, base, &meta, &name, &at)?;
            self.set_mtime(pfd, base, meta.mtime, &at)?;
        } else {
            tracing::warn!(entry = %name, kind = ?kind, "skipping unsupported tar entry type");
            self.stats.skipped += 1;
            self.cache = Some(parent);
            return Ok(());
        }
        self.stats.entries += 1;
        if keep_cache {
            self.cache = Some(parent);
        }
        Ok(())
    }

    /// Opens the directory that will hold an entry, creating missing components as real
    /// directories (0755, like containerd and docker) and following symlinks only inside the
    /// layer. Takes the cached parent when it matches.
    fn parent(&mut self, entry: &str, key: &[OsString]) -> Result<Parent, ImageError> {
        if let Some(p) = self.cache.take() {
            if p.key == key {
                return Ok(p);
            }
        }
        let mut unresolved = PathBuf::new();
        unresolved.extend(key);
        let resolved_path = resolve_in_root(self.root, &unresolved)
            .map_err(|e| unsafe_path(entry, format!("cannot resolve parent directory: {e}")))?;
        let rel = resolved_path
            .strip_prefix(self.root)
            .map_err(|_| unsafe_path(entry, "parent resolves outside the layer"))?;
        let resolved: Vec<OsString> = rel.iter().map(|c| c.to_os_string()).collect();

        let mut fd = self.root_fd.try_clone().at(self.root)?;
        let mut walked = self.root.to_path_buf();
        for comp in &resolved {
            walked.push(comp);
            fd = match open_dir(Some(&fd), comp) {
                Ok(next) => next,
                Err(Errno::ENOENT) => {
                    match mkdirat(
                        Some(fd.as_raw_fd()),
                        comp.as_os_str(),
                        Mode::from_bits_truncate(0o755),
                    ) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(e).at(&walked),
                    }
                    open_dir(Some(&fd), comp).at(&walked)?
                }
                // resolve_in_root followed every symlink it met, so a symlink here means the
                // tree changed under us; a regular file means the tar puts children under a file.
                Err(Errno::ELOOP) | Err(Errno::ENOTDIR) => {
                    return Err(unsafe_path(
                        entry,
                        format!("parent component {comp:?} is not a directory"),
                    ))
                }
                Err(e) => return Err(e).at(&walked),
            };
        }
        Ok(Parent {
            key: key.to_vec(),
            resolved,
            fd,
        })
    }

    /// Makes room for a new entry `name` in `parent`. An existing directory is kept when
    /// `keep_dir` is set: the tar semantics of a directory entry over a directory.
    fn remove_existing(
        &self,
        parent: &Parent,
        name: &OsStr,
        keep_dir: bool,
    ) -> Result<Existing, ImageError> {
        let pfd = Some(parent.fd.as_raw_fd());
        let st = match fstatat(pfd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(Existing::Nothing),
            Err(e) => return Err(e).at(self.path_of(&parent.resolved, Some(name))),
        };
        let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        if is_dir && keep_dir {
            return Ok(Existing::KeptDir);
        }
        let path = self.path_of(&parent.resolved, Some(name));
        if is_dir {
            // std's remove_dir_all never follows symlinks inside the tree, and every component
            // of `path` was just opened with O_NOFOLLOW.
            std::fs::remove_dir_all(&path).at(&path)?;
        } else {
            unlinkat(pfd, name, UnlinkatFlags::NoRemoveDir).at(&path)?;
        }
        Ok(Existing::Removed)
    }

    fn hard_link(
        &mut self,
        entry: &str,
        parent: &Parent,
        base: &OsStr,
        target: &[u8],
    ) -> Result<(), ImageError> {
        let tcomps = clean_path(target).map_err(|_| {
            unsafe_path(
                entry,
                format!(
                    "hard link target {:?} is outside the layer",
                    String::from_utf8_lossy(target)
                ),
            )
        })?;
        let Some((tbase, tparent_key)) = tcomps.split_last() else {
            return Err(unsafe_path(entry, "hard link to the layer root"));
        };
        // Resolving the target's parent may create missing directories, which is harmless: the
        // link fails just below if the target itself does not exist.
        let tparent = self.parent(entry, tparent_key)?;
        let tpath = self.path_of(&tparent.resolved, Some(tbase));
        let st = match fstatat(
            Some(tparent.fd.as_raw_fd()),
            tbase.as_os_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => st,
            Err(Errno::ENOENT) => {
                return Err(unsafe_path(
                    entry,
                    format!(
                        "hard link target {:?} does not exist in the layer",
                        String::from_utf8_lossy(target)
                    ),
                ))
            }
            Err(e) => return Err(e).at(&tpath),
        };
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            return Err(unsafe_path(entry, "hard link to a directory"));
        }
        let at = self.path_of(&parent.resolved, Some(base));
        if tparent.resolved == parent.resolved && tbase == base {
            return Ok(()); // a link to itself: nothing to do
        }
        self.remove_existing(parent, base, false)?;
        // Flags 0: the target is not followed if it is a symlink (the link is to the symlink).
        linkat(
            Some(tparent.fd.as_raw_fd()),
            tbase.as_os_str(),
            Some(parent.fd.as_raw_fd()),
            base,
            AtFlags::empty(),
        )
        .at(&at)?;
        Ok(())
    }

    /// Copies an entry's content into its file, in writes of up to [`COPY_BUF`] bytes.
    fn copy(&mut self, entry: &mut impl Read, file: &mut File) -> io::Result<()> {
        if self.buf.is_empty() {
            self.buf = vec![0; COPY_BUF];
        }
        loop {
            let n = read_full(entry, &mut self.buf)?;
            if n == 0 {
                return Ok(());
            }
            file.write_all(&self.buf[..n])?;
        }
    }

    fn require_root(&self, entry: &str, what: &str) -> Result<(), ImageError> {
        if self.privileged {
            Ok(())
        } else {
            Err(ImageError::format(
                format!("layer entry {entry:?}"),
                format!("a {what} needs root (mknod / trusted.* xattrs)"),
            ))
        }
    }

    /// lchown to the tar's numeric IDs; only root can give files away, so unprivileged
    /// unpacking keeps the caller's IDs (a rootless store is then owned by its user).
    fn chown(&self, pfd: i32, name: &OsStr, meta: &Meta, at: &Path) -> Result<(), ImageError> {
        if !self.privileged {
            return Ok(());
        }
        fchownat(
            Some(pfd),
            name,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .at(at)
    }

    fn set_mtime(
        &self,
        pfd: i32,
        name: &OsStr,
        mtime: TimeSpec,
        at: &Path,
    ) -> Result<(), ImageError> {
        utimensat(
            Some(pfd),
            name,
            &mtime,
            &mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .at(at)
    }

    /// Applies the entry's xattrs after chown (which clears security.capability) through
    /// `/proc/self/fd/<parent>/<name>` with lsetxattr: the parent is the descriptor we hold and
    /// the last component is not followed.
    fn set_xattrs(
        &self,
        pfd: i32,
        name: &OsStr,
        meta: &Meta,
        entry: &str,
        at: &Path,
    ) -> Result<(), ImageError> {
        if meta.xattrs.is_empty() {
            return Ok(());
        }
        let mut via = PathBuf::from(format!("/proc/self/fd/{pfd}"));
        via.push(name);
        for (key, value) in &meta.xattrs {
            match xattr_policy(key, self.privileged) {
                XattrPolicy::Apply => {}
                XattrPolicy::Skip => {
                    tracing::debug!(entry, xattr = %key, "dropping xattr");
                    continue;
                }
                XattrPolicy::Refuse => {
                    return Err(unsafe_path(
                        entry,
                        format!("sets overlayfs-internal xattr {key}"),
                    ))
                }
            }
            if let Err(e) = xattr::lset(&via, key.as_bytes(), value) {
                match e.raw_os_error() {
                    // The filesystem under the store or the kernel cannot hold it (user.* on a
                    // symlink, a filesystem without xattrs): keep going like containerd does.
                    Some(libc::ENOTSUP) | Some(libc::EPERM) => {
                        tracing::warn!(entry, xattr = %key, error = %e, "xattr not applied");
                    }
                    _ => return Err(e).at(at),
                }
            }
        }
        Ok(())
    }

    /// Sets the recorded directory mtimes, walking each path again with O_NOFOLLOW. Failures
    /// only cost a timestamp, so they are logged, not fatal.
    fn finish_dir_times(&mut self) {
        self.cache = None;
        for (path, mtime) in std::mem::take(&mut self.dir_times) {
            let Some((base, parents)) = path.split_last() else {
                continue;
            };
            let mut fd = match self.root_fd.try_clone() {
                Ok(fd) => fd,
                Err(_) => return,
            };
            let mut ok = true;
            for comp in parents {
                match open_dir(Some(&fd), comp) {
                    Ok(next) => fd = next,
                    Err(_) => {
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                if let Err(e) = utimensat(
                    Some(fd.as_raw_fd()),
                    base.as_os_str(),
                    &mtime,
                    &mtime,
                    UtimensatFlags::NoFollowSymlink,
                ) {
                    tracing::debug!(path = ?path, error = %e, "directory mtime not set");
                }
            }
        }
    }

    fn path_of(&self, resolved: &[OsString], name: Option<&OsStr>) -> PathBuf {
        let mut p = self.root.to_path_buf();
        p.extend(resolved);
        if let Some(n) = name {
            p.push(n);
        }
        p
    }
}

#[derive(Debug, PartialEq, Eq)]
enum XattrPolicy {
    Apply,
    Skip,
    Refuse,
}

/// Which xattrs from a layer tar are applied.
fn xattr_policy(key: &str, privileged: bool) -> XattrPolicy {
    if key.starts_with("trusted.overlay.") {
        XattrPolicy::Refuse
    } else if key == "security.capability" {
        XattrPolicy::Apply // file capabilities are part of the image (ping, etc.)
    } else if key.starts_with("security.") || (key.starts_with("trusted.") && !privileged) {
        // Other security.* are host policy (SELinux labels, IMA); trusted.* needs root.
        XattrPolicy::Skip
    } else {
        XattrPolicy::Apply
    }
}

fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>, name: &str) -> Result<Meta, ImageError> {
    let bad = |field: &str, e: io::Error| {
        ImageError::format(format!("layer entry {name:?}"), format!("{field}: {e}"))
    };
    let header = entry.header();
    let old = header.as_old();
    // Like Go's archive/tar, an empty numeric field reads as 0; some writers leave them blank.
    let num = |field: &str, raw: &[u8], v: io::Result<u64>| match v {
        Ok(v) => Ok(v),
        Err(_) if raw.iter().all(|&b| b == 0 || b == b' ') => Ok(0),
        Err(e) => Err(bad(field, e)),
    };
    let mode = num("mode", &old.mode, header.mode().map(u64::from))? as u32 & 0o7777;
    let uid = num("uid", &old.uid, header.uid())?;
    let gid = num("gid", &old.gid, header.gid())?;
    let mut mtime = num("mtime", &old.mtime, header.mtime())? as i64;
    let (uid, gid) = match (u32::try_from(uid), u32::try_from(gid)) {
        (Ok(u), Ok(g)) => (u, g),
        _ => {
            return Err(ImageError::format(
                format!("layer entry {name:?}"),
                "uid/gid out of range",
            ))
        }
    };
    let mut xattrs = Vec::new();
    if let Some(pax) = entry.pax_extensions().map_err(|e| bad("pax records", e))? {
        for ext in pax {
            let ext = ext.map_err(|e| bad("pax records", e))?;
            let Ok(key) = ext.key() else { continue };
            if let Some(x) = key.strip_prefix(PAX_XATTR_PREFIX) {
                xattrs.push((x.to_string(), ext.value_bytes().to_vec()));
            } else if key == "mtime" {
                // PAX mtimes are decimal seconds, possibly fractional; whole seconds suffice.
                if let Some(secs) = ext
                    .value()
                    .ok()
                    .and_then(|v| v.split('.').next())
                    .and_then(|v| v.parse::<i64>().ok())
                {
                    mtime = secs;
                }
            }
        }
    }
    Ok(Meta {
        mode,
        uid,
        gid,
        mtime: TimeSpec::new(mtime, 0),
        xattrs,
    })
}

/// Splits a tar name into clean components: empty and `.` components vanish, a leading `/` is
/// dropped, `..` removes the previous component and is an error when there is none (the entry
/// would land outside the layer).
pub(crate) fn clean_path(raw: &[u8]) -> Result<Vec<OsString>, &'static str> {
    let mut out: Vec<OsString> = Vec::new();
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                if out.pop().is_none() {
                    return Err("path escapes the layer through \"..\"");
                }
            }
            c => out.push(OsString::from_vec(c.to_vec())),
        }
    }
    Ok(out)
}

fn unsafe_path(entry: &str, reason: impl Into<String>) -> ImageError {
    ImageError::UnsafePath {
        entry: entry.to_string(),
        reason: reason.into(),
    }
}

/// Opens a directory without following a symlink in its last component (or at all, for the
/// layer root which the store created itself).
fn open_dir(dir: Option<&OwnedFd>, name: &OsStr) -> nix::Result<OwnedFd> {
    let fd = openat(
        dir.map(|d| d.as_raw_fd()),
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    // SAFETY: openat just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    use tar::{EntryType, Header};

    /// A scratch area: `target/` (the layer root) and a sibling `canary/` holding one file that
    /// every escape attempt aims at; after each test canary must be exactly as it was.
    struct Scratch {
        dir: PathBuf,
        target: PathBuf,
        canary: PathBuf,
    }

    impl Scratch {
        fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "peapod-unpack-{tag}-{}",
                &crate::fsutil::new_id()[..12]
            ));
            let target = dir.join("target");
            let canary = dir.join("canary");
            fs::create_dir_all(&target).unwrap();
            fs::create_dir_all(&canary).unwrap();
            fs::write(canary.join("file"), b"canary").unwrap();
            fs::set_permissions(canary.join("file"), fs::Permissions::from_mode(0o644)).unwrap();
            Scratch {
                dir,
                target,
                canary,
            }
        }

        fn assert_nothing_outside(&self) {
            let names: Vec<_> = fs::read_dir(&self.canary)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, ["file"], "something landed in the canary dir");
            let meta = fs::metadata(self.canary.join("file")).unwrap();
            assert_eq!(meta.mode() & 0o7777, 0o644, "canary mode changed");
            assert_eq!(fs::read(self.canary.join("file")).unwrap(), b"canary");
            let mut top: Vec<_> = fs::read_dir(&self.dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            top.sort();
            assert_eq!(
                top,
                ["canary", "target"],
                "something landed next to the target"
            );
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    use std::fs;

    /// Builds tars entry by entry with raw header writes, so names the `tar` crate's safe
    /// setters would refuse (`..`, absolute) can be produced.
    struct TarBuf(tar::Builder<Vec<u8>>);

    impl TarBuf {
        fn new() -> Self {
            TarBuf(tar::Builder::new(Vec::new()))
        }

        fn raw(&mut self, name: &[u8], kind: EntryType, link: &[u8], data: &[u8], mode: u32) {
            let mut h = Header::new_gnu();
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(mode);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_000_000);
            h.set_cksum();
            self.0.append(&h, data).unwrap();
        }

        fn file(&mut self, name: &str, data: &[u8]) {
            self.raw(name.as_bytes(), EntryType::Regular, b"", data, 0o644);
        }

        fn dir(&mut self, name: &str) {
            self.raw(name.as_bytes(), EntryType::Directory, b"", b"", 0o755);
        }

        fn symlink(&mut self, name: &str, target: &str) {
            self.raw(
                name.as_bytes(),
                EntryType::Symlink,
                target.as_bytes(),
                b"",
                0o777,
            );
        }

        fn hardlink(&mut self, name: &str, target: &str) {
            self.raw(
                name.as_bytes(),
                EntryType::Link,
                target.as_bytes(),
                b"",
                0o644,
            );
        }

        /// A PAX extended header applying to the next entry.
        fn pax(&mut self, records: &[(&str, &[u8])]) {
            let mut data = Vec::new();
            for (k, v) in records {
                // "<len> <key>=<value>\n" where len counts itself.
                let body = 1 + k.len() + 1 + v.len() + 1;
                let mut len = body + 1;
                while len != body + len.to_string().len() {
                    len = body + len.to_string().len();
                }
                data.extend_from_slice(format!("{len} {k}=").as_bytes());
                data.extend_from_slice(v);
                data.push(b'\n');
            }
            self.raw(b"PaxHeader", EntryType::XHeader, b"", &data, 0o644);
        }

        fn unpack_into(self, root: &Path) -> Result<UnpackStats, ImageError> {
            let data = self.0.into_inner().unwrap();
            unpack(&data[..], root)
        }
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn dotdot_escape_is_rejected() {
        let s = Scratch::new("dotdot");
        for name in ["../escape", "a/../../escape", "../canary/file"] {
            let mut t = TarBuf::new();
            t.file(name, b"evil");
            match t.unpack_into(&s.target) {
                Err(ImageError::UnsafePath { entry, reason }) => {
                    assert_eq!(entry, name);
                    assert!(reason.contains(".."), "{reason}");
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        s.assert_nothing_outside();
    }

    #[test]
    fn harmless_dotdot_and_absolute_names_stay_inside() {
        let s = Scratch::new("abs");
        let mut t = TarBuf::new();
        t.file("/abs", b"1");
        t.file("/../../abs2", b"x"); // ".." at the root after "/" is still an escape attempt
        assert!(t.unpack_into(&s.target).is_err());

        let mut t = TarBuf::new();
        t.file("/abs", b"1");
        t.file("./a/./b/../c", b"2");
        t.file("//double//slash", b"3");
        t.unpack_into(&s.target).unwrap();
        assert_eq!(fs::read(s.target.join("abs")).unwrap(), b"1");
        assert_eq!(fs::read(s.target.join("a/c")).unwrap(), b"2");
        assert_eq!(fs::read(s.target.join("double/slash")).unwrap(), b"3");
        assert!(!s.target.join("a/b").exists());
        s.assert_nothing_outside();
    }

    #[test]
    fn symlinked_parents_resolve_inside_the_layer() {
        let s = Scratch::new("symparent");
        let unique = format!("peapod-evil-{}", &crate::fsutil::new_id()[..8]);
        let mut t = TarBuf::new();
        t.symlink("link", "/");
        t.file(&format!("link/etc/{unique}"), b"evil");
        t.symlink("up", "../../..");
        t.file("up/canary/file", b"evil");
        let abs_canary = s.canary.to_string_lossy().into_owned();
        t.symlink("abscanary", &abs_canary);
        t.file("abscanary/file", b"evil");
        t.unpack_into(&s.target).unwrap();

        // Symlinks are created as they are...
        assert_eq!(
            fs::read_link(s.target.join("link")).unwrap(),
            Path::new("/")
        );
        // ...and what was written "through" them landed inside the layer.
        assert!(!Path::new("/etc").join(&unique).exists());
        assert_eq!(
            fs::read(s.target.join("etc").join(&unique)).unwrap(),
            b"evil"
        );
        assert_eq!(fs::read(s.target.join("canary/file")).unwrap(), b"evil");
        let inside = s
            .target
            .join(abs_canary.trim_start_matches('/'))
            .join("file");
        assert_eq!(fs::read(inside).unwrap(), b"evil");
        s.assert_nothing_outside();
    }

    #[test]
    fn hardlinks_must_stay_inside() {
        let s = Scratch::new("hardlink");
        let mut t = TarBuf::new();
        t.hardlink("h", "../../outside");
        match t.unpack_into(&s.target) {
            Err(ImageError::UnsafePath { entry, reason }) => {
                assert_eq!(entry, "h");
                assert!(reason.contains("outside"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        // An absolute target means the archive member, which does not exist here.
        let canary_file = s.canary.join("file");
        let mut t = TarBuf::new();
        t.hardlink("h", canary_file.to_str().unwrap());
        assert!(matches!(
            t.unpack_into(&s.target),
            Err(ImageError::UnsafePath { .. })
        ));
        // Through a symlink planted first: resolved inside the layer, where nothing is.
        let mut t = TarBuf::new();
        t.symlink("root", "/");
        t.hardlink("h", &format!("root{}", canary_file.display()));
        assert!(matches!(
            t.unpack_into(&s.target),
            Err(ImageError::UnsafePath { .. })
        ));
        assert_eq!(fs::metadata(&canary_file).unwrap().nlink(), 1);

        // A link to a member of the layer works and shares the inode; a link to a symlink
        // links the symlink itself.
        let mut t = TarBuf::new();
        t.file("bin/busybox", b"#!");
        t.hardlink("bin/sh", "bin/busybox");
        t.hardlink("/bin/ls", "/bin/busybox");
        t.symlink("s", "/etc/passwd");
        t.hardlink("s2", "s");
        t.unpack_into(&s.target).unwrap();
        let a = fs::metadata(s.target.join("bin/busybox")).unwrap();
        assert_eq!(a.nlink(), 3);
        assert_eq!(
            fs::metadata(s.target.join("bin/sh")).unwrap().ino(),
            a.ino()
        );
        assert!(fs::symlink_metadata(s.target.join("s2"))
            .unwrap()
            .file_type()
            .is_symlink());
        s.assert_nothing_outside();
    }

    #[test]
    fn chmod_never_goes_through_a_symlink() {
        // CVE-2021-32760: a symlink entry's mode (0777) must not land on its target.
        let s = Scratch::new("chmod");
        let canary_file = s.canary.join("file");
        let mut t = TarBuf::new();
        t.symlink("s", canary_file.to_str().unwrap());
        t.raw(
            b"s2",
            EntryType::Symlink,
            canary_file.to_str().unwrap().as_bytes(),
            b"",
            0o4777,
        );
        // A file entry over the symlink replaces the link, it does not write through it.
        t.symlink("s3", canary_file.to_str().unwrap());
        t.raw(b"s3", EntryType::Regular, b"", b"new", 0o777);
        // Same for a directory entry.
        t.symlink("d", s.canary.to_str().unwrap());
        t.raw(b"d", EntryType::Directory, b"", b"", 0o777);
        t.unpack_into(&s.target).unwrap();
        assert!(fs::symlink_metadata(s.target.join("s"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(s.target.join("s3")).unwrap(), b"new");
        assert!(fs::symlink_metadata(s.target.join("d")).unwrap().is_dir());
        s.assert_nothing_outside();
    }

    #[test]
    fn entries_replace_earlier_ones() {
        let s = Scratch::new("replace");
        let mut t = TarBuf::new();
        t.file("x", b"one");
        t.file("x", b"two");
        t.dir("d");
        t.file("d/inner", b"i");
        t.file("d", b"now a file");
        t.file("f", b"file");
        t.dir("f");
        t.dir("keep");
        t.file("keep/a", b"a");
        t.dir("keep"); // a directory over a directory keeps its content
        t.unpack_into(&s.target).unwrap();
        assert_eq!(fs::read(s.target.join("x")).unwrap(), b"two");
        assert_eq!(fs::read(s.target.join("d")).unwrap(), b"now a file");
        assert!(s.target.join("f").is_dir());
        assert!(s.target.join("keep/a").exists());
        s.assert_nothing_outside();
    }

    #[test]
    fn metadata_is_preserved() {
        let s = Scratch::new("meta");
        let mut t = TarBuf::new();
        t.raw(b"dir", EntryType::Directory, b"", b"", 0o1777);
        t.raw(b"dir/suid", EntryType::Regular, b"", b"x", 0o4755);
        t.raw(b"ro", EntryType::Regular, b"", b"x", 0o400);
        t.pax(&[("uid", b"4242"), ("gid", b"4343"), ("mtime", b"1234567.5")]);
        t.raw(b"owned", EntryType::Regular, b"", b"x", 0o640);
        t.unpack_into(&s.target).unwrap();
        let dir = fs::metadata(s.target.join("dir")).unwrap();
        assert_eq!(dir.mode() & 0o7777, 0o1777);
        assert_eq!(dir.mtime(), 1_000_000, "dir mtime set after its children");
        assert_eq!(
            fs::metadata(s.target.join("dir/suid")).unwrap().mode() & 0o7777,
            0o4755
        );
        assert_eq!(
            fs::metadata(s.target.join("ro")).unwrap().mode() & 0o7777,
            0o400
        );
        let owned = fs::metadata(s.target.join("owned")).unwrap();
        assert_eq!(owned.mtime(), 1_234_567);
        if is_root() {
            assert_eq!((owned.uid(), owned.gid()), (4242, 4343));
        }
    }

    #[test]
    fn overlay_xattrs_from_the_tar_are_refused() {
        let s = Scratch::new("xattr");
        let mut t = TarBuf::new();
        t.pax(&[("SCHILY.xattr.trusted.overlay.opaque", b"y")]);
        t.dir("d");
        match t.unpack_into(&s.target) {
            Err(ImageError::UnsafePath { entry, reason }) => {
                assert_eq!(entry, "d");
                assert!(reason.contains("trusted.overlay.opaque"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(xattr_policy("security.selinux", true), XattrPolicy::Skip);
        assert_eq!(
            xattr_policy("security.capability", true),
            XattrPolicy::Apply
        );
        assert_eq!(xattr_policy("trusted.foo", false), XattrPolicy::Skip);
        assert_eq!(xattr_policy("user.foo", false), XattrPolicy::Apply);
        assert_eq!(
            xattr_policy("trusted.overlay.redirect", true),
            XattrPolicy::Refuse
        );
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        let s = Scratch::new("whiteout");
        let mut t = TarBuf::new();
        t.file("etc/old", b"replaced by a whiteout in the same layer");
        t.file("etc/.wh.old", b"");
        t.file("etc/.wh.gone", b"");
        t.file("data/.wh..wh..opq", b"");
        t.file("data/b", b"b");
        t.file("x/.wh..wh.plnk", b"");
        t.file(".wh...", b"");
        let res = t.unpack_into(&s.target);
        if !is_root() {
            assert!(matches!(res, Err(ImageError::Format { .. })), "{res:?}");
            return;
        }
        assert!(
            matches!(res, Err(ImageError::UnsafePath { .. })),
            "`.wh...` must be refused"
        );

        let mut t = TarBuf::new();
        t.file("etc/old", b"replaced by a whiteout in the same layer");
        t.file("etc/.wh.old", b"");
        t.file("etc/.wh.gone", b"");
        t.file("data/.wh..wh..opq", b"");
        t.file("data/b", b"b");
        t.file("x/.wh..wh.plnk", b"");
        let stats = t.unpack_into(&s.target).unwrap();
        assert_eq!(stats.skipped, 1);
        for name in ["etc/old", "etc/gone"] {
            let m = fs::symlink_metadata(s.target.join(name)).unwrap();
            assert!(m.file_type().is_char_device(), "{name}");
            assert_eq!(m.rdev(), 0);
        }
        assert!(!s.target.join("etc/.wh.old").exists());
        assert_eq!(
            xattr::lget(&s.target.join("data"), OVERLAY_OPAQUE_XATTR).unwrap(),
            Some(b"y".to_vec())
        );
        assert!(!s.target.join("x/.wh..wh.plnk").exists());
        s.assert_nothing_outside();
    }

    #[test]
    fn device_nodes_and_fifos() {
        let s = Scratch::new("nodes");
        let mut t = TarBuf::new();
        let mut h = Header::new_gnu();
        h.set_path("null").unwrap();
        h.set_entry_type(EntryType::Char);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        h.set_mode(0o666);
        h.set_size(0);
        h.set_cksum();
        t.0.append(&h, &b""[..]).unwrap();
        t.raw(b"fifo", EntryType::Fifo, b"", b"", 0o600);
        let stats = t.unpack_into(&s.target).unwrap();
        if !is_root() {
            assert_eq!(stats.skipped, 2);
            return;
        }
        let null = fs::symlink_metadata(s.target.join("null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), libc::makedev(1, 3));
        assert_eq!(null.mode() & 0o7777, 0o666);
        let fifo = fs::symlink_metadata(s.target.join("fifo")).unwrap();
        assert!(fifo.file_type().is_fifo());
        assert_eq!(fifo.mode() & 0o7777, 0o600);
    }

    #[test]
    fn path_cleaning() {
        let ok = |s: &str| {
            clean_path(s.as_bytes())
                .unwrap()
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/")
        };
        assert_eq!(ok("a/b"), "a/b");
        assert_eq!(ok("/a//b/./c/"), "a/b/c");
        assert_eq!(ok("a/../b"), "b");
        assert_eq!(ok("./"), "");
        assert!(clean_path(b"..").is_err());
        assert!(clean_path(b"a/../../b").is_err());
        assert!(clean_path(b"/..").is_err());
    }
}
