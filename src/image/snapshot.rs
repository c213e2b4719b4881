//! Container root filesystems as overlay mounts over the store's layer directories.
//!
//! Every rootfs is an overlay, even for a single-layer image: the container's writes land in
//! its own `upper` directory and never in a shared layer.
//!
//! Mount data is limited to one page (4096 bytes on x86-64 and arm64). With absolute store
//! paths (`/var/lib/peapod/images/layers/<64 hex>/diff`, ~100 bytes each) that allows around 40
//! layers, so when the absolute form is too long the layers are given relative to their common
//! parent directory (`<64 hex>/diff`, 70 bytes each: about 57 layers), the trick containerd
//! uses. The mount then runs on a short-lived thread that unshared its filesystem attributes
//! (`unshare(CLONE_FS)`), so its `chdir` does not move the working directory of the rest of
//! the process. Images with more layers than that get a clear error.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::{ImageError, IoContext};

/// Mounts an overlay at `target` with `lowers` (topmost first, as
/// [`ImageStore::layer_dirs`](super::ImageStore::layer_dirs) returns them) under a writable
/// `upper`, creating `upper`, `work` and `target` when missing. `upper` and `work` must be on
/// the same filesystem.
pub fn mount_rootfs(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), ImageError> {
    if lowers.is_empty() {
        return Err(ImageError::format(
            format!("rootfs {}", target.display()),
            "an image without layers has no root filesystem",
        ));
    }
    for p in lowers
        .iter()
        .map(PathBuf::as_path)
        .chain([upper, work, target])
    {
        check_option_path(p, target)?;
    }
    for dir in [upper, work, target] {
        fs::create_dir_all(dir).at(dir)?;
    }
    // Idempotent for retries (a CreateContainer repeated after a crash): our overlay with the
    // same upper directory already being there is success; anything else there is an error,
    // since mounting on top would hide it.
    if let Some((fstype, opts)) = mount_at(target)? {
        let ours = format!("upperdir={}", upper.display());
        if fstype == "overlay" && opts.split(',').any(|o| o == ours) {
            tracing::debug!(target = %target.display(), "rootfs already mounted");
            return Ok(());
        }
        return Err(ImageError::format(
            format!("rootfs {}", target.display()),
            format!("something else ({fstype}) is already mounted there"),
        ));
    }

    let tail = format!(",upperdir={},workdir={}", upper.display(), work.display());
    let absolute = format!(
        "lowerdir={}{tail}",
        join_lowers(lowers.iter().map(|p| p.as_os_str()))
    );
    if absolute.len() < page_size() {
        return mount_overlay(target, &absolute).at(target);
    }

    // Too long: give the lower layers relative to their common parent.
    let base = common_parent(lowers).ok_or_else(|| {
        ImageError::format(
            format!("rootfs {}", target.display()),
            format!(
                "mount options are {} bytes, over the {}-byte limit, and the layers share no \
                 parent directory",
                absolute.len(),
                page_size()
            ),
        )
    })?;
    let rel: Vec<&OsStr> = lowers
        .iter()
        .map(|p| {
            p.strip_prefix(&base)
                .map(|r| r.as_os_str())
                .unwrap_or(p.as_os_str())
        })
        .collect();
    let relative = format!("lowerdir={}{tail}", join_lowers(rel.into_iter()));
    if relative.len() >= page_size() {
        return Err(ImageError::format(
            format!("rootfs {}", target.display()),
            format!(
                "{} layers need {} bytes of mount options even with relative paths; the kernel \
                 takes at most {}",
                lowers.len(),
                relative.len(),
                page_size() - 1
            ),
        ));
    }
    // Upper, work and target are absolute, so only the lower layers depend on the cwd.
    let (upper_abs, work_abs, target_abs) = (
        upper.is_absolute(),
        work.is_absolute(),
        target.is_absolute(),
    );
    if !(upper_abs && work_abs && target_abs) {
        return Err(ImageError::format(
            format!("rootfs {}", target.display()),
            "upper, work and target must be absolute paths when the layers are given relatively",
        ));
    }
    let target_owned = target.to_path_buf();
    let handle = std::thread::spawn(move || -> io::Result<()> {
        // This thread's cwd becomes its own, so the chdir below is invisible to other threads.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)?;
        std::env::set_current_dir(&base)?;
        mount_overlay(&target_owned, &relative)
    });
    match handle.join() {
        Ok(res) => res.at(target),
        Err(_) => Err(ImageError::format(
            format!("rootfs {}", target.display()),
            "the mount thread panicked",
        )),
    }
}

