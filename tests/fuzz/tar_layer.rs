//! Layer tars through `image::unpack::unpack`: never a panic, and nothing written outside the
//! layer root.
//!
//! Containment of the fuzzer itself: as root the unpack does mknod, chown, trusted.* xattrs
//! and writes wherever a path leads, so a containment bug found here must not reach the host.
//! Inputs therefore run on one worker thread that has its own filesystem context
//! (`unshare(CLONE_FS)`, allowed in a threaded process) and is `chroot`ed into a private 0700
//! scratch directory holding only `target/` (the layer root) and `canary/`. Whatever escapes
//! lands in that directory, where the check after each input sees it. The jail has no
//! `/proc`, so an xattr that would be applied fails with an error (the unpack sets them
//! through `/proc/self/fd`); the refusal and skipping of xattrs is still exercised, and so is
//! applying them when the tests run as a normal user, who needs no jail: the unpack can then
//! only do what that user can, as the unit tests beside the code do.
//!
//! Disk use is bounded too: a tar can declare a huge sparse file, and gzip or zstd expand
//! small inputs a thousandfold, so the decompressed stream is capped and the process's file
//! size limit (RLIMIT_FSIZE, with SIGXFSZ ignored so a write fails with EFBIG instead) stops
//! any one file at [`MAX_FILE`].

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Mutex, Once};

use bolero::TypeGenerator;
use peapod::image::unpack::unpack;
use tar::{EntryType, Header};

use crate::{force_remove, Scratch, TEST_TIME};

/// Largest file an input may write.
const MAX_FILE: u64 = 8 << 20;
/// Largest decompressed stream read from one input.
const MAX_STREAM: u64 = 32 << 20;
const CANARY: &[u8] = b"canary";

fn limit_file_size() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        let (_, hard) = getrlimit(Resource::RLIMIT_FSIZE).unwrap();
        setrlimit(Resource::RLIMIT_FSIZE, MAX_FILE.min(hard), hard).unwrap();
        // SAFETY: SIG_IGN installs no handler code; this only turns SIGXFSZ into EFBIG.
        unsafe {
            nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGXFSZ,
                nix::sys::signal::SigHandler::SigIgn,
            )
        }
        .unwrap();
    });
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The worker thread inputs run on, and the paths as the worker sees them.
struct Jail {
    jobs: mpsc::Sender<Vec<u8>>,
    results: Mutex<mpsc::Receiver<Result<(), String>>>,
    /// The scratch directory as seen by the worker: `/` when jailed.
    base: PathBuf,
    _scratch: Scratch,
}

impl Jail {
    fn new(tag: &str) -> Jail {
        limit_file_size();
        let scratch = Scratch::new(tag);
        fs::set_permissions(&scratch.0, fs::Permissions::from_mode(0o700)).unwrap();
        let jailed = is_root();
        let base = if jailed {
            PathBuf::from("/")
        } else {
            scratch.0.clone()
        };
        let (jobs, job_rx) = mpsc::channel::<Vec<u8>>();
        let (res_tx, results) = mpsc::channel();
        let (dir, worker_base) = (scratch.0.clone(), base.clone());
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            if jailed {
                if let Err(e) = enter_jail(&dir) {
                    // Without the jail, running the inputs as root is not safe: refuse.
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            }
            let canary = Canary::make(&worker_base);
            let _ = ready_tx.send(Ok(()));
            for tar in job_rx {
                let r = std::panic::catch_unwind(|| run_one(&worker_base, &canary, &tar)).map_err(
                    |p| {
                        p.downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_else(|| "panic".into())
                    },
                );
                if res_tx.send(r).is_err() {
                    return;
                }
            }
        });
        ready_rx
            .recv()
            .unwrap()
            .expect("setting up the unpack jail");
        Jail {
            jobs,
            results: Mutex::new(results),
            base,
            _scratch: scratch,
        }
    }

    /// Runs one input; a panic in the worker (in the unpack or a failed check) becomes a
    /// panic here, where bolero sees it.
    fn run(&self, tar: Vec<u8>) {
        let results = self.results.lock().unwrap();
        self.jobs.send(tar).unwrap();
        if let Err(msg) = results.recv().unwrap() {
            panic!("{msg}");
        }
    }
}

