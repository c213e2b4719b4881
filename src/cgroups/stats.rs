//! Usage counters of one cgroup, for the CRI stats RPCs: CPU time, memory, tasks and
//! processes, from the files of cgroup v1 (the cpuacct, cpu, memory and pids hierarchies) or
//! v2 (one directory).
//!
//! Pure parsers, tested on captured file contents, turn the files into [`CgroupStats`]; the
//! reader around them takes a missing file or directory as "not there" (None), never as an
//! error: a container that exits in the middle of a stats call takes its cgroup with it, and
//! the call must still answer for the others.
//!
//! The figures are those containerd and cAdvisor report: working set = usage − inactive file
//! cache (v1 `total_inactive_file`, v2 `inactive_file`); RSS is v1 `total_rss`, v2 `anon`;
//! v1 uses the hierarchical `total_*` keys, so a pod's cgroup counts its containers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{collect_procs, Cgroups};
use crate::config::CgroupDriver;

/// A limit at or above this is no limit: cgroup v1 writes "unlimited" as the largest
/// page-aligned i64 (9223372036854771712), and the kernel rounds what it is given (the
/// threshold containerd and cAdvisor use).
const UNLIMITED: u64 = 1 << 62;

/// Cumulative CPU time of the cgroup's tasks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuStat {
    /// All CPU time, in nanoseconds (v1 cpuacct.usage, v2 usage_usec).
    pub usage_ns: u64,
    pub user_ns: u64,
    pub system_ns: u64,
    /// CFS bandwidth control: enforcement periods elapsed, those throttled, time throttled.
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_ns: u64,
}

/// Memory charged to the cgroup, in bytes, and its events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStat {
    /// Everything charged, page cache included (v1 usage_in_bytes, v2 memory.current).
    pub usage: u64,
    /// usage − inactive file cache, never below 0: what the kernel cannot easily reclaim, the
    /// figure kubelet evicts on.
    pub working_set: u64,
    /// Anonymous memory (v1 total_rss, v2 anon).
    pub rss: u64,
    /// Page cache (v1 total_cache, v2 file).
    pub cache: u64,
    pub mapped_file: u64,
    pub active_file: u64,
    pub inactive_file: u64,
    pub swap: u64,
    /// Kernel memory (v1 kmem.usage_in_bytes, v2 kernel, or kernel_stack + slab before 5.18).
    pub kernel: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
    /// The hard limit; None when there is none.
    pub limit: Option<u64>,
    /// The highest usage seen (v1 max_usage_in_bytes, v2 memory.peak since 5.19).
    pub max_usage: Option<u64>,
    /// Times usage hit the limit (v1 failcnt, v2 memory.events `max`).
    pub failcnt: u64,
    /// Processes the OOM killer killed in the cgroup.
    pub oom_kills: u64,
}

impl MemoryStat {
    /// limit − working set when limited (CRI's available_bytes), else None.
    pub fn available(&self) -> Option<u64> {
        self.limit.map(|l| l.saturating_sub(self.working_set))
    }
}

/// The pids controller's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PidsStat {
    /// Tasks (threads) in the cgroup and below: what pids.max limits.
    pub current: u64,
    /// pids.max; None when unlimited.
    pub limit: Option<u64>,
}

/// What could be read of one cgroup; each part is None when its files are not there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupStats {
    pub cpu: Option<CpuStat>,
    pub memory: Option<MemoryStat>,
    pub pids: Option<PidsStat>,
    /// Processes (not threads) in the cgroup and below, counted from cgroup.procs.
    pub processes: Option<u64>,
}

impl Cgroups {
    /// The counters of the cgroup at `path`, as recorded (a cgroupfs path, or with the systemd
    /// driver a slice or `slice:prefix:name`). Never fails: what is gone is None.
    pub fn stats(&self, path: &str) -> CgroupStats {
        let rel = relative_dir(self.driver, path);
        if self.unified {
            return read_v2(&self.root.join(&rel));
        }
        let dir = |controller: &str| self.v1_controllers.get(controller).map(|m| m.join(&rel));
        let procs_dir = ["pids", "memory", "cpuacct"].iter().find_map(|c| dir(c));
        CgroupStats {
            cpu: dir("cpuacct").and_then(|d| read_cpu_v1(&d, dir("cpu").as_deref())),
            memory: dir("memory").and_then(|d| read_memory_v1(&d)),
            pids: dir("pids").and_then(|d| read_pids(&d)),
            processes: procs_dir.and_then(|d| count_processes(&d)),
        }
    }
}

