//! Network configuration: the first `*.conflist`, `*.conf` or `*.json` of the conf dir in
//! lexical order (as containerd and libcni pick it), parsed into a [`NetworkList`]. A
//! single-plugin file is wrapped into a list of one. The same parser reads the config a cache
//! entry saved, so DEL runs with the config ADD used.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::CniError;

/// The config versions this client speaks, lowest first. The result format changed at 0.3.0
/// (`ips` and `interfaces` instead of `ip4`/`ip6`), CHECK came in 0.4.0, STATUS and GC in 1.1.0.
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// A CNI version `major.minor.patch` (`1` and `1.0` read as `1.0.0`), ordered numerically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    pub fn parse(s: &str) -> Option<Version> {
        let mut parts = [0u32; 3];
        let mut n = 0;
        for p in s.split('.') {
            if n == 3 || p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            parts[n] = p.parse().ok()?;
            n += 1;
        }
        (n > 0).then_some(Version(parts[0], parts[1], parts[2]))
    }

    /// True when `s` parses and is at least `min`; an unparseable version never is.
    pub fn at_least(s: &str, min: Version) -> bool {
        Version::parse(s).is_some_and(|v| v.cmp(&min) != Ordering::Less)
    }
}

pub const V0_3_0: Version = Version(0, 3, 0);
pub const V0_4_0: Version = Version(0, 4, 0);
pub const V1_1_0: Version = Version(1, 1, 0);

/// One plugin of a list: its `type` (the binary's name), its config object as written, and
/// the capabilities it declares (`"capabilities": {"portMappings": true}`).
#[derive(Debug, Clone, PartialEq)]
pub struct Plugin {
    pub kind: String,
    pub conf: Map<String, Value>,
    pub capabilities: BTreeSet<String>,
}

/// A parsed network configuration list.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkList {
    pub name: String,
    /// The version used for every plugin of the list (from `cniVersions` when given).
    pub cni_version: String,
    pub disable_check: bool,
    pub disable_gc: bool,
    pub plugins: Vec<Plugin>,
    /// The list as loaded (a single-plugin file already wrapped): what the cache saves.
    pub raw: Value,
    /// Where it came from: the conf file, or the cache entry it was read back from.
    pub source: PathBuf,
}

fn field_err(file: &Path, field: impl Into<String>, msg: impl Into<String>) -> CniError {
    CniError::Config {
        file: file.to_path_buf(),
        field: field.into(),
        msg: msg.into(),
    }
}

/// The config files of `dir` in the order containerd and libcni consider them: regular files
/// (or links to them) ending in `.conf`, `.conflist` or `.json`, sorted by name. A missing dir
/// has none.
pub fn conf_files(dir: &Path) -> Result<Vec<PathBuf>, CniError> {
    let it = match std::fs::read_dir(dir) {
        Ok(it) => it,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(CniError::Io {
                path: dir.to_path_buf(),
                source: e,
            })
        }
    };
    let mut files = Vec::new();
    for entry in it {
        let entry = entry.map_err(|e| CniError::Io {
            path: dir.to_path_buf(),
            source: e,
        })?;
        let path = entry.path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !matches!(ext, "conf" | "conflist" | "json") {
            continue;
        }
        // Follows links; a dangling link or a directory is no config.
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => files.push(path),
            _ => {}
        }
    }
    files.sort();
    Ok(files)
}

/// Loads the first config file of `dir`; `None` when it has none. An error in that file is an
/// error (naming the file and the field), not a reason to try the next one: the network a
/// node's pods join must not depend on which files happen to parse.
pub fn load_dir(dir: &Path) -> Result<Option<NetworkList>, CniError> {
    match conf_files(dir)?.into_iter().next() {
        None => Ok(None),
        Some(file) => load_file(&file).map(Some),
    }
}

/// Loads one config file: a `.conflist` as a list, anything else as a single plugin config.
pub fn load_file(file: &Path) -> Result<NetworkList, CniError> {
    let bytes = std::fs::read(file).map_err(|e| CniError::Io {
        path: file.to_path_buf(),
        source: e,
    })?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| field_err(file, "", format!("invalid JSON: {e}")))?;
    if file.extension().is_some_and(|e| e == "conflist") {
        parse_list(&value, file)
    } else {
        parse_list(&wrap_single(&value, file)?, file)
    }
}