fn mount_overlay(target: &Path, data: &str) -> io::Result<()> {
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data),
    )
    .map_err(io::Error::from)
}

/// Unmounts the rootfs at `target`. Idempotent: a target that is not mounted (or does not
/// exist) is fine. A busy mount (a process still has its cwd there) is detached lazily rather
/// than leaked; the kernel finishes the unmount when the last user goes.
pub fn unmount_rootfs(target: &Path) -> Result<(), ImageError> {
    match umount2(target, MntFlags::empty()) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EBUSY) => {
            tracing::warn!(target = %target.display(), "rootfs busy, detaching it");
            umount2(target, MntFlags::MNT_DETACH).at(target)
        }
        Err(e) => Err(e).at(target),
    }
}

/// True when something is mounted exactly at `target`, per `/proc/self/mountinfo`.
pub fn is_mounted(target: &Path) -> Result<bool, ImageError> {
    Ok(mount_at(target)?.is_some())
}

/// The topmost mount at `target`, as `(fstype, super options)` from `/proc/self/mountinfo`.
fn mount_at(target: &Path) -> Result<Option<(String, String)>, ImageError> {
    let target = match fs::canonicalize(target) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at(target),
    };
    let info = Path::new("/proc/self/mountinfo");
    let text = fs::read(info).at(info)?;
    // Lines are in mount order, so the last match is the mount on top: search from the end.
    Ok(text
        .rsplit(|&b| b == b'\n')
        .filter_map(parse_mountinfo_line)
        .find(|(mp, _, _)| mp.as_slice() == target.as_os_str().as_bytes())
        .map(|(_, fstype, opts)| (fstype, opts)))
}

/// `(mount point, fstype, super options)` of one mountinfo line: fields 5, and the first and
/// third after the ` - ` separator (the optional fields before it vary in number).
fn parse_mountinfo_line(line: &[u8]) -> Option<(Vec<u8>, String, String)> {
    let text = std::str::from_utf8(line).ok()?;
    let (head, tail) = text.split_once(" - ")?;
    let mount_point = crate::fsutil::unescape_mountinfo(head.split(' ').nth(4)?.as_bytes());
    let mut tail = tail.split(' ');
    let fstype = tail.next()?.to_string();
    let _source = tail.next()?;
    let opts = String::from_utf8_lossy(&crate::fsutil::unescape_mountinfo(tail.next()?.as_bytes()))
        .into_owned();
    Some((mount_point, fstype, opts))
}

/// overlayfs splits `lowerdir` on `:` and the whole option string on `,`; paths containing
/// either (or a backslash, its escape character) are refused rather than escaped.
fn check_option_path(p: &Path, target: &Path) -> Result<(), ImageError> {
    let bytes = p.as_os_str().as_bytes();
    if bytes.is_empty() || bytes.iter().any(|b| matches!(b, b',' | b':' | b'\\')) {
        return Err(ImageError::format(
            format!("rootfs {}", target.display()),
            format!(
                "path {} cannot be used in overlay mount options",
                p.display()
            ),
        ));
    }
    Ok(())
}

