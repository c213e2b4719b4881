//! The streaming server's token cache: each Exec/Attach/PortForward RPC leaves its request
//! here under a random token that the client presents in the URL. Tokens are single-use and
//! expire after [`TOKEN_TTL`] (kubelet's `CacheTTL`); at most [`MAX_TOKENS`] are outstanding
//! (kubelet's `MaxInFlight`), beyond which new requests are refused until some are used or
//! expire.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::api::{AttachRequest, ExecRequest, PortForwardRequest};

pub const TOKEN_TTL: Duration = Duration::from_secs(60);
pub const MAX_TOKENS: usize = 1000;

/// The request a token stands for.
#[derive(Debug, Clone, PartialEq)]
pub enum Pending {
    Exec(ExecRequest),
    Attach(AttachRequest),
    PortForward(PortForwardRequest),
}

/// The time source, so tests can move it.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("too many streaming requests in flight ({MAX_TOKENS} unused tokens); retry later")]
pub struct TooMany;

pub struct Tokens {
    clock: Box<dyn Clock>,
    inner: Mutex<HashMap<String, (Instant, Pending)>>,
}

impl Tokens {
    pub fn new(clock: Box<dyn Clock>) -> Self {
        Tokens {
            clock,
            inner: Mutex::new(HashMap::new()),
        }
    }

    /// Stores `req` under a new token.
    pub fn insert(&self, req: Pending) -> Result<String, TooMany> {
        let now = self.clock.now();
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_TOKENS {
            map.retain(|_, (expires, _)| *expires > now);
            if map.len() >= MAX_TOKENS {
                return Err(TooMany);
            }
        }
        loop {
            let token = new_token();
            if let std::collections::hash_map::Entry::Vacant(e) = map.entry(token.clone()) {
                e.insert((now + TOKEN_TTL, req));
                return Ok(token);
            }
        }
    }

    /// The request behind `token`, once: a used, expired or unknown token gives None.
    pub fn take(&self, token: &str) -> Option<Pending> {
        let now = self.clock.now();
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (expires, req) = map.remove(token)?;
        (expires > now).then_some(req)
    }
}

/// 16 random bytes, URL-safe base64 (22 characters): unguessable, and safe in a URL path.
fn new_token() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source is available");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A clock that moves only when told.
    #[derive(Clone)]
    struct Manual(Arc<Mutex<Instant>>);

    impl Manual {
        fn advance(&self, d: Duration) {
            *self.0.lock().unwrap() += d;
        }
    }

    impl Clock for Manual {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }

    fn setup() -> (Tokens, Manual) {
        let clock = Manual(Arc::new(Mutex::new(Instant::now())));
        (Tokens::new(Box::new(clock.clone())), clock)
    }

    fn exec(id: &str) -> Pending {
        Pending::Exec(ExecRequest {
            container_id: id.into(),
            ..Default::default()
        })
    }

    #[test]
    fn tokens_are_single_use() {
        let (t, _) = setup();
        let tok = t.insert(exec("c1")).unwrap();
        assert_eq!(tok.len(), 22);
        assert!(tok
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(t.take(&tok), Some(exec("c1")));
        assert_eq!(t.take(&tok), None, "a second use finds nothing");
        assert_eq!(t.take("bogus"), None);
        let other = t.insert(exec("c1")).unwrap();
        assert_ne!(tok, other, "each request gets its own token");
    }

    #[test]
    fn tokens_expire_after_a_minute() {
        let (t, clock) = setup();
        let early = t.insert(exec("a")).unwrap();
        clock.advance(Duration::from_secs(59));
        let late = t.insert(exec("b")).unwrap();
        assert_eq!(t.take(&early), Some(exec("a")), "still valid at 59 s");
        let early = t.insert(exec("a")).unwrap();
        clock.advance(Duration::from_secs(60));
        assert_eq!(t.take(&early), None, "expired at 60 s");
        assert_eq!(t.take(&late), None, "expired at 60 s too");
    }

    #[test]
    fn outstanding_tokens_are_bounded_until_they_expire() {
        let (t, clock) = setup();
        let toks: Vec<_> = (0..MAX_TOKENS)
            .map(|i| t.insert(exec(&i.to_string())).unwrap())
            .collect();
        assert_eq!(t.insert(exec("over")), Err(TooMany));
        // Using one frees its place.
        assert!(t.take(&toks[0]).is_some());
        let extra = t.insert(exec("one more")).unwrap();
        assert_eq!(t.insert(exec("over")), Err(TooMany));
        // Expired ones are evicted when room is needed.
        clock.advance(TOKEN_TTL);
        let fresh = t.insert(exec("fresh")).unwrap();
        assert_eq!(t.take(&extra), None);
        assert_eq!(t.take(&fresh), Some(exec("fresh")));
    }
}