/// A single plugin config as a list of one, the way libcni's ConfListFromConf builds it.
fn wrap_single(conf: &Value, file: &Path) -> Result<Value, CniError> {
    let obj = conf
        .as_object()
        .ok_or_else(|| field_err(file, "", "expected a JSON object"))?;
    match obj.get("type") {
        Some(Value::String(t)) if !t.is_empty() => {}
        Some(Value::String(_)) | None if obj.contains_key("plugins") => {
            return Err(field_err(
                file,
                "type",
                "missing: this is a plugin list, which belongs in a .conflist file",
            ))
        }
        Some(_) => return Err(field_err(file, "type", "expected a non-empty string")),
        None => return Err(field_err(file, "type", "missing")),
    }
    let mut list = Map::new();
    if let Some(v) = obj.get("cniVersion") {
        list.insert("cniVersion".into(), v.clone());
    }
    if let Some(v) = obj.get("name") {
        list.insert("name".into(), v.clone());
    }
    list.insert("plugins".into(), Value::Array(vec![conf.clone()]));
    Ok(Value::Object(list))
}

/// A network name as the spec allows it: an alphanumeric, then alphanumerics, `_`, `.`, `-`.
/// It is also a file name in the cache.
pub fn valid_network_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn bool_field(obj: &Map<String, Value>, key: &str, file: &Path) -> Result<bool, CniError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        // libcni 1.1 accepts the string forms too.
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(field_err(file, key, "expected true or false")),
    }
}