fn join_lowers<'a>(lowers: impl Iterator<Item = &'a OsStr>) -> String {
    lowers
        .map(|p| p.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

/// The deepest directory containing every path (`layers/` for store layers).
fn common_parent(paths: &[PathBuf]) -> Option<PathBuf> {
    let mut common: PathBuf = paths.first()?.parent()?.to_path_buf();
    for p in &paths[1..] {
        while !p.starts_with(&common) {
            common = common.parent()?.to_path_buf();
        }
    }
    (common.is_absolute() && common != Path::new("/")).then_some(common)
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_unescaping() {}

    #[test]
    fn common_parent_of_layers() {
        let l = |s: &str| PathBuf::from(s);
        assert_eq!(
            common_parent(&[l("/s/layers/a/diff"), l("/s/layers/b/diff")]),
            Some(l("/s/layers"))
        );
        assert_eq!(
            common_parent(&[l("/s/layers/a/diff")]),
            Some(l("/s/layers/a"))
        );
        assert_eq!(common_parent(&[l("/x/a"), l("/y/b")]), None);
    }

    #[test]
    fn bad_option_paths_are_refused() {
        let r = mount_rootfs(
            &[PathBuf::from("/tmp/a:b")],
            Path::new("/tmp/u"),
            Path::new("/tmp/w"),
            Path::new("/tmp/t"),
        );
        assert!(matches!(r, Err(ImageError::Format { .. })), "{r:?}");
    }

    #[test]
    fn mountinfo_lines() {
        let line = b"36 35 98:0 /mnt1 /mnt\\040x rw,noatime master:1 shared:2 - overlay overlay rw,lowerdir=/a:/b,upperdir=/u,workdir=/w";
        let (mp, fstype, opts) = parse_mountinfo_line(line).unwrap();
        assert_eq!(mp, b"/mnt x");
        assert_eq!(fstype, "overlay");
        assert_eq!(opts, "rw,lowerdir=/a:/b,upperdir=/u,workdir=/w");
        assert!(parse_mountinfo_line(b"").is_none());
    }

    /// Many layers with long absolute paths: the relative-path fallback must mount them, and
    /// the process' working directory must not move.
    #[test]
    fn many_layers_mount_with_relative_paths() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping: mounting needs root");
            return;
        }
        let d =
            std::env::temp_dir().join(format!("peapod-many-{}", &crate::fsutil::new_id()[..12]));
        let layers = d.join("layers");
        let mut lowers = Vec::new();
        for i in 0..45 {
            let diff = layers.join(format!("{i:0>64}")).join("diff");
            fs::create_dir_all(&diff).unwrap();
            fs::write(diff.join(format!("f{i}")), b"x").unwrap();
            fs::write(diff.join("top"), format!("{i}")).unwrap();
            lowers.push(diff);
        }
        lowers.reverse(); // topmost first: layer 44
        let absolute: usize = lowers.iter().map(|l| l.as_os_str().len() + 1).sum();
        assert!(
            absolute > page_size(),
            "the test must exceed the page limit"
        );
        let cwd = std::env::current_dir().unwrap();
        let (upper, work, target) = (d.join("upper"), d.join("work"), d.join("rootfs"));
        mount_rootfs(&lowers, &upper, &work, &target).unwrap();
        // Mounting again with the same upper is a no-op, not a second overlay.
        mount_rootfs(&lowers, &upper, &work, &target).unwrap();
        let res = std::panic::catch_unwind(|| {
            assert_eq!(std::env::current_dir().unwrap(), cwd);
            assert!(target.join("f0").exists() && target.join("f44").exists());
            assert_eq!(fs::read_to_string(target.join("top")).unwrap(), "44");
            // A different upper on the same target is refused.
            let other = mount_rootfs(&lowers, &d.join("u2"), &d.join("w2"), &target);
            assert!(matches!(other, Err(ImageError::Format { .. })), "{other:?}");
        });
        unmount_rootfs(&target).unwrap();
        assert!(!is_mounted(&target).unwrap());
        fs::remove_dir_all(&d).unwrap();
        if let Err(p) = res {
            std::panic::resume_unwind(p);
        }
        // Too many layers even for relative paths: a clear error, nothing mounted.
        let too_many: Vec<PathBuf> = (0..80)
            .map(|i| PathBuf::from(format!("/nonexistent/layers/{i:0>64}/diff")))
            .collect();
        let t2 = d.join("t2");
        let r = mount_rootfs(&too_many, &d.join("u"), &d.join("w"), &t2);
        assert!(
            matches!(r, Err(ImageError::Format { ref reason, .. }) if reason.contains("layers need")),
            "{r:?}"
        );
        assert!(!is_mounted(&t2).unwrap());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn unmounting_what_is_not_mounted_is_ok() {
        let d = std::env::temp_dir().join(format!("peapod-umount-{}", crate::fsutil::new_id()));
        unmount_rootfs(&d).unwrap(); // does not exist
        fs::create_dir_all(&d).unwrap();
        unmount_rootfs(&d).unwrap(); // exists, not a mount point
        assert!(!is_mounted(&d).unwrap());
        assert!(is_mounted(Path::new("/")).unwrap());
        fs::remove_dir_all(&d).unwrap();
    }
}
