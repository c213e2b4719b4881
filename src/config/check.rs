//! `peapod config check`: every error of a config file, each with its key and line, where a
//! daemon's start stops at the first.
//!
//! The file is parsed once into a spanned table. Deserialising it stops at the first error,
//! so the key an error is at is taken out and the rest deserialised again, until it goes
//! through; then the checks that need whole values (paths, CIDRs, names) run and each problem
//! is located by its key.

use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::{CgroupDriver, Config};

/// The default config, commented: what `peapod config default` prints and the package
/// installs as /etc/peapod/config.toml.
pub const DEFAULT_TOML: &str = include_str!("../../contrib/config.toml");

/// At most this many errors of one file: a file of the wrong kind would give one per key.
const MAX_ISSUES: usize = 50;

/// One error of a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// 1-based; None when the error has no place in the file (a missing value's default).
    pub line: Option<usize>,
    /// The dotted key (`network.pod_cidr`); empty for a syntax error.
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(l) = self.line {
            write!(f, "line {l}: ")?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Every error of `text` as a peapod config; empty when the daemon would take it.
pub fn check(text: &str) -> Vec<Issue> {
    let (table, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        return syntax
            .iter()
            .take(MAX_ISSUES)
            .map(|e| Issue {
                line: e.span().map(|s| line_of(text, s.start)),
                key: String::new(),
                message: e.message().trim().to_string(),
            })
            .collect();
    }
    let mut issues = Vec::new();
    let mut table = table;
    let cfg = loop {
        match Config::deserialize(toml::de::Deserializer::from(table.clone())) {
            Ok(cfg) => break Some(cfg),
            Err(e) => {
                let path = e
                    .span()
                    .map(|s| key_at(table.get_ref(), s.start))
                    .unwrap_or_default();
                issues.push(Issue {
                    line: e.span().map(|s| line_of(text, s.start)),
                    key: path.join("."),
                    message: e.message().trim().to_string(),
                });
                // Without a key to take out, the same error would come again.
                if path.is_empty() || issues.len() >= MAX_ISSUES || !remove(&mut table, &path) {
                    break None;
                }
                issues.sort_by_key(|i| i.line);
            }
        }
    };
    let Some(mut cfg) = cfg else { return issues };
    if !issues.is_empty() {
        // What deserialised without the bad keys is only part of the file: checking its
        // values would report defaults standing in for them.
        return issues;
    }
    // As Config::parse: the systemd driver's default parent is a slice.
    if cfg.cgroup_driver == CgroupDriver::Systemd && cfg.cgroup_parent == "/peapod" {
        cfg.cgroup_parent = "peapod.slice".into();
    }
    for p in cfg.problems() {
        let path = split_key(&p.key);
        issues.push(Issue {
            line: span_of(table.get_ref(), &path).map(|s| line_of(text, s)),
            key: p.key,
            message: p.reason,
        });
    }
    issues.sort_by_key(|i| i.line);
    issues
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The deepest key whose key or value covers `offset`.
fn key_at(table: &DeTable<'_>, offset: usize) -> Vec<String> {
    for (k, v) in table.iter() {
        let covers =
            |r: std::ops::Range<usize>| r.start <= offset && offset < r.end.max(r.start + 1);
        if !covers(k.span()) && !covers(v.span()) {
            continue;
        }
        let mut path = vec![k.get_ref().to_string()];
        if let DeValue::Table(t) = v.get_ref() {
            path.extend(key_at(t, offset));
        }
        return path;
    }
    // A table header's span covers only its header: a key below it may lie further on.
    for (k, v) in table.iter() {
        if let DeValue::Table(t) = v.get_ref() {
            let below = key_at(t, offset);
            if !below.is_empty() {
                let mut path = vec![k.get_ref().to_string()];
                path.extend(below);
                return path;
            }
        }
    }
    Vec::new()
}

/// Where the key at `path` starts in the file.
fn span_of(table: &DeTable<'_>, path: &[String]) -> Option<usize> {
    let (first, rest) = path.split_first()?;
    let (k, v) = table.get_key_value(first.as_str())?;
    match (rest.is_empty(), v.get_ref()) {
        (true, _) => Some(k.span().start),
        (false, DeValue::Table(t)) => span_of(t, rest).or(Some(k.span().start)),
        (false, _) => Some(k.span().start),
    }
}

/// Takes the key at `path` out of the table; false if it is not there.
fn remove(table: &mut Spanned<DeTable<'_>>, path: &[String]) -> bool {
    fn inner(t: &mut DeTable<'_>, path: &[String]) -> bool {
        let Some((first, rest)) = path.split_first() else {
            return false;
        };
        if rest.is_empty() {
            return t.remove(first.as_str()).is_some();
        }
        match t.get_mut(first.as_str()).map(|v| v.get_mut()) {
            Some(DeValue::Table(sub)) => inner(sub, rest),
            // A key below a value that is not a table: the value itself goes.
            Some(_) => t.remove(first.as_str()).is_some(),
            None => false,
        }
    }
    inner(table.get_mut(), path)
}

/// `registry.hosts."127.0.0.1:5000"` → `registry`, `hosts`, `127.0.0.1:5000`.
fn split_key(key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in key.chars() {
        match c {
            '"' => quoted = !quoted,
            '.' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_default_file_is_the_default_config_and_names_every_key() {
        assert_eq!(check(DEFAULT_TOML), Vec::<Issue>::new());
        let parsed = Config::parse(DEFAULT_TOML, Path::new("default.toml")).unwrap();
        assert_eq!(
            serde_json::to_value(&parsed).unwrap(),
            serde_json::to_value(Config::default()).unwrap(),
            "contrib/config.toml must hold the embedded defaults"
        );
        // Every key of the config appears in the file, so a new key cannot be forgotten.
        fn keys(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
            if let serde_json::Value::Object(m) = v {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    keys(&key, v, out);
                    out.push(key);
                }
            }
        }
        let mut all = Vec::new();
        keys(
            "",
            &serde_json::to_value(Config::default()).unwrap(),
            &mut all,
        );
        let (table, errs) = DeTable::parse_recoverable(DEFAULT_TOML);
        assert!(errs.is_empty());
        for k in all {
            assert!(
                span_of(table.get_ref(), &split_key(&k)).is_some()
                    && key_at_path(table.get_ref(), &split_key(&k)),
                "{k} is missing from contrib/config.toml"
            );
        }
    }

    fn key_at_path(t: &DeTable<'_>, path: &[String]) -> bool {
        match path.split_first() {
            None => true,
            Some((first, rest)) => match t.get(first.as_str()).map(|v| v.get_ref()) {
                Some(DeValue::Table(sub)) => key_at_path(sub, rest),
                Some(_) => rest.is_empty(),
                None => false,
            },
        }
    }

    #[test]
    fn every_unknown_key_and_bad_type_is_named_with_its_line() {
        let text = "socket = \"/run/x.sock\"\n\
                    colour = \"blue\"\n\
                    pids_limit = \"many\"\n\
                    [network]\n\
                    mode = \"builtin\"\n\
                    bridgee = \"br0\"\n";
        let issues = check(text);
        assert_eq!(issues.len(), 3, "{issues:#?}");
        let by_key = |k: &str| {
            issues
                .iter()
                .find(|i| i.key == k)
                .unwrap_or_else(|| panic!("no issue at {k}: {issues:#?}"))
        };
        assert_eq!(by_key("colour").line, Some(2));
        assert!(by_key("colour").message.contains("unknown field"));
        assert_eq!(by_key("pids_limit").line, Some(3));
        assert_eq!(by_key("network.bridgee").line, Some(6));
        assert!(by_key("network.bridgee").message.contains("unknown field"));
        // Each issue prints as "line N: key: message".
        assert!(by_key("colour")
            .to_string()
            .starts_with("line 2: colour: unknown field"));
    }

    #[test]
    fn values_that_cannot_work_are_located_too() {
        let text = "root_dir = \"relative\"\n\
                    metrics_address = \"nowhere\"\n\
                    [network]\n\
                    pod_cidr = \"10.0.0.0/33\"\n\
                    [registry.hosts.\"127.0.0.1:5000\"]\n\
                    insecure = true\n\
                    skip_verify = true\n";
        let issues = check(text);
        let lines: Vec<_> = issues.iter().map(|i| (i.key.as_str(), i.line)).collect();
        assert!(lines.contains(&("root_dir", Some(1))), "{issues:#?}");
        assert!(lines.contains(&("metrics_address", Some(2))), "{issues:#?}");
        assert!(
            lines.contains(&("network.pod_cidr", Some(4))),
            "{issues:#?}"
        );
        assert!(
            lines.contains(&("registry.hosts.\"127.0.0.1:5000\"", Some(5))),
            "{issues:#?}"
        );
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let issues = check("socket = \"/x\"\n[network\nmode = 1\n");
        assert!(!issues.is_empty());
        assert_eq!(issues[0].line, Some(2), "{issues:#?}");
        assert_eq!(issues[0].key, "");
    }

    #[test]
    fn keys_split_on_dots_outside_quotes() {
        assert_eq!(
            split_key("registry.hosts.\"127.0.0.1:5000\""),
            ["registry", "hosts", "127.0.0.1:5000"]
        );
        assert_eq!(split_key("socket"), ["socket"]);
    }

    #[test]
    fn metrics_address_forms() {
        let mut c = Config::default();
        assert_eq!(c.metrics_addr().unwrap(), None, "off by default");
        c.metrics_address = ":9464".into();
        assert_eq!(
            c.metrics_addr().unwrap(),
            Some("127.0.0.1:9464".parse().unwrap()),
            "loopback when only a port is given"
        );
        c.metrics_address = "[::1]:9464".into();
        assert!(c.metrics_addr().unwrap().is_some());
        c.metrics_address = "localhost:9464".into();
        assert!(c.metrics_addr().is_err());
    }
}
