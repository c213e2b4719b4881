//! The crash points' trigger, shared by the engine and the adapters it drives (the pod
//! network): the names and their order are listed in `pod/failpoint.rs`.

/// Kills the daemon if `name` is the configured failpoint (debug builds only).
#[inline]
pub fn hit(name: &str) {
    #[cfg(debug_assertions)]
    {
        static POINT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        let point = POINT.get_or_init(|| std::env::var("PEAPOD_FAILPOINT").ok());
        if point.as_deref() == Some(name) {
            tracing::warn!(failpoint = name, "failpoint reached: killing the daemon");
            // SAFETY: kill(2) on our own PID; no memory is touched.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}
