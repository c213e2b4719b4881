//! Image pull in `make bench`: PullImage from a registry on 127.0.0.1 (plain HTTP) of two
//! images, peapod then containerd, beside the floor, `tar -xzf` of the same layer files one
//! after another into an empty directory:
//! - one gzip layer of 100 MiB of incompressible data (`layout::random_image`);
//! - 4 gzip layers of 42 MB each that gzip shrinks about 2:1, 84 MB gzip and 168 MB unpacked
//!   (`layout::random_image_layers`).
//!
//! Every pull goes into a store without the image: it is removed with RemoveImage after each
//! pull, and before the next the store's blob and layer (for containerd: snapshot) directories
//! must be back to what they held before the first. containerd is told that the registry is
//! plain HTTP by a hosts.toml under its `config_path` (`certs.d` in its temp dir), written here
//! once the registry's port is known: containerd reads it on every pull. Each time is the
//! median of `RUNS` runs after one warm-up run that is not counted, from the PullImage call to
//! its reply; a daemon's peak RSS is sampled every 5 ms during all of an image's pulls. The
//! registry is killed and its storage removed at the end, also from the panic hook.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use peapod::api::image_service_client::ImageServiceClient;
use peapod::api::*;
use peapod_integration::layout::{random_image, random_image_layers};
use peapod_integration::*;

use super::{median, mem_kib, mib, ms, Ctrd};

/// Counted runs per image and runtime, after one warm-up run.
const RUNS: usize = 3;

/// The registry, for the panic hook: with panic = "abort", its Drop would not run.
static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

/// Kills the registry and removes its storage, once.
pub fn teardown() {
    drop(REGISTRY.lock().unwrap_or_else(|e| e.into_inner()).take());
}

/// A pushed image: its layer files and their sizes.
struct Image {
    what: String,
    reference: String,
    layers: Vec<(PathBuf, u64)>,
    gzip: u64,
}

/// One runtime's pulls of one image.
struct Pulls {
    times: Vec<Duration>,
    /// The daemon's RSS before the image's first pull and its peak during them, KiB.
    before: u64,
    peak: u64,
}

struct Row {
    image: Image,
    peapod: Pulls,
    /// None without containerd.
    ctrd: Option<Result<Pulls, String>>,
    tar: Vec<Duration>,
}

pub struct PullFigures {
    rows: Vec<Row>,
    /// What a store still held after the last RemoveImage.
    left: Vec<String>,
}

/// A runtime's image service, daemon and store directories.
struct Store {
    img: Img,
    pid: i32,
    /// Directories whose entries are the store's blobs and layers, with their entry count
    /// before the first pull.
    dirs: Vec<(PathBuf, usize)>,
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .count()
}

impl Store {
    fn new(img: Img, pid: i32, dirs: &[PathBuf]) -> Store {
        let dirs = dirs.iter().map(|d| (d.clone(), entries(d))).collect();
        Store { img, pid, dirs }
    }

