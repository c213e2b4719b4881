//! Image references (`busybox`, `quay.io/foo/bar:v1`, `name@sha256:...`) parsed and normalised
//! the way docker and containerd do it (github.com/distribution/reference, `ParseNormalizedNamed`
//! followed by `TagNameOnly`), so a tag typed by a user, by kubelet or read from an archive ends
//! up as the same store key:
//!
//! - no registry → `docker.io`; a one-component name on docker.io gets `library/`;
//! - the first component is a registry only if it contains `.` or `:`, is `localhost`, or has an
//!   upper-case letter (repository paths must be lower case, so it cannot be a path);
//! - `index.docker.io` is an alias of `docker.io`;
//! - no tag and no digest → tag `latest`; a digest without a tag stays tagless.

use std::fmt;

use super::ImageError;

/// The default registry and the path prefix of its official images.
const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";
/// distribution/reference's `NameTotalLengthMax`.
const NAME_TOTAL_LENGTH_MAX: usize = 255;
const TAG_LENGTH_MAX: usize = 128;

/// A parsed, normalised image reference. Its `Display` is the canonical form
/// (`docker.io/library/busybox:latest`, `registry/path@sha256:...`, or both tag and digest).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Reference {
    /// Parses and normalises `s`; adds the `latest` tag when neither tag nor digest is given.
    pub fn parse(s: &str) -> Result<Reference, ImageError> {
        let err = |reason: &str| ImageError::InvalidReference {
            reference: s.to_string(),
            reason: reason.to_string(),
        };
        if s.is_empty() {
            return Err(err("empty reference"));
        }
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            // Docker refuses these as names so they can always mean an image ID.
            return Err(err(
                "cannot specify 64-byte hexadecimal strings as a repository name",
            ));
        }

        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => (n, Some(parse_digest(d).map_err(|r| err(&r))?)),
            None => (s, None),
        };
        // A ':' after the last '/' starts the tag; one before it is a registry port.
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&name_tag[..at], Some(&name_tag[at + 1..]))
            }
            None => (name_tag, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(err("invalid tag"));
            }
        }
        if name.is_empty() {
            return Err(err("empty repository name"));
        }

        let (domain, path) = split_domain(name);
        if path != path.to_ascii_lowercase() {
            return Err(err("repository name must be lowercase"));
        }
        if !valid_domain(&domain) {
            return Err(err("invalid registry host"));
        }
        if path.is_empty() || !path.split('/').all(valid_path_component) {
            return Err(err("invalid repository path"));
        }
        if domain.len() + 1 + path.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(err("repository name longer than 255 characters"));
        }

        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// The registry host (and port): `docker.io`, `localhost:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path inside the registry: `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The tag, if any (`latest` is filled in when neither tag nor digest was given).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any: `sha256:<hex>`.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// `domain/path`: the repository, the part shared by all tags and digests of an image.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// `repository:tag`, the form stored as an image's repo tag.
    pub fn tagged(&self) -> Option<String> {
        self.tag
            .as_ref()
            .map(|t| format!("{}:{t}", self.repository()))
    }

    /// `repository@digest`, the form stored as an image's repo digest.
    pub fn digested(&self) -> Option<String> {
        self.digest
            .as_ref()
            .map(|d| format!("{}@{d}", self.repository()))
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// The canonical string form of `s` (see [`Reference::parse`]).
pub fn normalize(s: &str) -> Result<String, ImageError> {
    Reference::parse(s).map(|r| r.to_string())
}

/// distribution/reference's `splitDockerDomain`.
fn split_domain(name: &str) -> (String, String) {
    let (mut domain, mut path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first != first.to_ascii_lowercase() =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    };
    if domain == LEGACY_DEFAULT_DOMAIN {
        domain = DEFAULT_DOMAIN.to_string();
    }
    if domain == DEFAULT_DOMAIN && !path.contains('/') {
        path = format!("{OFFICIAL_REPO_PREFIX}{path}");
    }
    (domain, path)
}

/// `algorithm:hex`; only the SHA-2 digests the OCI spec registers are accepted, with their
/// exact lengths, in lower case (the form content is stored under).
fn parse_digest(d: &str) -> Result<String, String> {
    let (alg, hex) = d
        .split_once(':')
        .ok_or_else(|| "digest must be algorithm:hex".to_string())?;
    let len = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(format!("unsupported digest algorithm {alg:?}")),
    };
    if hex.len() != len || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(format!("{alg} digest must be {len} lower-case hex digits"));
    }
    Ok(d.to_string())
}