fn read(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file)).ok()
}

fn read_v2(dir: &Path) -> CgroupStats {
    CgroupStats {
        cpu: read(dir, "cpu.stat").and_then(|t| cpu_v2(&parse_flat(&t))),
        memory: read_memory_v2(dir),
        pids: read_pids(dir),
        processes: count_processes(dir),
    }
}

fn read_cpu_v1(cpuacct: &Path, cpu: Option<&Path>) -> Option<CpuStat> {
    let usage = parse_value(&read(cpuacct, "cpuacct.usage")?)?;
    let acct = read(cpuacct, "cpuacct.stat").unwrap_or_default();
    let throttling = cpu.and_then(|d| read(d, "cpu.stat")).unwrap_or_default();
    Some(cpu_v1(
        usage,
        &parse_flat(&acct),
        &parse_flat(&throttling),
        clock_ticks(),
    ))
}

fn read_memory_v1(dir: &Path) -> Option<MemoryStat> {
    let usage = parse_value(&read(dir, "memory.usage_in_bytes")?)?;
    let limit = read(dir, "memory.limit_in_bytes").and_then(|t| parse_limit(&t));
    let stat = read(dir, "memory.stat").unwrap_or_default();
    let mut m = memory_v1(usage, limit, &parse_flat(&stat));
    let value = |f: &str| read(dir, f).and_then(|t| parse_value(&t));
    m.max_usage = value("memory.max_usage_in_bytes");
    m.failcnt = value("memory.failcnt").unwrap_or(0);
    m.kernel = value("memory.kmem.usage_in_bytes").unwrap_or(0);
    m.oom_kills = read(dir, "memory.oom_control")
        .and_then(|t| parse_flat(&t).get("oom_kill").copied())
        .unwrap_or(0);
    Some(m)
}

fn read_memory_v2(dir: &Path) -> Option<MemoryStat> {
    let current = parse_value(&read(dir, "memory.current")?)?;
    let max = read(dir, "memory.max").and_then(|t| parse_limit(&t));
    let stat = read(dir, "memory.stat").unwrap_or_default();
    let events = read(dir, "memory.events").unwrap_or_default();
    let mut m = memory_v2(current, max, &parse_flat(&stat), &parse_flat(&events));
    let value = |f: &str| read(dir, f).and_then(|t| parse_value(&t));
    m.max_usage = value("memory.peak");
    m.swap = value("memory.swap.current").unwrap_or(0);
    Some(m)
}

fn read_pids(dir: &Path) -> Option<PidsStat> {
    let current = parse_value(&read(dir, "pids.current")?)?;
    let limit = read(dir, "pids.max").and_then(|t| parse_limit(&t));
    Some(PidsStat { current, limit })
}

/// Processes listed in `dir`'s cgroup.procs and its descendants'; None when `dir` is gone.
fn count_processes(dir: &Path) -> Option<u64> {
    if !dir.is_dir() {
        return None;
    }
    let mut pids = Vec::new();
    collect_procs(dir, &mut pids);
    Some(pids.len() as u64)
}

/// USER_HZ, the unit of cpuacct.stat.
fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a system constant; no memory is shared.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as u64
    } else {
        100
    }
}

/// The `key value` lines of a flat-keyed file (memory.stat, cpu.stat, cpuacct.stat,
/// memory.events, memory.oom_control); lines that do not parse are skipped.
pub fn parse_flat(text: &str) -> HashMap<&str, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let key = it.next()?;
            let value = it.next()?.parse().ok()?;
            Some((key, value))
        })
        .collect()
}

