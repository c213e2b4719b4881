//! Small filesystem helpers shared by every module: crash-safe writes, ID checks and path
//! resolution that cannot climb out of a root (container rootfs, layer directories).

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Longest symlink chain followed while resolving inside a root, as the kernel's own limit.
const MAX_SYMLINKS: usize = 40;

/// Writes `data` to `path` so that a crash leaves either the old file or the new one, never a
/// torn mix: write a temporary sibling, fsync it, rename it over the target.
pub fn atomic_write(path: &Path, data: &[u8]) -> std::io::Result<()> {
    atomic_write_opts(path, data, true)
}

/// As [`atomic_write`]; `sync = false` skips the fsync for files on tmpfs (/run), where a crash
/// loses the whole filesystem anyway and the fsync only costs latency.
pub fn atomic_write_opts(path: &Path, data: &[u8], sync: bool) -> std::io::Result<()> {
    write_renamed(path, data, sync).map(drop)
}

/// As [`atomic_write`], with the fsync run on a blocking thread while the caller goes on: the
/// file is in place (a restarted daemon reads it) when this returns, and on disk once
/// [`Syncing::wait`] says so. For a file that only has to be durable before a later write
/// that depends on it, so that its fsync overlaps the work in between.
pub fn atomic_write_syncing(path: &Path, data: &[u8]) -> std::io::Result<Syncing> {
    let f = write_renamed(path, data, false)?;
    Ok(Syncing(tokio::task::spawn_blocking(move || f.sync_all())))
}

/// The fsync of a file [`atomic_write_syncing`] wrote.
#[must_use = "the file is durable only once wait() says so"]
pub struct Syncing(tokio::task::JoinHandle<std::io::Result<()>>);

impl Syncing {
    /// Waits for the fsync; its error if it failed.
    pub async fn wait(self) -> std::io::Result<()> {
        self.0.await.map_err(std::io::Error::other)?
    }
}

/// Writes a temporary sibling (fsync'd when `sync`) and renames it over `path`; the file
/// handle, for a later fsync.
fn write_renamed(path: &Path, data: &[u8], sync: bool) -> std::io::Result<std::fs::File> {
    let dir = path.parent().unwrap_or(Path::new("."));
    // A unique temporary name: two writers of one file must not share (and steal) a temp file.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".{}.{seq}.tmp", std::process::id()));
    let tmp = dir.join(name);
    let res = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(data)?;
        if sync {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        Ok(f)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Decodes the `\ooo` octal escapes mountinfo uses for space, tab, newline and backslash in
/// its path and option fields; anything else (a short or non-octal escape) stays as it is.
pub fn unescape_mountinfo(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && i + 3 < field.len()
            && field[i + 1..i + 4]
                .iter()
                .all(|c| (b'0'..=b'7').contains(c))
        {
            // Summed in u32: `\777` does not fit a byte and must not overflow.
            let v = field[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
            out.push(v as u8);
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    out
}

/// True when `id` is safe to use as one path component under a state directory: non-empty,
/// at most 128 bytes, only `[A-Za-z0-9_.-]`, and not `.` or `..`.
pub fn is_safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Whether `name` has the form of an ID [`new_id`] makes: 64 lowercase hex digits.
pub fn is_generated_id(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A new random 64-hex-digit ID, the form containerd and CRI-O use for sandboxes and containers.
pub fn new_id() -> String {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf).expect("the kernel's random source is unavailable");
    hex::encode(buf)
}

/// Resolves `unsafe_path` as if `root` were `/`: `..` stops at the root and every symlink met on
/// the way (absolute or relative) is followed inside the root, so the result always lies under
/// `root`. Components that do not exist yet are appended as they are. The same idea as
/// securejoin, used for image users, mount targets and working directories.
pub fn resolve_in_root(root: &Path, unsafe_path: &Path) -> std::io::Result<PathBuf> {
    let mut pending: Vec<OsString> = components(unsafe_path);
    pending.reverse(); // a stack: the next component to handle is at the end
    let mut resolved: Vec<OsString> = Vec::new();
    let mut links = 0usize;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(resolved.iter());
        candidate.push(&part);
        match std::fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(std::io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = std::fs::read_link(&candidate)?;
                if target.is_absolute() {
                    resolved.clear();
                }
                let mut more = components(&target);
                more.reverse();
                pending.extend(more);
            }
            _ => resolved.push(part),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(resolved.iter());
    Ok(out)
}

/// The normal components of `p` plus `..` markers; `/` and `.` vanish.
fn components(p: &Path) -> Vec<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// True when `p` is absolute and has no `..` component: the form required of mount targets and
/// other paths that are later joined under a root.
pub fn is_clean_absolute(p: &str) -> bool {
    let path = Path::new(p);
    path.is_absolute()
        && !path.components().any(|c| matches!(c, Component::ParentDir))
        && !p.as_bytes().contains(&0)
        && !Path::new(p).as_os_str().as_bytes().is_empty()
}

/// Space a directory tree takes, as `du` counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Allocated bytes (st_blocks × 512; a file with several hard links counted once).
    pub bytes: u64,
    /// Files, directories and links, the root included.
    pub inodes: u64,
    /// The walk stopped at its entry bound: the figures are a lower bound.
    pub truncated: bool,
}

/// Walks `root` without following symlinks or leaving its filesystem and adds up what it
/// takes. Entries that vanish meanwhile (a running container deleting files) are skipped.
/// With `max_entries`, stops after that many entries, so one tree of millions of files cannot
/// make the caller (a stats RPC) take seconds; the result then says it is `truncated`.
pub fn disk_usage(root: &Path, max_entries: Option<u64>) -> std::io::Result<DiskUsage> {
    use std::os::unix::fs::MetadataExt;
    let with_path = |p: &Path, e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("{}: {e}", p.display()))
    };
    let mut usage = DiskUsage::default();
    let mut seen: std::collections::HashSet<(u64, u64)> = std::collections::HashSet::new();
    let mut stack: Vec<PathBuf> = vec![root.to_path_buf()];
    let mut dev = None;
    while let Some(path) = stack.pop() {
        if max_entries.is_some_and(|max| usage.inodes >= max) {
            usage.truncated = true;
            break;
        }
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(with_path(&path, e)),
        };
        if *dev.get_or_insert(meta.dev()) != meta.dev() {
            continue; // a mount point inside the tree: another filesystem's usage
        }
        if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        usage.inodes += 1;
        usage.bytes += meta.blocks() * 512;
        if meta.is_dir() {
            let entries = match std::fs::read_dir(&path) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(with_path(&path, e)),
            };
            for entry in entries {
                match entry {
                    Ok(entry) => stack.push(entry.path()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(with_path(&path, e)),
                }
            }
        }
    }
    Ok(usage)
}