/// `[\w][\w.-]{0,127}`.
fn valid_tag(t: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = t.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= TAG_LENGTH_MAX
        && word(bytes[0])
        && bytes[1..]
            .iter()
            .all(|&b| word(b) || b == b'.' || b == b'-')
}

/// `host[:port]` where host is dot-separated `[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?` labels
/// or a bracketed IPv6 address.
fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, tail)) => {
                if v6.is_empty() || !v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
                    return false;
                }
                match tail.strip_prefix(':') {
                    Some(p) => ("", Some(p)),
                    None if tail.is_empty() => ("", None),
                    None => return false,
                }
            }
            None => return false,
        }
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    if d.starts_with('[') {
        return true;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
        })
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: exactly ".", "_", "__", or any number of "-".
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalisation_table() {
        let table: &[(&str, &str)] = &[
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("foo/bar", "docker.io/foo/bar:latest"),
            ("foo/bar/baz:v1", "docker.io/foo/bar/baz:v1"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            (
                "index.docker.io/busybox",
                "docker.io/library/busybox:latest",
            ),
            (
                "docker.io/library/busybox:latest",
                "docker.io/library/busybox:latest",
            ),
            ("localhost/x", "localhost/x:latest"),
            ("localhost:5000/x", "localhost:5000/x:latest"),
            ("localhost:5000/x:v2", "localhost:5000/x:v2"),
            ("quay.io/coreos/etcd:v3.5.0", "quay.io/coreos/etcd:v3.5.0"),
            ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
            ("Example/foo", "Example/foo:latest"),
            ("[::1]:5000/x", "[::1]:5000/x:latest"),
            ("a.b-c_d__e---f", "docker.io/library/a.b-c_d__e---f:latest"),
            ("peapod.test/busybox:latest", "peapod.test/busybox:latest"),
        ];
        for (input, want) in table {
            let got = normalize(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(&got, want, "normalising {input}");
        }
    }

    #[test]
    fn digests() {
        let r = Reference::parse(&format!("busybox@{D}")).unwrap();
        assert_eq!(r.tag(), None, "a digest alone gets no default tag");
        assert_eq!(r.digest(), Some(D));
        assert_eq!(
            r.digested().unwrap(),
            format!("docker.io/library/busybox@{D}")
        );
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{D}"));

        let r = Reference::parse(&format!("localhost:5000/a/b:v1@{D}")).unwrap();
        assert_eq!(r.domain(), "localhost:5000");
        assert_eq!(r.path(), "a/b");
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(r.tagged().unwrap(), "localhost:5000/a/b:v1");
        assert_eq!(r.to_string(), format!("localhost:5000/a/b:v1@{D}"));
    }

    #[test]
    fn invalid_references() {
        let long_tag = format!("busybox:{}", "a".repeat(129));
        let long_name = format!("x/{}", "a".repeat(260));
        let table: Vec<(&str, &str)> = vec![
            ("", "empty"),
            (":latest", "empty repository"),
            ("Busybox", "lowercase"),
            ("foo/Bar", "lowercase"),
            ("busybox:", "invalid tag"),
            ("busybox:-x", "invalid tag"),
            (&long_tag, "invalid tag"),
            ("busybox@sha256:abc", "hex digits"),
            ("busybox@md5:abc", "unsupported"),
            ("busybox@", "algorithm:hex"),
            ("foo//bar", "invalid repository path"),
            ("foo/bar/", "invalid repository path"),
            ("-foo", "invalid repository path"),
            ("foo..bar", "invalid repository path"),
            ("foo___bar", "invalid repository path"),
            ("localhost:5000/", "invalid repository path"),
            ("local-.host:5000/x", "invalid registry host"),
            ("host:port/x", "invalid registry host"),
            (&long_name, "longer than 255"),
            (
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "64-byte",
            ),
        ];
        for (input, want) in table {
            match Reference::parse(input) {
                Err(ImageError::InvalidReference { reference, reason }) => {
                    assert_eq!(reference, input);
                    assert!(
                        reason.contains(want),
                        "{input:?}: {reason:?} lacks {want:?}"
                    );
                }
                other => panic!("{input:?} gave {other:?}"),
            }
        }
    }
}