    /// Waits (up to 10 s, for a collection under way) until the store holds what it held
    /// before the first pull.
    async fn settled(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left: Vec<_> = self
                .dirs
                .iter()
                .filter(|(d, n)| entries(d) != *n)
                .map(|(d, n)| format!("{}: {} entries, {n} before", d.display(), entries(d)))
                .collect();
            if left.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("store not emptied after RemoveImage: {left:?}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One timed pull into a store without the image, then RemoveImage; the time and the peak
    /// RSS during the pull.
    async fn pull(&mut self, image: &str) -> Result<(Duration, u64), String> {
        self.settled().await?;
        let peak = Peak::start(self.pid);
        let t = Instant::now();
        let r = self
            .img
            .pull_image(PullImageRequest {
                image: Some(ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await;
        let took = t.elapsed();
        let peak = peak.stop();
        let image_ref = r
            .map_err(|e| format!("PullImage {image}: {}", e.message()))?
            .into_inner()
            .image_ref;
        self.img
            .remove_image(RemoveImageRequest {
                image: Some(ImageSpec {
                    image: image_ref,
                    ..Default::default()
                }),
            })
            .await
            .map_err(|e| format!("RemoveImage {image}: {}", e.message()))?;
        Ok((took, peak))
    }
}

/// The peak RSS of a process, sampled every 5 ms on a thread of its own until stopped.
struct Peak {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Peak {
    fn start(pid: i32) -> Peak {
        let peak = Arc::new(AtomicU64::new(mem_kib(pid).0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (peak, stop) = (peak.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(mem_kib(pid).0, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        Peak { peak, stop, thread }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        self.peak.load(Ordering::Relaxed)
    }
}

/// `tar -xzf` of each layer file in turn into `out`, which is made empty first and removed
/// after.
fn untar(layers: &[(PathBuf, u64)], out: &Path) -> Duration {
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out).unwrap();
    let t = Instant::now();
    for (layer, _) in layers {
        let st = Command::new("tar")
            .arg("-xzf")
            .arg(layer)
            .arg("-C")
            .arg(out)
            .status()
            .unwrap();
        assert!(st.success(), "tar -xzf {}", layer.display());
    }
    let took = t.elapsed();
    std::fs::remove_dir_all(out).unwrap();
    took
}

/// Tells containerd that the registry at `addr` is plain HTTP (hosts.toml under its
/// `config_path`, see `ctrd_config`).
fn ctrd_hosts(c: &Ctrd, addr: &str) -> std::io::Result<()> {
    let dir = c.dir.join("certs.d").join(addr);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("hosts.toml"),
        format!(
            "server = \"http://{addr}\"\n\n[host.\"http://{addr}\"]\n  \
             capabilities = [\"pull\", \"resolve\"]\n"
        ),
    )
}

/// An image's OCI layout, before it is pushed.
struct Layout {
    dir: PathBuf,
    tag: &'static str,
    layers: Vec<(PathBuf, u64)>,
    /// Bytes of file data in its layers.
    unpacked: u64,
}

/// The two images' layouts, made in `base`.
fn layouts(base: &Path) -> [Layout; 2] {
    let (one, four) = (base.join("one"), base.join("four"));
    [
        Layout {
            layers: vec![random_image(&one, 100 << 20)],
            dir: one,
            tag: "bench/one:1",
            unpacked: 100 << 20,
        },
        Layout {
            layers: random_image_layers(&four, &[42_000_000; 4]),
            dir: four,
            tag: "bench/four:1",
            unpacked: 4 * 42_000_000,
        },
    ]
}

/// Pushes the layouts to `reg`.
fn push(reg: &Registry, layouts: [Layout; 2]) -> Vec<Image> {
    let mut out = Vec::new();
    for l in layouts {
        reg.push_layout(&l.dir, l.tag);
        let gzip = l.layers.iter().map(|l| l.1).sum();
        let n = l.layers.len();
        out.push(Image {
            what: format!(
                "{n} layer{}, {:.0} MB gzip / {:.0} MB unpacked",
                if n == 1 { "" } else { "s" },
                gzip as f64 / 1e6,
                l.unpacked as f64 / 1e6
            ),
            reference: format!("{}/{}", reg.addr, l.tag),
            layers: l.layers,
            gzip,
        });
    }
    out
}

/// Both images, `RUNS` + 1 times each: a peapod pull, a containerd pull, the tar floor.
pub async fn bench(d: &Daemon, ctrd: Option<&Ctrd>) -> PullFigures {
    let base = d.root.parent().unwrap().join("pullbench");
    let layouts = layouts(&base);
    // Only a failed push (an assert) between here and its registration leaves the registry.
    let reg = Registry::start();
    let images = push(&reg, layouts);
    let addr = reg.addr.clone();
    *REGISTRY.lock().unwrap() = Some(reg);

    let images_dir = d.root.join("images");
    let mut peapod = Store::new(
        d.img().await,
        d.pid().unwrap() as i32,
        &[images_dir.join("blobs/sha256"), images_dir.join("layers")],
    );
    let mut containerd = match ctrd {
        Some(c) => Some(ctrd_store(c, &addr).await),
        None => None,
    };
    let out = base.join("untar");
    let mut rows = Vec::new();
    for image in images {
        let mut p = Pulls::new(peapod.pid);
        let mut c = containerd
            .as_ref()
            .map(|r| r.as_ref().map(|s| Pulls::new(s.pid)).map_err(Clone::clone));
        let mut tar = Vec::new();
        for run in 0..=RUNS {
            let counted = run > 0;
            let (took, peak) = peapod.pull(&image.reference).await.expect("peapod pull");
            p.add(counted, took, peak);
            if let (Some(Ok(s)), Some(Ok(f))) = (containerd.as_mut(), c.as_mut()) {
                match s.pull(&image.reference).await {
                    Ok((took, peak)) => f.add(counted, took, peak),
                    Err(e) => c = Some(Err(e)),
                }
            }
            let took = untar(&image.layers, &out);
            if counted {
                tar.push(took);
            }
        }
        rows.push(Row {
            image,
            peapod: p,
            ctrd: c,
            tar,
        });
    }
    let mut left = Vec::new();
    if let Err(e) = peapod.settled().await {
        left.push(format!("peapod: {e}"));
    }
    if let Some(Err(e)) = match &containerd {
        Some(Ok(s)) => Some(s.settled().await),
        _ => None,
    } {
        left.push(format!("containerd: {e}"));
    }
    teardown();
    let _ = std::fs::remove_dir_all(&base);
    PullFigures { rows, left }
}

/// containerd's store, once it knows the registry is plain HTTP.
async fn ctrd_store(c: &Ctrd, addr: &str) -> Result<Store, String> {
    ctrd_hosts(c, addr).map_err(|e| format!("writing hosts.toml: {e}"))?;
    let ch = channel(&c.sock).await.map_err(|e| e.to_string())?;
    let root = c.dir.join("root");
    Ok(Store::new(
        ImageServiceClient::new(ch),
        c.pid(),
        &[
            root.join("io.containerd.content.v1.content/blobs/sha256"),
            root.join("io.containerd.snapshotter.v1.overlayfs/snapshots"),
        ],
    ))
}

impl Pulls {
    fn new(pid: i32) -> Pulls {
        let before = mem_kib(pid).0;
        Pulls {
            times: Vec::new(),
            before,
            peak: before,
        }
    }

    fn add(&mut self, counted: bool, took: Duration, peak: u64) {
        if counted {
            self.times.push(took);
        }
        self.peak = self.peak.max(peak);
    }
}

pub fn print(f: &PullFigures, ctrd_version: Option<&str>) {
    let with_ctrd = f.rows.iter().any(|r| r.ctrd.is_some());
    let ratio = |a: Duration, b: Duration| format!("{:.2}", a.as_secs_f64() / b.as_secs_f64());
    let rate = |d: Duration, bytes: u64| {
        format!(
            "{} ({:.0} MB/s)",
            ms(d),
            bytes as f64 / 1e6 / d.as_secs_f64()
        )
    };
    println!(
        "\nimage pull from a registry on 127.0.0.1 (plain HTTP), each pull into a store without \
         the image{}; median of {RUNS} after 1 uncounted warm-up; MB/s of gzip data",
        match ctrd_version {
            Some(v) if with_ctrd => format!(", beside {v}"),
            _ => String::new(),
        }
    );
    let mut failures = Vec::new();
    if with_ctrd {
        println!(
            "| what | peapod | containerd | peapod / containerd | tar -xzf of the layer files \
             in turn (floor) | peapod / tar |"
        );
        println!("|---|---|---|---|---|---|");
    } else {
        println!("| what | peapod | tar -xzf of the layer files in turn (floor) | peapod / tar |");
        println!("|---|---|---|---|");
    }
    for r in &f.rows {
        let (p, t) = (median(r.peapod.times.clone()), median(r.tar.clone()));
        let gz = r.image.gzip;
        let ctrd = match &r.ctrd {
            Some(Ok(c)) => {
                let c = median(c.times.clone());
                Some((rate(c, gz), ratio(p, c)))
            }
            Some(Err(e)) => {
                failures.push(format!("containerd, {}: {e}", r.image.what));
                Some(("failed".into(), "-".into()))
            }
            None => None,
        };
        let what = format!("PullImage, {}", r.image.what);
        match ctrd {
            Some((c, cr)) => println!(
                "| {what} | {} | {c} | {cr} | {} | {} |",
                rate(p, gz),
                rate(t, gz),
                ratio(p, t)
            ),
            None => println!(
                "| {what} | {} | {} | {} |",
                rate(p, gz),
                rate(t, gz),
                ratio(p, t)
            ),
        }
    }
    for r in &f.rows {
        let mem = |p: &Pulls| format!("{} / {}", mib(p.before), mib(p.peak));
        let what = format!(
            "daemon RSS before / peak during the pulls, {} layer{}",
            r.image.layers.len(),
            if r.image.layers.len() == 1 { "" } else { "s" }
        );
        match &r.ctrd {
            Some(c) => {
                let (c, cr) = match c {
                    Ok(c) => (
                        mem(c),
                        format!("{:.2}", r.peapod.peak as f64 / c.peak.max(1) as f64),
                    ),
                    Err(_) => ("failed".into(), "-".into()),
                };
                println!("| {what} | {} | {c} | {cr} (peaks) | | |", mem(&r.peapod));
            }
            None => println!("| {what} | {} | | |", mem(&r.peapod)),
        }
    }
    for e in failures.iter().chain(&f.left) {
        println!("{e}");
    }
}
