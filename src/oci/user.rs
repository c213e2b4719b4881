//! Container user resolution: which uid, gid and supplementary groups the container's first
//! process runs with.
//!
//! The sources, in containerd's order of precedence: `run_as_username`, else `run_as_user`,
//! else the image config's `User` (`"uid"`, `"name"`, `"uid:gid"`, `"name:group"`, ...);
//! `run_as_group` overrides the group part. Names are looked up in the image's own
//! `/etc/passwd` and `/etc/group`, read through [`resolve_in_root`] so a symlinked file in a
//! hostile image cannot make us read a host file. A missing file means only numeric ids work.
//!
//! We never write `/etc/passwd` into the rootfs (CRI-O's CVE-2022-4318 came from appending an
//! entry built from unchecked values): the files are only read here.

use std::io::Read;
use std::path::Path;

use crate::api::{LinuxContainerSecurityContext, SupplementalGroupsPolicy};
use crate::fsutil::resolve_in_root;
use crate::oci::spec::SpecError;

/// Largest `/etc/passwd` or `/etc/group` we read from an image; anything bigger is refused
/// rather than loaded into memory.
const MAX_DB_FILE: u64 = 4 << 20;

/// One line of an `/etc/passwd` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswdEntry {
    /// Login name.
    pub name: String,
    /// Numeric user id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory (may be empty).
    pub home: String,
    /// Login shell (may be empty).
    pub shell: String,
}

/// One line of an `/etc/group` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupEntry {
    /// Group name.
    pub name: String,
    /// Numeric group id.
    pub gid: u32,
    /// User names listed as members (the fourth field).
    pub members: Vec<String>,
}

/// The identity the container's first process gets, as written into `process.user`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvedUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups: the primary gid first (containerd's fix for CVE-2023-25173), then
    /// the image's `/etc/group` memberships (unless the policy is Strict), then the CRI
    /// `supplemental_groups`; duplicates removed, first occurrence kept.
    pub additional_gids: Vec<u32>,
    /// The user name when one is known (given by name, or found in `/etc/passwd`).
    pub username: Option<String>,
}

impl ResolvedUser {
    /// The user recorded in a generated spec (`process.user`), for callers that need the
    /// uid/gid later (e.g. `ContainerStatus.user`). `None` when the spec has no process.
    pub fn from_spec(spec: &oci_spec::runtime::Spec) -> Option<Self> {
        let u = spec.process().as_ref()?.user();
        Some(Self {
            uid: u.uid(),
            gid: u.gid(),
            additional_gids: u.additional_gids().clone().unwrap_or_default(),
            username: u.username().clone(),
        })
    }
}

/// A user or group named either by number or by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdRef {
    /// A numeric id.
    Id(u32),
    /// A name to look up.
    Name(String),
}

impl IdRef {
    /// A decimal number is an id (as in runc/containerd), anything else is a name.
    fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("empty user or group".into());
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return match s.parse::<u32>() {
                Ok(id) if id != u32::MAX => Ok(IdRef::Id(id)),
                _ => Err(format!("id {s:?} out of range")),
            };
        }
        if s.contains(['\0', '\n', ':']) {
            return Err(format!("invalid name {s:?}"));
        }
        Ok(IdRef::Name(s.to_string()))
    }
}

/// Parses a `user[:group]` string as found in an image config's `User`. An empty group part
/// (`"app:"`) means no group was given.
pub fn parse_user_string(s: &str) -> Result<(IdRef, Option<IdRef>), String> {
    let (user, group) = match s.split_once(':') {
        Some((u, g)) => (u, (!g.is_empty()).then_some(g)),
        None => (s, None),
    };
    Ok((IdRef::parse(user)?, group.map(IdRef::parse).transpose()?))
}

/// The `:`-separated fields of one /etc/passwd or /etc/group line, or None for comment, blank
/// and NIS (`+`/`-`) lines and lines with fewer than `min` fields or an empty name.
fn db_fields(line: &str, min: usize) -> Option<Vec<&str>> {
    let line = line.trim_end_matches('\r');
    if line.is_empty() || line.starts_with(['#', '+', '-']) {
        return None;
    }
    let f: Vec<&str> = line.split(':').collect();
    (f.len() >= min && !f[0].is_empty()).then_some(f)
}