/// A file holding one number (memory.current, cpuacct.usage, pids.current).
pub fn parse_value(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// A limit file (memory.max, memory.limit_in_bytes, pids.max): None for "max" (v2), for a
/// value at or above [`UNLIMITED`] (v1) and for anything that does not parse.
pub fn parse_limit(text: &str) -> Option<u64> {
    parse_value(text).filter(|v| *v < UNLIMITED)
}

/// CPU from cgroup v1: cpuacct.usage (ns), cpuacct.stat (user and system in USER_HZ ticks) and
/// the cpu controller's cpu.stat (throttling, in ns).
pub fn cpu_v1(
    usage_ns: u64,
    acct: &HashMap<&str, u64>,
    cpu: &HashMap<&str, u64>,
    ticks_per_second: u64,
) -> CpuStat {
    let ticks_ns = |k: &str| {
        acct.get(k)
            .copied()
            .unwrap_or(0)
            .saturating_mul(1_000_000_000)
            / ticks_per_second.max(1)
    };
    let get = |k: &str| cpu.get(k).copied().unwrap_or(0);
    CpuStat {
        usage_ns,
        user_ns: ticks_ns("user"),
        system_ns: ticks_ns("system"),
        periods: get("nr_periods"),
        throttled_periods: get("nr_throttled"),
        throttled_ns: get("throttled_time"),
    }
}

/// CPU from cgroup v2's cpu.stat (microseconds); None without usage_usec.
pub fn cpu_v2(stat: &HashMap<&str, u64>) -> Option<CpuStat> {
    let us = |k: &str| stat.get(k).copied().unwrap_or(0).saturating_mul(1000);
    Some(CpuStat {
        usage_ns: stat.get("usage_usec")?.saturating_mul(1000),
        user_ns: us("user_usec"),
        system_ns: us("system_usec"),
        periods: stat.get("nr_periods").copied().unwrap_or(0),
        throttled_periods: stat.get("nr_throttled").copied().unwrap_or(0),
        throttled_ns: us("throttled_usec"),
    })
}

/// Memory from cgroup v1: usage_in_bytes, the parsed limit and memory.stat's hierarchical
/// `total_*` keys (the plain keys where a kernel lacks them). The reader adds max usage,
/// failcnt, kernel memory and OOM kills from their own files.
pub fn memory_v1(usage: u64, limit: Option<u64>, stat: &HashMap<&str, u64>) -> MemoryStat {
    let get = |k: &str| {
        stat.get(format!("total_{k}").as_str())
            .or_else(|| stat.get(k))
            .copied()
            .unwrap_or(0)
    };
    let inactive_file = get("inactive_file");
    MemoryStat {
        usage,
        working_set: usage.saturating_sub(inactive_file),
        rss: get("rss"),
        cache: get("cache"),
        mapped_file: get("mapped_file"),
        active_file: get("active_file"),
        inactive_file,
        swap: get("swap"),
        page_faults: get("pgfault"),
        major_page_faults: get("pgmajfault"),
        limit,
        ..MemoryStat::default()
    }
}

/// Memory from cgroup v2: memory.current, the parsed memory.max, memory.stat and
/// memory.events. The reader adds the peak and swap from their own files.
pub fn memory_v2(
    current: u64,
    max: Option<u64>,
    stat: &HashMap<&str, u64>,
    events: &HashMap<&str, u64>,
) -> MemoryStat {
    let get = |k: &str| stat.get(k).copied().unwrap_or(0);
    let inactive_file = get("inactive_file");
    MemoryStat {
        usage: current,
        working_set: current.saturating_sub(inactive_file),
        rss: get("anon"),
        cache: get("file"),
        mapped_file: get("file_mapped"),
        active_file: get("active_file"),
        inactive_file,
        kernel: stat
            .get("kernel")
            .copied()
            .unwrap_or_else(|| get("kernel_stack") + get("slab")),
        page_faults: get("pgfault"),
        major_page_faults: get("pgmajfault"),
        limit: max,
        failcnt: events.get("max").copied().unwrap_or(0),
        oom_kills: events.get("oom_kill").copied().unwrap_or(0),
        ..MemoryStat::default()
    }
}

/// The mount point of each cgroup v1 controller under `root`, from /proc/self/mountinfo
/// (`... /sys/fs/cgroup/cpu,cpuacct ... - cgroup cgroup rw,cpu,cpuacct`): each controller named
/// in a v1 mount's super options maps to that mount.
pub fn v1_controller_mounts(mountinfo: &str, root: &Path) -> HashMap<String, PathBuf> {
    let mut out = HashMap::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mut post = post.split_whitespace();
        if post.next() != Some("cgroup") {
            continue;
        }
        let (Some(_source), Some(opts)) = (post.next(), post.next()) else {
            continue;
        };
        let Some(mnt) = pre.split_whitespace().nth(4).map(PathBuf::from) else {
            continue;
        };
        if mnt.parent() != Some(root) {
            continue;
        }
        for opt in opts.split(',') {
            out.entry(opt.to_string()).or_insert_with(|| mnt.clone());
        }
    }
    out
}