/// The version a list runs at: the highest of `cniVersions` this client supports, else
/// `cniVersion`.
fn list_version(obj: &Map<String, Value>, file: &Path) -> Result<String, CniError> {
    let supported = |v: &str| {
        Version::parse(v).is_some_and(|v| {
            SUPPORTED_VERSIONS
                .iter()
                .any(|s| Version::parse(s) == Some(v))
        })
    };
    if let Some(vs) = obj.get("cniVersions") {
        let arr = vs
            .as_array()
            .ok_or_else(|| field_err(file, "cniVersions", "expected an array of strings"))?;
        let mut best: Option<(Version, String)> = None;
        for (i, v) in arr.iter().enumerate() {
            let s = v
                .as_str()
                .ok_or_else(|| field_err(file, format!("cniVersions[{i}]"), "expected a string"))?;
            if supported(s) {
                let parsed = Version::parse(s).expect("supported versions parse");
                if best.as_ref().is_none_or(|(b, _)| parsed > *b) {
                    best = Some((parsed, s.to_string()));
                }
            }
        }
        if let Some((_, s)) = best {
            return Ok(s);
        }
        if !obj.contains_key("cniVersion") {
            return Err(field_err(
                file,
                "cniVersions",
                format!(
                    "none of them is supported (supported: {})",
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ));
        }
    }
    match obj.get("cniVersion") {
        Some(Value::String(s)) if supported(s) => Ok(s.clone()),
        Some(Value::String(s)) => Err(field_err(
            file,
            "cniVersion",
            format!(
                "version {s:?} is not supported (supported: {})",
                SUPPORTED_VERSIONS.join(", ")
            ),
        )),
        Some(_) => Err(field_err(file, "cniVersion", "expected a string")),
        None => Err(field_err(file, "cniVersion", "missing")),
    }
}

/// Parses and checks a network configuration list; errors name `file` and the field.
pub fn parse_list(value: &Value, file: &Path) -> Result<NetworkList, CniError> {
    let obj = value
        .as_object()
        .ok_or_else(|| field_err(file, "", "expected a JSON object"))?;
    let name = match obj.get("name") {
        Some(Value::String(s)) if valid_network_name(s) => s.clone(),
        Some(Value::String(s)) => {
            return Err(field_err(
                file,
                "name",
                format!(
                    "{s:?} is not a valid network name (an alphanumeric, then alphanumerics, \
                     '_', '.' or '-')"
                ),
            ))
        }
        Some(_) => return Err(field_err(file, "name", "expected a string")),
        None => return Err(field_err(file, "name", "missing")),
    };
    let cni_version = list_version(obj, file)?;
    let disable_check = bool_field(obj, "disableCheck", file)?;
    let disable_gc = bool_field(obj, "disableGC", file)?;
    let plugins_v = match obj.get("plugins") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) => return Err(field_err(file, "plugins", "empty: no plugin to run")),
        Some(_) => return Err(field_err(file, "plugins", "expected an array of objects")),
        None => return Err(field_err(file, "plugins", "missing")),
    };
    let mut plugins = Vec::with_capacity(plugins_v.len());
    for (i, p) in plugins_v.iter().enumerate() {
        let at = |f: &str| {
            if f.is_empty() {
                format!("plugins[{i}]")
            } else {
                format!("plugins[{i}].{f}")
            }
        };
        let conf = p
            .as_object()
            .ok_or_else(|| field_err(file, at(""), "expected an object"))?;
        let kind = match conf.get("type") {
            Some(Value::String(t))
                if !t.is_empty()
                    && !t.contains('/')
                    && t != "."
                    && t != ".."
                    && !t.contains('\0') =>
            {
                t.clone()
            }
            Some(Value::String(t)) => {
                return Err(field_err(
                    file,
                    at("type"),
                    format!("{t:?} is not a plugin binary name"),
                ))
            }
            Some(_) => return Err(field_err(file, at("type"), "expected a string")),
            None => return Err(field_err(file, at("type"), "missing")),
        };
        let mut capabilities = BTreeSet::new();
        match conf.get("capabilities") {
            None | Some(Value::Null) => {}
            Some(Value::Object(caps)) => {
                for (k, v) in caps {
                    match v {
                        Value::Bool(true) => {
                            capabilities.insert(k.clone());
                        }
                        Value::Bool(false) => {}
                        _ => {
                            return Err(field_err(
                                file,
                                at(&format!("capabilities.{k}")),
                                "expected true or false",
                            ))
                        }
                    }
                }
            }
            Some(_) => {
                return Err(field_err(
                    file,
                    at("capabilities"),
                    "expected an object of booleans",
                ))
            }
        }
        plugins.push(Plugin {
            kind,
            conf: conf.clone(),
            capabilities,
        });
    }
    Ok(NetworkList {
        name,
        cni_version,
        disable_check,
        disable_gc,
        plugins,
        raw: value.clone(),
        source: file.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::TempDir;

    const BRIDGE_LIST: &str = r#"{
        "cniVersion": "1.0.0", "name": "podnet",
        "plugins": [
            {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local"}},
            {"type": "portmap", "capabilities": {"portMappings": true, "bandwidth": false}}
        ]}"#;

    fn config_err(e: CniError) -> (PathBuf, String, String) {
        match e {
            CniError::Config { file, field, msg } => (file, field, msg),
            other => panic!("not a config error: {other:?}"),
        }
    }

    #[test]
    fn versions_order_numerically() {
        assert!(Version::parse("0.10.0") > Version::parse("0.4.0"));
        assert_eq!(Version::parse("1"), Some(Version(1, 0, 0)));
        assert_eq!(Version::parse("1.1"), Some(Version(1, 1, 0)));
        assert_eq!(Version::parse("1.x.0"), None);
        assert_eq!(Version::parse("1.0.0.0"), None);
        assert_eq!(Version::parse(""), None);
        assert!(Version::at_least("1.0.0", V0_4_0));
        assert!(!Version::at_least("0.3.1", V0_4_0));
        assert!(!Version::at_least("junk", V0_3_0));
    }

    #[test]
    fn loads_a_conflist() {
        let d = TempDir::new("cni-conf");
        std::fs::write(d.0.join("10-pods.conflist"), BRIDGE_LIST).unwrap();
        let list = load_dir(&d.0).unwrap().unwrap();
        assert_eq!(list.name, "podnet");
        assert_eq!(list.cni_version, "1.0.0");
        assert_eq!(list.source, d.0.join("10-pods.conflist"));
        let kinds: Vec<_> = list.plugins.iter().map(|p| p.kind.as_str()).collect();
        assert_eq!(kinds, ["bridge", "portmap"]);
        assert!(list.plugins[0].capabilities.is_empty());
        assert_eq!(
            list.plugins[1].capabilities.iter().collect::<Vec<_>>(),
            ["portMappings"]
        );
        assert_eq!(list.plugins[0].conf["bridge"], "cni0");
        assert!(!list.disable_check);
    }

    #[test]
    fn a_single_plugin_conf_is_wrapped_into_a_list() {
        let d = TempDir::new("cni-conf");
        std::fs::write(
            d.0.join("10-one.conf"),
            r#"{"cniVersion": "0.4.0", "name": "one", "type": "ptp", "ipMasq": true}"#,
        )
        .unwrap();
        let list = load_dir(&d.0).unwrap().unwrap();
        assert_eq!(list.name, "one");
        assert_eq!(list.cni_version, "0.4.0");
        assert_eq!(list.plugins.len(), 1);
        assert_eq!(list.plugins[0].kind, "ptp");
        assert_eq!(list.plugins[0].conf["ipMasq"], true);
        assert_eq!(list.raw["plugins"][0]["type"], "ptp");
        assert_eq!(list.raw["name"], "one");
    }

    #[test]
    fn json_files_are_single_plugin_configs_too() {
        let d = TempDir::new("cni-conf");
        std::fs::write(
            d.0.join("net.json"),
            r#"{"cniVersion": "1.0.0", "name": "j", "type": "macvlan"}"#,
        )
        .unwrap();
        assert_eq!(load_dir(&d.0).unwrap().unwrap().plugins[0].kind, "macvlan");
    }

    #[test]
    fn the_lexically_first_file_wins() {
        let d = TempDir::new("cni-conf");
        let one =
            |name: &str| format!(r#"{{"cniVersion":"1.0.0","name":"{name}","type":"bridge"}}"#);
        std::fs::write(d.0.join("99-last.conf"), one("last")).unwrap();
        std::fs::write(d.0.join("10-first.conf"), one("first")).unwrap();
        std::fs::write(d.0.join("20-middle.conflist"), BRIDGE_LIST).unwrap();
        // Not config files: another extension, a directory with a config name.
        std::fs::write(d.0.join("00-notes.txt"), "not json").unwrap();
        std::fs::create_dir(d.0.join("01-dir.conf")).unwrap();
        std::os::unix::fs::symlink("/nonexistent", d.0.join("02-dangling.conf")).unwrap();
        assert_eq!(
            conf_files(&d.0).unwrap(),
            [
                d.0.join("10-first.conf"),
                d.0.join("20-middle.conflist"),
                d.0.join("99-last.conf")
            ]
        );
        assert_eq!(load_dir(&d.0).unwrap().unwrap().name, "first");
        std::fs::remove_file(d.0.join("10-first.conf")).unwrap();
        assert_eq!(load_dir(&d.0).unwrap().unwrap().name, "podnet");
    }

    #[test]
    fn missing_or_empty_dir_is_no_config() {
        let d = TempDir::new("cni-conf");
        assert!(load_dir(&d.0).unwrap().is_none());
        assert!(load_dir(&d.0.join("absent")).unwrap().is_none());
        std::fs::write(d.0.join("README"), "x").unwrap();
        assert!(load_dir(&d.0).unwrap().is_none());
    }

    #[test]
    fn bad_json_names_the_file() {
        let d = TempDir::new("cni-conf");
        let f = d.0.join("10-bad.conflist");
        std::fs::write(&f, r#"{"cniVersion": "1.0.0", "name": "x", "plugins": [}"#).unwrap();
        let e = load_dir(&d.0).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("10-bad.conflist"), "{text}");
        assert!(text.contains("invalid JSON"), "{text}");
        assert!(text.contains("line 1"), "{text}");
        assert_eq!(config_err(e).0, f);
    }

    #[test]
    fn field_errors_name_the_file_and_field() {
        let d = TempDir::new("cni-conf");
        let f = d.0.join("a.conflist");
        let cases: &[(&str, &str)] = &[
            (
                r#"{"cniVersion":"1.0.0","plugins":[{"type":"bridge"}]}"#,
                "name",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"-x","plugins":[{"type":"b"}]}"#,
                "name",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n/../x","plugins":[{"type":"b"}]}"#,
                "name",
            ),
            (
                r#"{"name":"n","plugins":[{"type":"bridge"}]}"#,
                "cniVersion",
            ),
            (
                r#"{"cniVersion":"9.9.9","name":"n","plugins":[{"type":"bridge"}]}"#,
                "cniVersion",
            ),
            (
                r#"{"cniVersion":1,"name":"n","plugins":[{"type":"bridge"}]}"#,
                "cniVersion",
            ),
            (r#"{"cniVersion":"1.0.0","name":"n"}"#, "plugins"),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[]}"#,
                "plugins",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"},{}]}"#,
                "plugins[1].type",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../sh"}]}"#,
                "plugins[0].type",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[3]}"#,
                "plugins[0]",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"p","capabilities":{"portMappings":"yes"}}]}"#,
                "plugins[0].capabilities.portMappings",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","disableCheck":3,"plugins":[{"type":"p"}]}"#,
                "disableCheck",
            ),
            (
                r#"{"cniVersions":["7.0.0"],"name":"n","plugins":[{"type":"p"}]}"#,
                "cniVersions",
            ),
            (r#"["not an object"]"#, ""),
        ];
        for (text, field) in cases {
            std::fs::write(&f, text).unwrap();
            let e = load_file(&f).unwrap_err();
            let shown = e.to_string();
            let (file, got, _) = config_err(e);
            assert_eq!(file, f, "{text}");
            assert_eq!(&got, field, "{text}: {shown}");
            assert!(shown.contains("a.conflist"), "{shown}");
            if !field.is_empty() {
                assert!(shown.contains(&format!("`{field}`")), "{shown}");
            }
        }
    }

    #[test]
    fn a_conf_without_type_is_rejected() {
        let d = TempDir::new("cni-conf");
        let f = d.0.join("10-list-in-conf.conf");
        std::fs::write(&f, BRIDGE_LIST).unwrap();
        let (file, field, msg) = config_err(load_file(&f).unwrap_err());
        assert_eq!((file, field.as_str()), (f.clone(), "type"));
        assert!(msg.contains(".conflist"), "{msg}");
        std::fs::write(&f, r#"{"cniVersion":"1.0.0","name":"x"}"#).unwrap();
        assert_eq!(config_err(load_file(&f).unwrap_err()).1, "type");
    }

    #[test]
    fn cni_versions_picks_the_highest_supported() {
        let f = Path::new("x.conflist");
        let v: Value = serde_json::from_str(
            r#"{"cniVersion":"0.4.0","cniVersions":["1.0.0","1.1.0","2.0.0"],"name":"n",
                "disableCheck":"true","disableGC":true,"plugins":[{"type":"p"}]}"#,
        )
        .unwrap();
        let list = parse_list(&v, f).unwrap();
        assert_eq!(list.cni_version, "1.1.0");
        assert!(list.disable_check);
        assert!(list.disable_gc);
        // None supported: cniVersion is the fallback.
        let v: Value = serde_json::from_str(
            r#"{"cniVersion":"0.4.0","cniVersions":["2.0.0"],"name":"n","plugins":[{"type":"p"}]}"#,
        )
        .unwrap();
        assert_eq!(parse_list(&v, f).unwrap().cni_version, "0.4.0");
    }

    #[test]
    fn network_names() {
        assert!(valid_network_name("k8s-pod-network"));
        assert!(valid_network_name("a.b_c"));
        assert!(!valid_network_name(""));
        assert!(!valid_network_name(".hidden"));
        assert!(!valid_network_name("a b"));
        assert!(!valid_network_name("a/b"));
    }
}