/// Parses `/etc/passwd` content. Comment, blank, NIS (`+`/`-`) and malformed lines (too few
/// fields, non-numeric ids) are skipped, as libcontainer's parser does.
pub fn parse_passwd(content: &str) -> Vec<PasswdEntry> {
    content
        .lines()
        .filter_map(|line| {
            let f = db_fields(line, 4)?;
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].trim().parse().ok()?,
                gid: f[3].trim().parse().ok()?,
                home: f.get(5).unwrap_or(&"").to_string(),
                shell: f.get(6).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

/// Parses `/etc/group` content (`name:password:gid:member,member`), skipping lines that do
/// not parse.
pub fn parse_group(content: &str) -> Vec<GroupEntry> {
    content
        .lines()
        .filter_map(|line| {
            let f = db_fields(line, 3)?;
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].trim().parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Why a user could not be resolved; [`resolve_container_user`] turns it into a
/// [`SpecError`] naming the CRI field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserError {
    /// The user name is not in the image's `/etc/passwd` (or the file is missing).
    UnknownUser(String),
    /// The group name is not in the image's `/etc/group` (or the file is missing).
    UnknownGroup(String),
}

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserError::UnknownUser(n) => write!(f, "no user {n:?} in the image's /etc/passwd"),
            UserError::UnknownGroup(n) => write!(f, "no group {n:?} in the image's /etc/group"),
        }
    }
}

/// Resolves `user` (and an optional `group` override) against parsed databases. `passwd` and
/// `groups` are `None` when the image has no such file. `merge_image_groups` adds the groups
/// listing the user as a member (Merge policy); `supplemental` is appended last.
///
/// Rules (containerd's `WithUser`/`WithAdditionalGIDs`): a numeric uid needs no passwd entry
/// (gid then 0 unless the entry exists); a name must exist; a numeric gid needs no group
/// entry; a group name must exist.
pub fn resolve_user(
    user: &IdRef,
    group: Option<&IdRef>,
    passwd: Option<&[PasswdEntry]>,
    groups: Option<&[GroupEntry]>,
    merge_image_groups: bool,
    supplemental: &[u32],
) -> Result<ResolvedUser, UserError> {
    let passwd = passwd.unwrap_or(&[]);
    let groups = groups.unwrap_or(&[]);
    let entry = match user {
        IdRef::Id(uid) => passwd.iter().find(|p| p.uid == *uid),
        IdRef::Name(name) => Some(
            passwd
                .iter()
                .find(|p| &p.name == name)
                .ok_or_else(|| UserError::UnknownUser(name.clone()))?,
        ),
    };
    let uid = match user {
        IdRef::Id(uid) => *uid,
        IdRef::Name(_) => entry.map(|e| e.uid).unwrap_or(0),
    };
    let gid = match group {
        Some(IdRef::Id(gid)) => *gid,
        Some(IdRef::Name(name)) => groups
            .iter()
            .find(|g| &g.name == name)
            .map(|g| g.gid)
            .ok_or_else(|| UserError::UnknownGroup(name.clone()))?,
        None => entry.map(|e| e.gid).unwrap_or(0),
    };
    let username = match user {
        IdRef::Name(n) => Some(n.clone()),
        IdRef::Id(_) => entry.map(|e| e.name.clone()),
    };
    let mut additional = vec![gid];
    if merge_image_groups {
        if let Some(name) = &username {
            additional.extend(
                groups
                    .iter()
                    .filter(|g| &g.name != name && g.members.iter().any(|m| m == name))
                    .map(|g| g.gid),
            );
        }
    }
    additional.extend_from_slice(supplemental);
    let mut seen = std::collections::HashSet::new();
    additional.retain(|g| seen.insert(*g));
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids: additional,
        username,
    })
}