/// A temporary directory removed on drop, for tests across modules.
#[cfg(test)]
pub(crate) struct TempDir(pub PathBuf);

#[cfg(test)]
impl TempDir {
    pub fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!("peapod-{tag}-{}", &new_id()[..12]));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

#[cfg(test)]
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn mountinfo_fields_are_unescaped() {
        assert_eq!(unescape_mountinfo(br"/a\040b"), b"/a b");
        assert_eq!(unescape_mountinfo(br"/a\134b"), b"/a\\b");
        assert_eq!(unescape_mountinfo(br"/plain"), b"/plain");
        assert_eq!(unescape_mountinfo(br"/end\04"), b"/end\\04");
        assert_eq!(unescape_mountinfo(br"a\777"), [b'a', 0xff]);
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("peapod-fsutil-{name}-{}", new_id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let d = tmpdir("aw");
        let p = d.join("state.json");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(&d).unwrap().collect();
        assert_eq!(names.len(), 1, "temporary file left behind");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[tokio::test]
    async fn a_syncing_write_is_in_place_before_its_fsync_is_waited_for() {
        let d = tmpdir("aws");
        let p = d.join("config.pb");
        atomic_write(&p, b"old").unwrap();
        let syncing = atomic_write_syncing(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        syncing.wait().await.unwrap();
        let names: Vec<_> = std::fs::read_dir(&d).unwrap().collect();
        assert_eq!(names.len(), 1, "temporary file left behind");
        // A write that cannot happen fails at once, before any fsync is started.
        assert!(atomic_write_syncing(&d.join("missing/config.pb"), b"x").is_err());
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn ids_cannot_escape() {
        assert!(is_safe_id("abc-DEF_1.2"));
        for bad in ["", ".", "..", "a/b", "../x", "a\0b", &"x".repeat(129)] {
            assert!(!is_safe_id(bad), "{bad:?} accepted");
        }
        assert_eq!(new_id().len(), 64);
    }

    #[test]
    fn resolve_stays_inside_root() {
        let root = tmpdir("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        symlink("/", root.join("abs")).unwrap();
        symlink("../../../../", root.join("etc/up")).unwrap();
        symlink("/etc", root.join("etclink")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        assert_eq!(
            resolve_in_root(&root, Path::new("/../../etc/passwd")).unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            resolve_in_root(&root, Path::new("abs/etc/shadow")).unwrap(),
            root.join("etc/shadow")
        );
        assert_eq!(
            resolve_in_root(&root, Path::new("/etc/up/tmp")).unwrap(),
            root.join("tmp")
        );
        assert_eq!(
            resolve_in_root(&root, Path::new("/etclink/hosts")).unwrap(),
            root.join("etc/hosts")
        );
        assert!(resolve_in_root(&root, Path::new("/loop1/x")).is_err());
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn disk_usage_counts_blocks_and_inodes_once() {
        let d = TempDir::new("du");
        let root = d.0.join("upper");
        std::fs::create_dir_all(root.join("etc/sub")).unwrap();
        std::fs::write(root.join("etc/big"), vec![1u8; 1 << 20]).unwrap();
        std::fs::write(root.join("etc/sub/small"), b"x").unwrap();
        std::fs::hard_link(root.join("etc/big"), root.join("big-link")).unwrap();
        symlink("/etc/passwd", root.join("link")).unwrap();
        let u = disk_usage(&root, None).unwrap();
        // upper, etc, etc/sub, big (once for two names), small, link.
        assert_eq!((u.inodes, u.truncated), (6, false), "{u:?}");
        assert!(u.bytes >= 1 << 20 && u.bytes < 2 << 20, "{u:?}");
        let capped = disk_usage(&root, Some(3)).unwrap();
        assert_eq!((capped.inodes, capped.truncated), (3, true), "{capped:?}");
        let gone = disk_usage(&d.0.join("missing"), None).unwrap();
        assert_eq!(gone, DiskUsage::default());
    }

    #[test]
    fn clean_absolute_paths() {
        assert!(is_clean_absolute("/data/x"));
        assert!(!is_clean_absolute("data"));
        assert!(!is_clean_absolute("/data/../../etc"));
    }
}
