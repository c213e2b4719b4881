//! Image references (`image::reference`) as kubelet, crictl and users type them: never a
//! panic, and the canonical form of a reference is a fixed point.

use bolero::TypeGenerator;
use peapod::image::reference::{normalize, Reference};

use crate::TEST_TIME;

fn check(s: &str) {
    let Ok(r) = Reference::parse(s) else {
        return;
    };
    let canonical = r.to_string();
    let again = Reference::parse(&canonical)
        .unwrap_or_else(|e| panic!("{s:?} → {canonical:?} does not parse: {e}"));
    assert_eq!(again, r, "{s:?} → {canonical:?} parses differently");
    assert_eq!(normalize(&canonical).unwrap(), canonical);
    assert!(!r.domain().is_empty() && !r.path().is_empty());
    assert!(
        r.tag().is_some() || r.digest().is_some(),
        "{s:?}: no tag nor digest"
    );
    for form in [r.tagged(), r.digested()].into_iter().flatten() {
        let f = Reference::parse(&form).unwrap_or_else(|e| panic!("{form:?}: {e}"));
        assert_eq!(f.repository(), r.repository());
    }
}

#[test]
fn reference_string() {
    bolero::check!()
        .with_test_time(TEST_TIME)
        .for_each(|input: &[u8]| {
            if let Ok(s) = std::str::from_utf8(input) {
                check(s);
            }
        });
}

#[derive(Debug, Clone, Copy, TypeGenerator)]
enum Part {
    Slash,
    Colon,
    At,
    Dot,
    Dash,
    Underscore,
    Bracket,
    Close,
    Lower,
    Upper,
    Digit,
    Localhost,
    DockerIo,
    IndexDockerIo,
    Library,
    Sha256,
    Hex64,
    Port,
}

impl Part {
    fn as_str(self) -> &'static str {
        match self {
            Part::Slash => "/",
            Part::Colon => ":",
            Part::At => "@",
            Part::Dot => ".",
            Part::Dash => "-",
            Part::Underscore => "_",
            Part::Bracket => "[",
            Part::Close => "]",
            Part::Lower => "busybox",
            Part::Upper => "Quay",
            Part::Digit => "1",
            Part::Localhost => "localhost",
            Part::DockerIo => "docker.io",
            Part::IndexDockerIo => "index.docker.io",
            Part::Library => "library",
            Part::Sha256 => "sha256:",
            Part::Hex64 => "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            Part::Port => "5000",
        }
    }
}

/// References assembled from the pieces their grammar is made of, which random bytes
/// rarely hit.
#[test]
fn reference_parts() {
    bolero::check!()
        .with_type::<Vec<Part>>()
        .with_test_time(TEST_TIME)
        .for_each(|parts| {
            let s: String = parts.iter().map(|p| p.as_str()).collect();
            check(&s);
        });
}

/// CRI `AuthConfig.auth`: base64 of `user:password`.
#[test]
fn basic_auth() {
    bolero::check!()
        .with_test_time(TEST_TIME)
        .for_each(|input: &[u8]| {
            if let Ok(s) = std::str::from_utf8(input) {
                let _ = peapod::image::PullAuth::from_basic_auth(s);
            }
        });
}