fn enter_jail(dir: &Path) -> Result<(), String> {
    // SAFETY: unshare(CLONE_FS) only gives this thread its own root, cwd and umask.
    if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
        return Err(format!(
            "unshare(CLONE_FS): {}",
            std::io::Error::last_os_error()
        ));
    }
    nix::unistd::chroot(dir).map_err(|e| format!("chroot {}: {e}", dir.display()))?;
    nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))
}

/// The sibling directory every escape aims at, and what it looked like.
struct Canary {
    dir: PathBuf,
    dir_meta: (u32, u32, u32, u64),
    file_meta: (u32, u32, u32, u64),
}

fn ids(m: &fs::Metadata) -> (u32, u32, u32, u64) {
    (m.mode(), m.uid(), m.gid(), m.ino())
}

impl Canary {
    fn make(base: &Path) -> Canary {
        let dir = base.join("canary");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("file"), CANARY).unwrap();
        fs::set_permissions(dir.join("file"), fs::Permissions::from_mode(0o644)).unwrap();
        Canary {
            dir_meta: ids(&fs::symlink_metadata(&dir).unwrap()),
            file_meta: ids(&fs::symlink_metadata(dir.join("file")).unwrap()),
            dir,
        }
    }

    fn check(&self) {
        let d = fs::symlink_metadata(&self.dir).expect("canary dir gone");
        assert_eq!(ids(&d), self.dir_meta, "canary dir changed");
        let names: Vec<_> = fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["file"], "something landed in the canary dir");
        let f = fs::symlink_metadata(self.dir.join("file")).unwrap();
        // Type, mode, owner and inode first: reading a file that became a fifo would block.
        assert_eq!(ids(&f), self.file_meta, "canary file changed");
        assert_eq!(f.nlink(), 1, "canary file hard-linked");
        assert_eq!(fs::read(self.dir.join("file")).unwrap(), CANARY);
    }
}

fn run_one(base: &Path, canary: &Canary, tar: &[u8]) {
    let target = base.join("target");
    fs::create_dir(&target).unwrap();
    // Errors are fine (most random inputs are not tars); panics and escapes are not.
    let _ = unpack(decompress(tar), &target);
    let mut top: Vec<_> = fs::read_dir(base)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    canary.check();
    assert_eq!(
        top,
        ["canary", "target"],
        "something landed next to the layer root"
    );
    force_remove(&target);
    assert!(
        fs::symlink_metadata(&target).is_err(),
        "layer root not removed"
    );
}

/// The store's sniffing: gzip and zstd by their magic, else a plain tar; capped.
fn decompress(data: &[u8]) -> Box<dyn Read + '_> {
    let inner: Box<dyn Read> = if data.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(data))
    } else if data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        match zstd::stream::read::Decoder::new(data) {
            Ok(d) => Box::new(d),
            Err(_) => Box::new(data),
        }
    } else {
        Box::new(data)
    };
    Box::new(inner.take(MAX_STREAM))
}

#[test]
fn raw_tar() {
    let jail = Jail::new("tar");
    bolero::check!()
        .with_test_time(TEST_TIME)
        .for_each(|input: &[u8]| jail.run(input.to_vec()));
}

// ---- structured tars: entries from a small alphabet of names that collide and climb ----

#[derive(Debug, Clone, Copy, TypeGenerator)]
enum Comp {
    A,
    B,
    Dot,
    DotDot,
    Empty,
    Canary,
    Target,
    File,
    WhA,
    Opq,
    WhMeta,
}

impl Comp {
    fn as_str(self) -> &'static str {
        match self {
            Comp::A => "a",
            Comp::B => "b",
            Comp::Dot => ".",
            Comp::DotDot => "..",
            Comp::Empty => "",
            Comp::Canary => "canary",
            Comp::Target => "target",
            Comp::File => "file",
            Comp::WhA => ".wh.a",
            Comp::Opq => ".wh..wh..opq",
            Comp::WhMeta => ".wh..wh.plnk",
        }
    }
}