/// The directory of a recorded cgroup path relative to a hierarchy's root. cgroupfs paths are
/// used as they are; the systemd driver's are expanded as systemd lays them out: a slice
/// `a-b.slice` lives in `a.slice/a-b.slice`, and `slice:prefix:name` is the scope
/// `prefix-name.scope` in that slice.
pub fn relative_dir(driver: CgroupDriver, path: &str) -> PathBuf {
    if driver == CgroupDriver::Cgroupfs {
        return PathBuf::from(path.trim_start_matches('/'));
    }
    let mut parts = path.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(slice), Some(prefix), Some(name)) => {
            expand_slice(slice).join(format!("{prefix}-{name}.scope"))
        }
        _ => expand_slice(path),
    }
}

fn expand_slice(slice: &str) -> PathBuf {
    let Some(stem) = slice.strip_suffix(".slice") else {
        return PathBuf::from(slice.trim_start_matches('/'));
    };
    let mut out = PathBuf::new();
    if stem == "-" || stem.is_empty() {
        return out; // the root slice
    }
    let mut prefix = String::new();
    for part in stem.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        out.push(format!("{prefix}.slice"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured on a cgroup v1 host (kernel 6.18): /sys/fs/cgroup/memory/memory.stat.
    const V1_MEMORY_STAT: &str = "cache 11014144
rss 5869568
rss_huge 0
shmem 9580544
mapped_file 8110080
dirty 57344
writeback 0
workingset_refault_anon 0
workingset_refault_file 2028
swap 0
swapcached 0
pgpgin 28928
pgpgout 24806
pgfault 32821
pgmajfault 0
inactive_anon 0
active_anon 1531904
inactive_file 106496
active_file 1327104
unevictable 13918208
hierarchical_memory_limit 9223372036854771712
hierarchical_memsw_limit 9223372036854771712
total_cache 7238467584
total_rss 2070790144
total_rss_huge 1287651328
total_shmem 9580544
total_mapped_file 266362880
total_dirty 50114560
total_writeback 0
total_workingset_refault_anon 0
total_workingset_refault_file 2116111
total_swap 0
total_swapcached 0
total_pgpgin 86477601
total_pgpgout 85032831
total_pgfault 100936606
total_pgmajfault 29990
total_inactive_anon 2064617472
total_active_anon 1658880
total_inactive_file 4650770432
total_active_file 2578116608
total_unevictable 13918208
";

    // The same host: a cgroup's cpuacct.stat, cpu.stat (throttling figures filled in) and the
    // cgroup lines of mountinfo (plus a co-mounted net_cls,net_prio as other hosts have).
    const V1_CPUACCT_STAT: &str = "user 35\nsystem 47\n";
    const V1_CPU_STAT: &str =
        "nr_periods 40\nnr_throttled 3\nthrottled_time 1500000\nnr_bursts 0\nburst_time 0\n";
    const V1_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 31 0:40 / /sys/fs/cgroup/net_cls,net_prio rw,relatime - cgroup cgroup rw,net_cls,net_prio
";

    // Captured on a cgroup v2 host (kernel 6.1, make vm-test): memory.stat, memory.current,
    // memory.max and cpu.stat of a container holding 100 MiB of anonymous memory under a
    // 256 MiB limit.
    const V2_MEMORY_STAT: &str = "anon 105005056
file 0
kernel 589824
kernel_stack 49152
pagetables 274432
sec_pagetables 0
percpu 0
sock 0
vmalloc 0
shmem 0
zswap 0
zswapped 0
file_mapped 0
file_dirty 0
file_writeback 0
swapcached 0
anon_thp 102760448
file_thp 0
shmem_thp 0
inactive_anon 104960000
active_anon 4096
inactive_file 0
active_file 0
unevictable 0
slab_reclaimable 48832
slab_unreclaimable 84088
slab 132920
workingset_refault_anon 0
workingset_refault_file 0
workingset_activate_anon 0
workingset_activate_file 0
workingset_restore_anon 0
workingset_restore_file 0
workingset_nodereclaim 0
pgscan 0
pgsteal 0
pgscan_kswapd 0
pgscan_direct 0
pgsteal_kswapd 0
pgsteal_direct 0
pgfault 760
pgmajfault 0
pgrefill 0
pgactivate 0
pgdeactivate 0
pglazyfree 0
pglazyfreed 0
zswpin 0
zswpout 0
thp_fault_alloc 49
thp_collapse_alloc 0
";
    const V2_MEMORY_CURRENT: &str = "105934848\n";
    const V2_MEMORY_MAX: &str = "268435456\n";
    const V2_CPU_STAT: &str = "usage_usec 2079410
user_usec 51056
system_usec 2028353
nr_periods 0
nr_throttled 0
throttled_usec 0
nr_bursts 0
burst_usec 0
";
    // memory.events in the kernel's format, after the OOM killer ended one process.
    const V2_MEMORY_EVENTS: &str = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n";

    #[test]
    fn v1_memory_uses_hierarchical_totals() {
        let m = memory_v1(
            parse_value("7300000000\n").unwrap(),
            parse_limit("9223372036854771712\n"),
            &parse_flat(V1_MEMORY_STAT),
        );
        assert_eq!(m.usage, 7_300_000_000);
        assert_eq!(m.inactive_file, 4_650_770_432);
        assert_eq!(m.working_set, 7_300_000_000 - 4_650_770_432);
        assert_eq!((m.rss, m.cache), (2_070_790_144, 7_238_467_584));
        assert_eq!((m.page_faults, m.major_page_faults), (100_936_606, 29_990));
        assert_eq!(m.mapped_file, 266_362_880);
        assert_eq!(m.limit, None, "v1 writes unlimited as a huge number");
        assert_eq!(m.available(), None);
    }

    #[test]
    fn working_set_never_below_zero_and_available_under_a_limit() {
        // Inactive file cache above usage happens on v1 (charges move between cgroups).
        let m = memory_v1(1000, Some(4096), &parse_flat("total_inactive_file 5000\n"));
        assert_eq!(m.working_set, 0);
        assert_eq!(m.available(), Some(4096));
        let m = memory_v1(3000, Some(4096), &parse_flat("total_inactive_file 1000\n"));
        assert_eq!((m.working_set, m.available()), (2000, Some(2096)));
        // Without total_* keys (a kernel without hierarchy support), the plain keys count.
        let m = memory_v1(3000, None, &parse_flat("inactive_file 500\nrss 7\n"));
        assert_eq!((m.working_set, m.rss), (2500, 7));
    }

    #[test]
    fn v2_memory_from_stat_and_events() {
        let m = memory_v2(
            parse_value(V2_MEMORY_CURRENT).unwrap(),
            parse_limit(V2_MEMORY_MAX),
            &parse_flat(V2_MEMORY_STAT),
            &parse_flat(V2_MEMORY_EVENTS),
        );
        // No inactive file cache: the working set is all of it.
        assert_eq!((m.usage, m.working_set), (105_934_848, 105_934_848));
        assert!(m.working_set >= 100 << 20);
        assert_eq!((m.rss, m.cache, m.kernel), (105_005_056, 0, 589_824));
        assert_eq!((m.page_faults, m.major_page_faults), (760, 0));
        assert_eq!((m.failcnt, m.oom_kills), (12, 1));
        assert_eq!(m.limit, Some(268_435_456));
        assert_eq!(m.available(), Some(268_435_456 - 105_934_848));
        let unlimited = memory_v2(1, parse_limit("max\n"), &HashMap::new(), &HashMap::new());
        assert_eq!((unlimited.limit, unlimited.available()), (None, None));
        let cached = memory_v2(
            5000,
            None,
            &parse_flat("inactive_file 3000\n"),
            &HashMap::new(),
        );
        assert_eq!(cached.working_set, 2000);
        // Before 5.18 there is no `kernel` key.
        let old = memory_v2(
            1,
            None,
            &parse_flat("kernel_stack 10\nslab 20\n"),
            &HashMap::new(),
        );
        assert_eq!(old.kernel, 30);
    }

    #[test]
    fn v1_cpu_in_nanoseconds() {
        let c = cpu_v1(
            parse_value("829843070\n").unwrap(),
            &parse_flat(V1_CPUACCT_STAT),
            &parse_flat(V1_CPU_STAT),
            100,
        );
        assert_eq!(c.usage_ns, 829_843_070);
        assert_eq!((c.user_ns, c.system_ns), (350_000_000, 470_000_000));
        assert_eq!(
            (c.periods, c.throttled_periods, c.throttled_ns),
            (40, 3, 1_500_000)
        );
        // No cpu controller mounted: no throttling figures, the rest stands.
        let c = cpu_v1(5, &HashMap::new(), &HashMap::new(), 100);
        assert_eq!(
            c,
            CpuStat {
                usage_ns: 5,
                ..CpuStat::default()
            }
        );
    }

    #[test]
    fn v2_cpu_in_nanoseconds() {
        let c = cpu_v2(&parse_flat(V2_CPU_STAT)).unwrap();
        assert_eq!(c.usage_ns, 2_079_410_000);
        assert_eq!((c.user_ns, c.system_ns), (51_056_000, 2_028_353_000));
        let throttled = "usage_usec 1\nnr_periods 120\nnr_throttled 7\nthrottled_usec 250000\n";
        let c = cpu_v2(&parse_flat(throttled)).unwrap();
        assert_eq!(
            (c.periods, c.throttled_periods, c.throttled_ns),
            (120, 7, 250_000_000)
        );
        assert_eq!(cpu_v2(&parse_flat("nr_periods 1\n")), None);
    }

    #[test]
    fn limits_and_values() {
        assert_eq!(parse_limit("max\n"), None);
        assert_eq!(parse_limit("1024\n"), Some(1024));
        assert_eq!(parse_limit("9223372036854771712"), None);
        assert_eq!(parse_value(" 42\n"), Some(42));
        assert_eq!(parse_value(""), None);
        let flat = parse_flat("a 1\nbroken\nb x\nc 3 extra\n");
        assert_eq!(flat, HashMap::from([("a", 1), ("c", 3)]));
    }

    #[test]
    fn v1_controllers_from_mountinfo() {
        let m = v1_controller_mounts(V1_MOUNTINFO, Path::new("/sys/fs/cgroup"));
        assert_eq!(m["cpuacct"], Path::new("/sys/fs/cgroup/cpuacct"));
        assert_eq!(m["memory"], Path::new("/sys/fs/cgroup/memory"));
        assert_eq!(m["pids"], Path::new("/sys/fs/cgroup/pids"));
        assert_eq!(m["net_prio"], Path::new("/sys/fs/cgroup/net_cls,net_prio"));
        assert!(
            !m.contains_key("hugetlb"),
            "the v2 mount holds no v1 controller"
        );
    }

    #[test]
    fn systemd_paths_expand_like_systemd() {
        let sd = CgroupDriver::Systemd;
        assert_eq!(
            relative_dir(sd, "kubepods-besteffort-pod12.slice"),
            Path::new("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice")
        );
        assert_eq!(
            relative_dir(sd, "kubepods-pod1.slice:peapod:abc"),
            Path::new("kubepods.slice/kubepods-pod1.slice/peapod-abc.scope")
        );
        assert_eq!(relative_dir(sd, "-.slice"), Path::new(""));
        assert_eq!(
            relative_dir(CgroupDriver::Cgroupfs, "/peapod/pod/ctr"),
            Path::new("peapod/pod/ctr")
        );
    }

    #[test]
    fn a_vanished_cgroup_reads_as_nothing() {
        let d = crate::fsutil::TempDir::new("cgstats");
        assert_eq!(read_v2(&d.0.join("gone")), CgroupStats::default());
        std::fs::write(d.0.join("memory.current"), "4096\n").unwrap();
        std::fs::write(d.0.join("cgroup.procs"), "1\n2\n").unwrap();
        let s = read_v2(&d.0);
        assert_eq!(s.memory.map(|m| m.usage), Some(4096));
        assert_eq!((s.cpu, s.pids, s.processes), (None, None, Some(2)));
    }
}
