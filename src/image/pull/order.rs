//! The order in which a pull's layers get their names in the store. Layers are unpacked in
//! parallel, each into a temporary directory, but a layer is renamed to its chain ID only
//! once every layer below it has been, so the store never holds a complete layer whose
//! parent is not.

use std::sync::Arc;

use tokio::sync::watch;

/// Which layers of one image are complete in the store, lowest first; shared by the tasks of
/// a pull.
#[derive(Clone)]
pub struct BottomUp(Arc<watch::Sender<Vec<bool>>>);

impl BottomUp {
    /// `complete[i]` says whether layer `i` is in the store already.
    pub fn new(complete: Vec<bool>) -> BottomUp {
        BottomUp(Arc::new(watch::Sender::new(complete)))
    }

    /// Records that layer `i` is complete, which may let the layer above go ahead.
    pub fn complete(&self, i: usize) {
        self.0.send_modify(|c| c[i] = true);
    }

    /// Waits until every layer below `i` is complete. If one of them fails this never
    /// returns: the pull then fails with that layer's error and drops the waiting task.
    pub async fn below(&self, i: usize) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = rx.wait_for(|c| all_below(c, i)).await;
    }
}

fn all_below(complete: &[bool], i: usize) -> bool {
    complete[..i].iter().all(|c| *c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_the_whole_prefix_counts() {
        assert!(all_below(&[false, true], 0));
        assert!(!all_below(&[false, true, false], 2));
        assert!(all_below(&[true, true, false], 2));
    }

    /// Layers that finish unpacking top first are still named bottom first.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn renames_happen_bottom_up_whatever_order_layers_finish_in() {
        let order = BottomUp::new(vec![false, true, false, false]);
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // Layer 3 finishes unpacking first, layer 0 last; layer 1 was present already.
        for (i, unpack_ms) in [(0usize, 60u64), (2, 30), (3, 0)] {
            let (order, log) = (order.clone(), log.clone());
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(unpack_ms)).await;
                order.below(i).await;
                log.lock().unwrap().push(i);
                order.complete(i);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*log.lock().unwrap(), [0, 2, 3]);
    }

    #[tokio::test]
    async fn a_failed_layer_holds_back_the_layers_above() {
        let order = BottomUp::new(vec![false, false]);
        // Layer 0 never completes (it failed); layer 1 waits until dropped.
        let waited = tokio::time::timeout(Duration::from_millis(50), order.below(1)).await;
        assert!(waited.is_err());
        // The bottom layer never waits.
        order.below(0).await;
    }
}