#[derive(Debug, TypeGenerator)]
enum Link {
    Relative(#[generator(bolero::gen::<Vec<Comp>>().with().len(0usize..5))] Vec<Comp>),
    Absolute(#[generator(bolero::gen::<Vec<Comp>>().with().len(0usize..5))] Vec<Comp>),
    /// The canary file by its absolute path as the worker sees it.
    CanaryFile,
    /// The scratch directory (the jail's `/`) by its absolute path.
    Base,
}

#[derive(Debug, TypeGenerator)]
enum Kind {
    File(u8),
    Dir,
    Symlink(Link),
    Hardlink(Link),
    Char(u8, u8),
    Block(u8, u8),
    Fifo,
    /// A type the unpack does not know ('V', a GNU volume label).
    Other,
}

#[derive(Debug, Clone, Copy, TypeGenerator)]
enum Xattr {
    None,
    User,
    Trusted,
    OverlayOpaque,
    OverlayRedirect,
    Capability,
    Selinux,
}

#[derive(Debug, TypeGenerator)]
struct Entry {
    absolute: bool,
    #[generator(bolero::gen::<Vec<Comp>>().with().len(0usize..5))]
    name: Vec<Comp>,
    kind: Kind,
    mode: u16,
    owner: u8,
    /// An xattr only for 1 in 4 entries: in the jail an applied one fails the whole unpack
    /// (see the module docs), which would otherwise cut most inputs short.
    xattr: Option<(bool, Xattr)>,
    pax_mtime: bool,
}

fn join(absolute: bool, comps: &[Comp]) -> String {
    let s: Vec<_> = comps.iter().map(|c| c.as_str()).collect();
    format!("{}{}", if absolute { "/" } else { "" }, s.join("/"))
}

fn link_target(link: &Link, base: &Path) -> String {
    match link {
        Link::Relative(c) => join(false, c),
        Link::Absolute(c) => join(true, c),
        Link::CanaryFile => base.join("canary/file").to_string_lossy().into_owned(),
        Link::Base => base.to_string_lossy().into_owned(),
    }
}

fn pax(records: &[(&str, &[u8])]) -> Vec<u8> {
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
    data
}

/// Writes entries with raw header fields, so names the `tar` crate's setters would refuse
/// (`..`, absolute) go in as they are. Names that do not fit a plain header are left out.
fn build(entries: &[Entry], base: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let name = join(e.absolute, &e.name);
        let (kind, link, data, dev) = match &e.kind {
            Kind::File(n) => (
                EntryType::Regular,
                String::new(),
                vec![b'x'; *n as usize],
                None,
            ),
            Kind::Dir => (EntryType::Directory, String::new(), vec![], None),
            Kind::Symlink(l) => (EntryType::Symlink, link_target(l, base), vec![], None),
            Kind::Hardlink(l) => (EntryType::Link, link_target(l, base), vec![], None),
            Kind::Char(ma, mi) => (EntryType::Char, String::new(), vec![], Some((*ma, *mi))),
            Kind::Block(ma, mi) => (EntryType::Block, String::new(), vec![], Some((*ma, *mi))),
            Kind::Fifo => (EntryType::Fifo, String::new(), vec![], None),
            Kind::Other => (EntryType::new(b'V'), String::new(), vec![], None),
        };
        if name.len() > 100 || link.len() > 100 {
            continue;
        }
        let mut records: Vec<(&str, &[u8])> = Vec::new();
        let xattr = match e.xattr {
            Some((true, x)) => x,
            _ => Xattr::None,
        };
        let key = match xattr {
            Xattr::None => None,
            Xattr::User => Some("SCHILY.xattr.user.fuzz"),
            Xattr::Trusted => Some("SCHILY.xattr.trusted.fuzz"),
            Xattr::OverlayOpaque => Some("SCHILY.xattr.trusted.overlay.opaque"),
            Xattr::OverlayRedirect => Some("SCHILY.xattr.trusted.overlay.redirect"),
            Xattr::Capability => Some("SCHILY.xattr.security.capability"),
            Xattr::Selinux => Some("SCHILY.xattr.security.selinux"),
        };
        if let Some(k) = key {
            records.push((k, b"y"));
        }
        if e.pax_mtime {
            records.push(("mtime", b"1234567.5"));
        }
        if !records.is_empty() {
            let data = pax(&records);
            let mut h = Header::new_ustar();
            h.as_old_mut().name[..9].copy_from_slice(b"PaxHeader");
            h.set_entry_type(EntryType::XHeader);
            h.set_size(data.len() as u64);
            h.set_cksum();
            b.append(&h, &data[..]).unwrap();
        }
        let mut h = Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(u32::from(e.mode) & 0o7777);
        h.set_uid(u64::from(e.owner));
        h.set_gid(u64::from(e.owner));
        h.set_mtime(1_000_000);
        if let Some((ma, mi)) = dev {
            h.set_device_major(u32::from(ma)).unwrap();
            h.set_device_minor(u32::from(mi)).unwrap();
        }
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn tar_entries() {
    let jail = Jail::new("tar-entries");
    // Short tars: the unpack stops at the first bad entry, so later ones would rarely run.
    bolero::check!()
        .with_generator(bolero::gen::<Vec<Entry>>().with().len(1usize..10))
        .with_test_time(TEST_TIME)
        .for_each(|entries| jail.run(build(entries, &jail.base)));
}

/// Writes the seed tars of `raw_tar` (kept in the repository):
/// `cargo test --test fuzz -- --ignored write_tar_seeds`.
#[test]
#[ignore]
fn write_tar_seeds() {
    use Comp::*;
    let e = |name: &[Comp], kind: Kind| Entry {
        absolute: false,
        name: name.to_vec(),
        kind,
        mode: 0o755,
        owner: 0,
        xattr: None,
        pax_mtime: false,
    };
    let base = Path::new("/");
    let layer = build(
        &[
            e(&[A], Kind::Dir),
            e(&[A, File], Kind::File(5)),
            e(&[A, B], Kind::Symlink(Link::Relative(vec![File]))),
            e(&[B], Kind::Hardlink(Link::Relative(vec![A, File]))),
            e(&[A, WhA], Kind::File(0)),
            e(&[B, Opq], Kind::File(0)),
            Entry {
                xattr: Some((true, Xattr::User)),
                pax_mtime: true,
                ..e(&[Target], Kind::File(1))
            },
            e(&[Canary], Kind::Fifo),
            e(&[File], Kind::Char(1, 3)),
        ],
        base,
    );
    let escapes = build(
        &[
            e(&[A], Kind::Symlink(Link::Relative(vec![DotDot, Canary]))),
            e(&[A, File], Kind::File(4)),
            e(&[B], Kind::Symlink(Link::Base)),
            e(&[B, Canary, File], Kind::File(4)),
            e(&[Target], Kind::Symlink(Link::CanaryFile)),
            e(&[Target], Kind::Dir),
            e(&[File], Kind::Hardlink(Link::Absolute(vec![Canary, File]))),
            e(&[DotDot, Canary, A], Kind::File(1)),
        ],
        base,
    );
    let mut long = tar::Builder::new(Vec::new());
    let mut h = Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_entry_type(EntryType::Regular);
    long.append_data(&mut h, "d/".repeat(80) + "f", &b"abc"[..])
        .unwrap();
    let long = long.into_inner().unwrap();

    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/__fuzz__/tar_layer__raw_tar/corpus");
    fs::create_dir_all(&dir).unwrap();
    let gz = {
        use std::io::Write;
        let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        w.write_all(&layer).unwrap();
        w.finish().unwrap()
    };
    for (name, data) in [
        ("layer.tar", layer.clone()),
        ("layer.tar.gz", gz),
        (
            "layer.tar.zst",
            zstd::stream::encode_all(&layer[..], 3).unwrap(),
        ),
        ("escapes.tar", escapes),
        ("long-name.tar", long),
    ] {
        fs::write(dir.join(name), data).unwrap();
    }
}
