//! Which parts of `make bench` run: all of them, or those `PEAPOD_BENCH_ONLY` names
//! (comma-separated), e.g. `PEAPOD_BENCH_ONLY=pull,scale`. A part's table is printed only when
//! it ran; containerd is started only when a part that compares with it runs (all but
//! `static`). The parts:
//! - `start`: pod start latency beside bare runc; memory with 20 and 100 pods; List with 100;
//! - `scale`: the same with 250 pods running (it runs `start` too: those are its first pods);
//! - `exec`: ExecSync, Exec over SPDY, the stopped event, RSS across many ExecSync calls;
//! - `pull`: PullImage of a one-layer and a 4-layer image beside tar -xzf;
//! - `net`: pod network setup and teardown; pod start with and without a network;
//! - `static`: static pods beside podman kube play; 100 probed static pods.

/// The parts, in the order they run.
pub const PARTS: [&str; 6] = ["start", "scale", "exec", "pull", "net", "static"];

#[derive(Debug)]
pub struct Parts(Vec<&'static str>);

impl Parts {
    /// From `PEAPOD_BENCH_ONLY`; every part when it is unset or empty. Err: a name that is not a
    /// part, with the list of parts.
    pub fn from_env() -> Result<Parts, String> {
        let only = std::env::var("PEAPOD_BENCH_ONLY").unwrap_or_default();
        Self::parse(&only)
    }

    fn parse(only: &str) -> Result<Parts, String> {
        let names: Vec<&str> = only
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if names.is_empty() {
            return Ok(Parts(PARTS.to_vec()));
        }
        let mut out = Vec::new();
        for n in names {
            match PARTS.iter().find(|p| **p == n) {
                Some(p) => out.push(*p),
                None => {
                    return Err(format!(
                        "PEAPOD_BENCH_ONLY: no part {n:?}; the parts are {}",
                        PARTS.join(",")
                    ))
                }
            }
        }
        Ok(Parts(out))
    }

    pub fn has(&self, part: &str) -> bool {
        self.0.contains(&part)
    }

    /// The pods of `start`, which `scale` goes on from.
    pub fn pods(&self) -> bool {
        self.has("start") || self.has("scale")
    }

    /// Whether a part that runs compares with containerd (all but `static`).
    pub fn containerd(&self) -> bool {
        self.0.iter().any(|p| *p != "static")
    }

    /// The parts that run, when not all of them do: for the first line of the output.
    pub fn selected(&self) -> Option<String> {
        (self.0.len() < PARTS.len()).then(|| self.0.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_select_parts() {
        assert_eq!(Parts::parse("").unwrap().0.len(), PARTS.len());
        let p = Parts::parse("pull, scale").unwrap();
        assert!(p.has("pull") && p.has("scale") && p.pods() && !p.has("exec"));
        assert!(!Parts::parse("static").unwrap().containerd());
        assert!(Parts::parse("pul").unwrap_err().contains("start,scale"));
    }
}
