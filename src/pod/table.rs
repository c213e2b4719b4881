//! The engine's tables of live sandboxes and containers, and the change counter that tells a
//! reader whether anything it showed may have changed since.
//!
//! Every insert and removal here, and every record saved through [`record::update`], bumps
//! one counter, after the change. A reader that notes [`generation`] before it reads sees at
//! least every change counted up to then, so a result kept under that number stays true until
//! the number moves (the CRI door keeps its unfiltered List replies encoded that way: kubelet
//! relists every second, and most seconds nothing changed).
//!
//! [`record::update`]: super::record::update

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

/// Changes to any engine's tables or records. Process-wide: records are changed through
/// their own mutex, which knows no engine, and a spurious bump (another engine in a unit
/// test) only costs a reader a rebuild.
static CHANGES: AtomicU64 = AtomicU64::new(0);

/// Counts a change that has been made.
pub(crate) fn changed() {
    CHANGES.fetch_add(1, Ordering::Release);
}

/// The number of changes made so far.
pub fn generation() -> u64 {
    CHANGES.load(Ordering::Acquire)
}

/// Live objects by ID.
pub struct Table<V> {
    map: RwLock<HashMap<String, Arc<V>>>,
}

impl<V> Default for Table<V> {
    fn default() -> Self {
        Table {
            map: RwLock::new(HashMap::new()),
        }
    }
}

impl<V> Table<V> {
    pub fn read(&self) -> RwLockReadGuard<'_, HashMap<String, Arc<V>>> {
        self.map.read().unwrap()
    }

    pub fn insert(&self, id: String, v: Arc<V>) {
        self.map.write().unwrap().insert(id, v);
        changed();
    }

    pub fn remove(&self, id: &str) -> Option<Arc<V>> {
        let v = self.map.write().unwrap().remove(id);
        changed();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_change_moves_the_generation() {
        let t: Table<u32> = Table::default();
        let g0 = generation();
        t.insert("a".into(), Arc::new(1));
        let g1 = generation();
        assert!(g1 > g0);
        assert_eq!(*t.read()["a"], 1);
        assert!(t.remove("a").is_some());
        assert!(generation() > g1);
        assert!(t.read().is_empty());
    }
}
