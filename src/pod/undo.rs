//! Undo steps for multi-step operations (CRI-O's resource cleaner): every resource acquired
//! registers a described step; on failure the steps run in reverse, on success they are dropped.

type Step = (String, Box<dyn FnOnce() + Send>);

#[derive(Default)]
pub struct Undo {
    steps: Vec<Step>,
}

impl Undo {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers how to undo something that was just made.
    pub fn push(&mut self, what: impl Into<String>, step: impl FnOnce() + Send + 'static) {
        self.steps.push((what.into(), Box::new(step)));
    }

    /// The operation succeeded: keep everything.
    pub fn commit(mut self) {
        self.steps.clear();
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        while let Some((what, step)) = self.steps.pop() {
            tracing::debug!(step = %what, "undoing");
            step();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn runs_in_reverse_unless_committed() {
        let log = Arc::new(Mutex::new(Vec::new()));
        {
            let mut u = Undo::new();
            for i in 0..3 {
                let l = log.clone();
                u.push(format!("step {i}"), move || l.lock().unwrap().push(i));
            }
        }
        assert_eq!(*log.lock().unwrap(), vec![2, 1, 0]);
        log.lock().unwrap().clear();
        let mut u = Undo::new();
        let l = log.clone();
        u.push("x", move || l.lock().unwrap().push(9));
        u.commit();
        assert!(log.lock().unwrap().is_empty());
    }
}
