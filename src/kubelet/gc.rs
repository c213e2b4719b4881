//! Container garbage collection for one pod: kubelet's `containerGC` with its defaults
//! (`MaxPerPodContainer` 1, `MinAge` 0). Each container keeps its newest instance, and of the
//! dead ones only the newest, which is what `lastState` and `logs --previous` read; every
//! older dead instance is removed, so a crash-looping container never piles up instances,
//! monitors or log files.

use super::runtime::{ContainerState, PodRuntimeStatus};

/// A container instance to remove.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evict {
    pub id: String,
    pub name: String,
    pub attempt: u32,
}

/// The instances of `rt` that the GC removes.
pub fn evictable(rt: &PodRuntimeStatus) -> Vec<Evict> {
    let mut names: Vec<&str> = rt.containers.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        // Newest first; the newest instance is never removed, whatever its state.
        let mut dead_kept = false;
        for (i, c) in rt.instances(name).into_iter().enumerate() {
            let dead = matches!(c.state, ContainerState::Exited | ContainerState::Created);
            if i == 0 {
                dead_kept = c.state == ContainerState::Exited;
                continue;
            }
            if !dead {
                continue;
            }
            if !dead_kept && c.state == ContainerState::Exited {
                dead_kept = true;
                continue;
            }
            out.push(Evict {
                id: c.id.clone(),
                name: c.name.clone(),
                attempt: c.attempt,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::runtime::ContainerState;
    use crate::kubelet::testutil::*;

    fn ids(v: &[Evict]) -> Vec<&str> {
        v.iter().map(|e| e.id.as_str()).collect()
    }

    #[test]
    fn a_running_container_keeps_one_dead_instance() {
        let rt = ready(vec![
            exited("app", 0, 1, 0, 5),
            exited("app", 1, 1, 6, 10),
            exited("app", 2, 1, 11, 20),
            running("app", 3, 30),
        ]);
        let gone = evictable(&rt);
        // The running one and attempt 2 (lastState) stay.
        assert_eq!(
            ids(&gone),
            vec![rt.containers[1].id.as_str(), rt.containers[0].id.as_str()]
        );
        assert_eq!(gone[0].attempt, 1);
    }

    #[test]
    fn a_crash_looping_container_keeps_only_its_newest_dead_instance() {
        let rt = ready(vec![
            exited("app", 0, 1, 0, 5),
            exited("app", 1, 1, 6, 10),
            running("side", 0, 1),
        ]);
        assert_eq!(ids(&evictable(&rt)), vec![rt.containers[0].id.as_str()]);
    }

    #[test]
    fn single_instances_and_created_leftovers() {
        let rt = ready(vec![exited("init", 0, 0, 0, 1), running("app", 0, 2)]);
        assert!(evictable(&rt).is_empty());
        // A created instance that never ran, behind a newer one, is dead and goes, but does
        // not count as the kept dead instance.
        let rt = ready(vec![
            exited("app", 0, 1, 0, 5),
            instance("app", 1, ContainerState::Created, 6),
            running("app", 2, 10),
        ]);
        assert_eq!(ids(&evictable(&rt)), vec![rt.containers[1].id.as_str()]);
    }
}