/// Reads the file at `path` inside `rootfs` without following symlinks out of it. `Ok(None)` when
/// the file does not exist; an error when it is not a regular file or is too large.
pub fn read_rootfs_file(rootfs: &Path, path: &str) -> std::io::Result<Option<String>> {
    let resolved = resolve_in_root(rootfs, Path::new(path))?;
    let file = match std::fs::File::open(&resolved) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{path} in the image is not a regular file"),
        ));
    }
    if meta.len() > MAX_DB_FILE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{path} in the image is larger than {MAX_DB_FILE} bytes"),
        ));
    }
    let mut buf = Vec::new();
    file.take(MAX_DB_FILE).read_to_end(&mut buf)?;
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// Field path prefix of the container security context in CRI errors.
const SC: &str = "config.linux.security_context";

/// Resolves the container's user from its security context and the image's `User`, reading
/// the image's `/etc/passwd` and `/etc/group` inside `rootfs`.
pub fn resolve_container_user(
    rootfs: &Path,
    sc: Option<&LinuxContainerSecurityContext>,
    image_user: Option<&str>,
) -> Result<ResolvedUser, SpecError> {
    let invalid = |field: &str, reason: String| SpecError::InvalidArgument {
        field: field.to_string(),
        reason,
    };
    let to_id = |field: &str, v: i64| -> Result<u32, SpecError> {
        u32::try_from(v)
            .ok()
            .filter(|id| *id != u32::MAX)
            .ok_or_else(|| invalid(field, format!("id {v} out of range")))
    };

    let run_as_username = sc.map(|s| s.run_as_username.as_str()).unwrap_or("");
    let run_as_user = sc.and_then(|s| s.run_as_user);
    let run_as_group = sc.and_then(|s| s.run_as_group);

    // Which field the user came from, for error messages.
    let (user_field, user, image_group) = if !run_as_username.is_empty() {
        let field = format!("{SC}.run_as_username");
        let u = IdRef::parse(run_as_username).map_err(|r| invalid(&field, r))?;
        // As in containerd, an all-digit name is taken as a uid.
        (field, u, None)
    } else if let Some(u) = run_as_user {
        let field = format!("{SC}.run_as_user");
        (field.clone(), IdRef::Id(to_id(&field, u.value)?), None)
    } else if let Some(image_user) = image_user.filter(|u| !u.is_empty()) {
        let field = "image.config.User".to_string();
        let (u, g) = parse_user_string(image_user).map_err(|r| invalid(&field, r))?;
        (field, u, g)
    } else {
        ("image.config.User".to_string(), IdRef::Id(0), None)
    };
    let (group_field, group) = match run_as_group {
        Some(g) => {
            if run_as_username.is_empty() && run_as_user.is_none() {
                return Err(invalid(
                    &format!("{SC}.run_as_group"),
                    "run_as_group is specified without run_as_user or run_as_username".into(),
                ));
            }
            let field = format!("{SC}.run_as_group");
            let gid = to_id(&field, g.value)?;
            (field, Some(IdRef::Id(gid)))
        }
        None => (user_field.clone(), image_group),
    };

    let mut supplemental = Vec::new();
    for (i, g) in sc
        .map(|s| s.supplemental_groups.as_slice())
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        supplemental.push(to_id(&format!("{SC}.supplemental_groups[{i}]"), *g)?);
    }
    let merge = sc.map(|s| s.supplemental_groups_policy).unwrap_or(0)
        != SupplementalGroupsPolicy::Strict as i32;

    let io = |path: &str, e: std::io::Error| SpecError::Io {
        context: format!("reading {path} in the image"),
        source: e,
    };
    let passwd = read_rootfs_file(rootfs, "/etc/passwd")
        .map_err(|e| io("/etc/passwd", e))?
        .map(|c| parse_passwd(&c));
    let groups = read_rootfs_file(rootfs, "/etc/group")
        .map_err(|e| io("/etc/group", e))?
        .map(|c| parse_group(&c));

    resolve_user(
        &user,
        group.as_ref(),
        passwd.as_deref(),
        groups.as_deref(),
        merge,
        &supplemental,
    )
    .map_err(|e| match e {
        UserError::UnknownUser(_) => invalid(&user_field, e.to_string()),
        UserError::UnknownGroup(_) => invalid(&group_field, e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Int64Value;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
# a comment

daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
app:x:1000:1000:App:/home/app:/bin/sh
broken:x:notanumber:1
+nis
short:x:5
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
";
    const GROUP: &str = "\
root:x:0:
wheel:x:10:root,app
app:x:1000:app
audio:x:29:app, daemon
staff:x:50:
bad:x:zz:app
";

    fn db() -> (Vec<PasswdEntry>, Vec<GroupEntry>) {
        (parse_passwd(PASSWD), parse_group(GROUP))
    }

    #[test]
    fn parses_passwd_and_group() {
        let (p, g) = db();
        assert_eq!(
            p.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            ["root", "daemon", "app", "nobody"]
        );
        assert_eq!(p[2].uid, 1000);
        assert_eq!(p[2].home, "/home/app");
        assert_eq!(
            g.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            ["root", "wheel", "app", "audio", "staff"]
        );
        assert_eq!(g[3].members, ["app", "daemon"]);
        assert!(g[0].members.is_empty());
    }

    #[test]
    fn user_strings() {
        use IdRef::*;
        let n = |s: &str| Name(s.to_string());
        type Parsed = Result<(IdRef, Option<IdRef>), ()>;
        let cases: &[(&str, Parsed)] = &[
            ("0", Ok((Id(0), None))),
            ("1000", Ok((Id(1000), None))),
            ("app", Ok((n("app"), None))),
            ("1000:50", Ok((Id(1000), Some(Id(50))))),
            ("app:staff", Ok((n("app"), Some(n("staff"))))),
            ("app:50", Ok((n("app"), Some(Id(50))))),
            ("1000:staff", Ok((Id(1000), Some(n("staff"))))),
            ("app:", Ok((n("app"), None))),
            (":50", Err(())),
            ("4294967296", Err(())),
            ("4294967295", Err(())),
            ("a\0b", Err(())),
        ];
        for (s, want) in cases {
            let got = parse_user_string(s).map_err(|_| ());
            assert_eq!(&got, want, "{s:?}");
        }
    }

    #[test]
    fn resolution_matrix() {
        let (p, g) = db();
        let r = |u: &str, merge: bool, supp: &[u32]| {
            let (user, group) = parse_user_string(u).unwrap();
            resolve_user(&user, group.as_ref(), Some(&p), Some(&g), merge, supp)
        };
        // name → uid/gid from passwd, memberships from group (own-named group excluded,
        // primary gid first).
        let app = r("app", true, &[]).unwrap();
        assert_eq!((app.uid, app.gid), (1000, 1000));
        assert_eq!(app.additional_gids, [1000, 10, 29]);
        assert_eq!(app.username.as_deref(), Some("app"));
        // numeric uid known in passwd → same result.
        assert_eq!(r("1000", true, &[]).unwrap(), app);
        // numeric uid unknown → gid 0, no memberships.
        let u = r("4242", true, &[]).unwrap();
        assert_eq!(
            (u.uid, u.gid, u.additional_gids.clone()),
            (4242, 0, vec![0])
        );
        assert_eq!(u.username, None);
        // explicit group overrides the passwd gid.
        let ag = r("app:staff", true, &[]).unwrap();
        assert_eq!((ag.uid, ag.gid), (1000, 50));
        assert_eq!(ag.additional_gids, [50, 10, 29]);
        assert_eq!(r("app:77", true, &[]).unwrap().gid, 77);
        // supplemental groups appended, deduplicated, order kept.
        assert_eq!(
            r("app", true, &[29, 3000, 1000, 3000])
                .unwrap()
                .additional_gids,
            [1000, 10, 29, 3000]
        );
        // Strict policy: no image memberships.
        assert_eq!(r("app", false, &[5]).unwrap().additional_gids, [1000, 5]);
        // unknown names are errors.
        assert_eq!(
            r("ghost", true, &[]),
            Err(UserError::UnknownUser("ghost".into()))
        );
        assert_eq!(
            r("app:ghosts", true, &[]),
            Err(UserError::UnknownGroup("ghosts".into()))
        );
        // no passwd file: numeric works, names do not.
        let (user, _) = parse_user_string("123").unwrap();
        assert_eq!(
            resolve_user(&user, None, None, None, true, &[])
                .unwrap()
                .uid,
            123
        );
        let (user, _) = parse_user_string("app").unwrap();
        assert!(resolve_user(&user, None, None, None, true, &[]).is_err());
    }

    fn rootfs(with_files: bool) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("peapod-user-{}", crate::fsutil::new_id()));
        std::fs::create_dir_all(d.join("etc")).unwrap();
        if with_files {
            std::fs::write(d.join("etc/passwd"), PASSWD).unwrap();
            std::fs::write(d.join("etc/group"), GROUP).unwrap();
        }
        d
    }

    #[test]
    fn container_user_precedence() {
        let root = rootfs(true);
        let sc =
            |user: Option<i64>, name: &str, group: Option<i64>| LinuxContainerSecurityContext {
                run_as_user: user.map(|value| Int64Value { value }),
                run_as_username: name.to_string(),
                run_as_group: group.map(|value| Int64Value { value }),
                supplemental_groups: vec![3000],
                ..Default::default()
            };
        // image user only
        let u = resolve_container_user(&root, None, Some("app")).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        // run_as_user beats the image
        let u = resolve_container_user(&root, Some(&sc(Some(1), "", None)), Some("app")).unwrap();
        assert_eq!((u.uid, u.gid), (1, 1));
        assert_eq!(u.additional_gids, [1, 29, 3000]);
        // run_as_username beats run_as_user
        let u =
            resolve_container_user(&root, Some(&sc(Some(1), "app", Some(7))), Some("0")).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 7));
        // nothing → root with root's groups
        let u = resolve_container_user(&root, None, None).unwrap();
        assert_eq!(
            (u.uid, u.gid, u.additional_gids.clone()),
            (0, 0, vec![0, 10])
        );
        // errors name the field
        let err = |r: Result<ResolvedUser, SpecError>| match r.unwrap_err() {
            SpecError::InvalidArgument { field, .. } => field,
            e => panic!("unexpected {e:?}"),
        };
        assert_eq!(
            err(resolve_container_user(
                &root,
                Some(&sc(None, "ghost", None)),
                None
            )),
            "config.linux.security_context.run_as_username"
        );
        assert_eq!(
            err(resolve_container_user(&root, None, Some("ghost"))),
            "image.config.User"
        );
        assert_eq!(
            err(resolve_container_user(
                &root,
                Some(&sc(Some(-1), "", None)),
                None
            )),
            "config.linux.security_context.run_as_user"
        );
        assert_eq!(
            err(resolve_container_user(
                &root,
                Some(&sc(None, "", Some(5))),
                Some("app")
            )),
            "config.linux.security_context.run_as_group"
        );
        let mut bad_supp = sc(Some(1), "", None);
        bad_supp.supplemental_groups = vec![1, -5];
        assert_eq!(
            err(resolve_container_user(&root, Some(&bad_supp), None)),
            "config.linux.security_context.supplemental_groups[1]"
        );
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn missing_files_mean_numeric_only_and_symlinks_stay_inside() {
        let root = rootfs(false);
        let u = resolve_container_user(&root, None, Some("1234:55")).unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids), (1234, 55, vec![55]));
        assert!(resolve_container_user(&root, None, Some("app")).is_err());
        // Symlinks pointing at a host file resolve inside the rootfs (where it is absent).
        let host = std::env::temp_dir().join(format!("peapod-hostdb-{}", crate::fsutil::new_id()));
        std::fs::write(&host, "evil:x:0:0::/:/bin/sh\nevil:x:0:\n").unwrap();
        std::os::unix::fs::symlink(&host, root.join("etc/passwd")).unwrap();
        let rel = format!("../../../../../../../..{}", host.display());
        std::os::unix::fs::symlink(rel, root.join("etc/group")).unwrap();
        assert!(resolve_container_user(&root, None, Some("evil")).is_err());
        assert!(resolve_container_user(&root, None, Some("0:evil")).is_err());
        let u = resolve_container_user(&root, None, Some("0")).unwrap();
        assert_eq!(u.username, None, "host file must not be read");
        std::fs::remove_file(host).unwrap();
        std::fs::remove_dir_all(root).unwrap();
    }
}
