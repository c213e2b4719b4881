//! What each pod volume needs on the host, as a plan the executor carries out: directories,
//! tmpfs mounts, hostPath checks and the files of configMap, secret, downwardAPI and
//! projected volumes (kubelet's volume plugins `SetUpAt`, without the I/O).
//!
//! Layout as kubelet's: `<pod dir>/volumes/kubernetes.io~<plugin>/<volume name>`.

use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, Volume,
};

use super::context::Context;
use super::env::secret_data;
use super::error::{Missing, SpecError};
use super::fieldpath::{field_value, resource_value, FieldUse};
use super::pod;
use super::quantity::Qty;
use super::resources::pod_memory_limit;

/// The API default of `defaultMode` for every file-projecting volume.
pub const DEFAULT_MODE: u32 = 0o644;
/// kubelet makes an emptyDir world-writable so any user of the pod can use it.
pub const EMPTY_DIR_MODE: u32 = 0o777;

/// One volume's plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumePlan {
    pub name: String,
    /// What containers mount: the directory made here, or the hostPath itself.
    pub host_path: PathBuf,
    pub kind: VolumeKind,
    /// The pod's fsGroup: kubelet gives the volume's files this group (emptyDir and the file
    /// volumes; not hostPath). File modes below already include the group bits it adds.
    pub fs_group: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeKind {
    /// A directory of mode [`EMPTY_DIR_MODE`].
    EmptyDir,
    /// A tmpfs (emptyDir medium Memory), `size=` the bytes when known.
    Tmpfs { size_bytes: Option<i64> },
    /// A host path to check (and perhaps create) before it is mounted.
    HostPath { check: HostPathType },
    /// A directory holding exactly these files, mounted read-only.
    Files { files: Vec<File> },
}

/// A file to write, relative to the volume's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: String,
    pub data: Vec<u8>,
    pub mode: u32,
}

/// hostPath `type`, checked as kubelet's `checkType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostPathType {
    /// `""`: no check.
    Any,
    DirectoryOrCreate,
    Directory,
    FileOrCreate,
    File,
    Socket,
    CharDevice,
    BlockDevice,
}

/// What is at a host path, as the executor finds it with lstat-free `stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    Directory,
    File,
    Socket,
    CharDevice,
    BlockDevice,
    Other,
}

/// What the executor does for a hostPath after looking at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostPathAction {
    Nothing,
    /// Make the directory (and its parents), mode 0755.
    CreateDirectory,
    /// Make an empty file, mode 0644.
    CreateFile,
}

impl HostPathType {
    fn parse(s: Option<&str>, path: &str) -> Result<HostPathType, SpecError> {
        Ok(match s.unwrap_or("") {
            "" => HostPathType::Any,
            "DirectoryOrCreate" => HostPathType::DirectoryOrCreate,
            "Directory" => HostPathType::Directory,
            "FileOrCreate" => HostPathType::FileOrCreate,
            "File" => HostPathType::File,
            "Socket" => HostPathType::Socket,
            "CharDevice" => HostPathType::CharDevice,
            "BlockDevice" => HostPathType::BlockDevice,
            other => {
                return Err(SpecError::invalid(
                    path,
                    format!("{other} is an invalid volume type"),
                ))
            }
        })
    }

    /// The check against what `stat` found (None: nothing there), in kubelet's words.
    pub fn check(
        self,
        host_path: &Path,
        found: Option<FileType>,
    ) -> Result<HostPathAction, String> {
        let fail = |what: &str| {
            Err(format!(
                "hostPath type check failed: {} is not {what}",
                host_path.display()
            ))
        };
        let is = |t: FileType| found == Some(t);
        match self {
            HostPathType::Any => Ok(HostPathAction::Nothing),
            HostPathType::DirectoryOrCreate if found.is_none() => {
                Ok(HostPathAction::CreateDirectory)
            }
            HostPathType::FileOrCreate if found.is_none() => Ok(HostPathAction::CreateFile),
            HostPathType::DirectoryOrCreate | HostPathType::Directory
                if is(FileType::Directory) =>
            {
                Ok(HostPathAction::Nothing)
            }
            HostPathType::DirectoryOrCreate | HostPathType::Directory => fail("a directory"),
            HostPathType::FileOrCreate | HostPathType::File if is(FileType::File) => {
                Ok(HostPathAction::Nothing)
            }
            HostPathType::FileOrCreate | HostPathType::File => fail("a file"),
            HostPathType::Socket if is(FileType::Socket) => Ok(HostPathAction::Nothing),
            HostPathType::Socket => fail("a socket file"),
            HostPathType::CharDevice if is(FileType::CharDevice) => Ok(HostPathAction::Nothing),
            HostPathType::CharDevice => fail("a character device"),
            HostPathType::BlockDevice if is(FileType::BlockDevice) => Ok(HostPathAction::Nothing),
            HostPathType::BlockDevice => fail("a block device"),
        }
    }
}

/// The directory a volume's containers mount.
pub fn host_path(v: &Volume, ctx: &Context) -> Result<PathBuf, SpecError> {
    if let Some(h) = &v.host_path {
        return Ok(PathBuf::from(&h.path));
    }
    let plugin = if v.empty_dir.is_some() {
        "empty-dir"
    } else if v.config_map.is_some() {
        "configmap"
    } else if v.secret.is_some() {
        "secret"
    } else if v.downward_api.is_some() {
        "downward-api"
    } else if v.projected.is_some() {
        "projected"
    } else {
        return Err(SpecError::unsupported(
            format!("volume {:?}", v.name),
            "only emptyDir, hostPath, configMap, secret, downwardAPI and projected volumes",
        ));
    };
    Ok(ctx
        .paths
        .pod_dir
        .join("volumes")
        .join(format!("kubernetes.io~{plugin}"))
        .join(&v.name))
}

/// The plan of every volume of the pod, in spec order.
pub fn volume_plan(pod: &Pod, ctx: &Context) -> Result<Vec<VolumePlan>, SpecError> {
    let spec = pod::spec(pod)?;
    let fs_group = spec.security_context.as_ref().and_then(|s| s.fs_group);
    let mut out = Vec::new();
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        let path = format!("spec.volumes[{i}]");
        let host = host_path(v, ctx).map_err(|e| match e {
            SpecError::Unsupported { reason, .. } => SpecError::unsupported(&path, reason),
            e => e,
        })?;
        let files = |files: Vec<File>| VolumeKind::Files {
            // kubelet's SetVolumeOwnership adds r--r----- for the group of a read-only volume.
            files: files
                .into_iter()
                .map(|mut f| {
                    if fs_group.is_some() {
                        f.mode |= 0o440;
                    }
                    f
                })
                .collect(),
        };
        let (kind, group) = if let Some(e) = &v.empty_dir {
            match e.medium.as_deref().unwrap_or("") {
                "" => (VolumeKind::EmptyDir, fs_group),
                "Memory" => (
                    VolumeKind::Tmpfs {
                        size_bytes: tmpfs_size(pod, e.size_limit.as_ref(), ctx, &path)?,
                    },
                    fs_group,
                ),
                other => {
                    return Err(SpecError::unsupported(
                        format!("{path}.emptyDir.medium"),
                        format!("medium {other:?}"),
                    ))
                }
            }
        } else if let Some(h) = &v.host_path {
            if !Path::new(&h.path).is_absolute() {
                return Err(SpecError::invalid(
                    format!("{path}.hostPath.path"),
                    "must be an absolute path",
                ));
            }
            (
                VolumeKind::HostPath {
                    check: HostPathType::parse(
                        h.type_.as_deref(),
                        &format!("{path}.hostPath.type"),
                    )?,
                },
                None,
            )
        } else if let Some(c) = &v.config_map {
            let mode = default_mode(c.default_mode, &path)?;
            (
                files(config_map_files(
                    ctx,
                    &c.name,
                    c.items.as_deref(),
                    mode,
                    c.optional == Some(true),
                    &path,
                )?),
                fs_group,
            )
        } else if let Some(s) = &v.secret {
            let mode = default_mode(s.default_mode, &path)?;
            let name = s.secret_name.as_deref().unwrap_or("");
            (
                files(secret_files(
                    ctx,
                    name,
                    s.items.as_deref(),
                    mode,
                    s.optional == Some(true),
                    &path,
                )?),
                fs_group,
            )
        } else if let Some(d) = &v.downward_api {
            let mode = default_mode(d.default_mode, &path)?;
            (
                files(downward_files(
                    pod,
                    d.items.as_deref().unwrap_or(&[]),
                    mode,
                    ctx,
                    &format!("{path}.downwardAPI"),
                )?),
                fs_group,
            )
        } else if let Some(p) = &v.projected {
            let mode = default_mode(p.default_mode, &path)?;
            let mut all: Vec<File> = Vec::new();
            for (j, src) in p.sources.iter().flatten().enumerate() {
                let sp = format!("{path}.projected.sources[{j}]");
                let part = if let Some(c) = &src.config_map {
                    config_map_files(
                        ctx,
                        &c.name,
                        c.items.as_deref(),
                        mode,
                        c.optional == Some(true),
                        &sp,
                    )?
                } else if let Some(s) = &src.secret {
                    secret_files(
                        ctx,
                        &s.name,
                        s.items.as_deref(),
                        mode,
                        s.optional == Some(true),
                        &sp,
                    )?
                } else if let Some(d) = &src.downward_api {
                    downward_files(
                        pod,
                        d.items.as_deref().unwrap_or(&[]),
                        mode,
                        ctx,
                        &format!("{sp}.downwardAPI"),
                    )?
                } else if src.service_account_token.is_some() {
                    return Err(SpecError::unsupported(
                        format!("{sp}.serviceAccountToken"),
                        "no API server issues tokens",
                    ));
                } else {
                    return Err(SpecError::unsupported(
                        &sp,
                        "only configMap, secret and downwardAPI sources",
                    ));
                };
                // A later source's file replaces an earlier one at the same path, as kubelet's
                // payload map.
                for f in part {
                    all.retain(|g| g.path != f.path);
                    all.push(f);
                }
            }
            (files(all), fs_group)
        } else {
            return Err(SpecError::unsupported(&path, "volume kind"));
        };
        out.push(VolumePlan {
            name: v.name.clone(),
            host_path: host,
            kind,
            fs_group: group,
        });
    }
    Ok(out)
}

fn default_mode(m: Option<i32>, path: &str) -> Result<u32, SpecError> {
    mode(m, DEFAULT_MODE, &format!("{path}.defaultMode"))
}

fn mode(m: Option<i32>, default: u32, path: &str) -> Result<u32, SpecError> {
    match m {
        None => Ok(default),
        Some(m) if (0..=0o777).contains(&m) => Ok(m as u32),
        Some(m) => Err(SpecError::invalid(
            path,
            format!("{m} must be a number between 0 and 0777 (octal)"),
        )),
    }
}

/// A file's path inside its volume: relative, no `..` element (the API's and kubelet's
/// AtomicWriter rules), so nothing is written outside the volume.
fn file_path(p: &str, path: &str) -> Result<String, SpecError> {
    let pp = Path::new(p);
    if p.is_empty()
        || pp.is_absolute()
        || !pp
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(SpecError::invalid(
            path,
            format!("{p:?} must be a relative path without '..'"),
        ));
    }
    let clean: PathBuf = pp
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    Ok(clean.to_string_lossy().into_owned())
}

/// `MakePayload` for a configMap: every key (data and binaryData) at the default mode, or
/// the listed items at their paths and modes.
fn config_map_files(
    ctx: &Context,
    name: &str,
    items: Option<&[KeyToPath]>,
    mode: u32,
    optional: bool,
    path: &str,
) -> Result<Vec<File>, SpecError> {
    let empty = ConfigMap::default();
    let cm = match ctx.config_maps.get(name) {
        Some(cm) => cm,
        // An optional configMap that is missing gives an empty volume.
        None if optional => &empty,
        None => return Err(Missing::ConfigMap { name: name.into() }.into()),
    };
    let mut all: Vec<(String, Vec<u8>)> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    all.extend(
        cm.binary_data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone())),
    );
    payload(all, items, mode, optional, path, |key| {
        Missing::ConfigMapVolumeKey { key }
    })
}

fn secret_files(
    ctx: &Context,
    name: &str,
    items: Option<&[KeyToPath]>,
    mode: u32,
    optional: bool,
    path: &str,
) -> Result<Vec<File>, SpecError> {
    let empty = Secret::default();
    let s = match ctx.secrets.get(name) {
        Some(s) => s,
        None if optional => &empty,
        None => return Err(Missing::Secret { name: name.into() }.into()),
    };
    // Bytes as stored, not through the text view env vars use.
    let mut all: Vec<(String, Vec<u8>)> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in secret_data(s) {
        if !all.iter().any(|(a, _)| *a == k) {
            all.push((k, v.into_bytes()));
        }
    }
    payload(all, items, mode, optional, path, |key| {
        Missing::SecretVolumeKey { key }
    })
}

fn payload(
    data: Vec<(String, Vec<u8>)>,
    items: Option<&[KeyToPath]>,
    mode_all: u32,
    optional: bool,
    path: &str,
    missing: impl Fn(String) -> Missing,
) -> Result<Vec<File>, SpecError> {
    let items = items.unwrap_or(&[]);
    if items.is_empty() {
        return data
            .into_iter()
            .map(|(k, d)| {
                Ok(File {
                    path: file_path(&k, path)?,
                    data: d,
                    mode: mode_all,
                })
            })
            .collect();
    }
    let mut out = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let ip = format!("{path}.items[{i}]");
        let Some((_, d)) = data.iter().find(|(k, _)| *k == it.key) else {
            if optional {
                continue;
            }
            return Err(missing(it.key.clone()).into());
        };
        out.push(File {
            path: file_path(&it.path, &format!("{ip}.path"))?,
            data: d.clone(),
            mode: mode(it.mode, mode_all, &format!("{ip}.mode"))?,
        });
    }
    Ok(out)
}

/// `downwardapi.CollectData`: metadata fields and resource values as files.
fn downward_files(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    mode_all: u32,
    ctx: &Context,
    path: &str,
) -> Result<Vec<File>, SpecError> {
    let mut out = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let ip = format!("{path}.items[{i}]");
        let value = if let Some(f) = &it.field_ref {
            field_value(f, pod, ctx, FieldUse::Volume, &format!("{ip}.fieldRef"))?
        } else if let Some(r) = &it.resource_field_ref {
            resource_value(r, pod, None, ctx, &format!("{ip}.resourceFieldRef"))?
        } else {
            String::new()
        };
        out.push(File {
            path: file_path(&it.path, &format!("{ip}.path"))?,
            data: value.into_bytes(),
            mode: mode(it.mode, mode_all, &format!("{ip}.mode"))?,
        });
    }
    Ok(out)
}

/// kubelet's `calculateEmptyDirMemorySize`: the node's allocatable memory, lowered to the
/// pod's memory limit and then to the volume's sizeLimit when they are smaller.
fn tmpfs_size(
    pod: &Pod,
    limit: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    ctx: &Context,
    path: &str,
) -> Result<Option<i64>, SpecError> {
    let mut size = ctx.allocatable.memory_bytes;
    if let Some(pod_limit) = pod_memory_limit(pod::spec(pod)?)? {
        if pod_limit > 0 && pod_limit <= size {
            size = pod_limit;
        }
    }
    if let Some(l) = limit {
        let v = Qty::of(l)
            .map_err(|e| SpecError::invalid(format!("{path}.emptyDir.sizeLimit"), e.to_string()))?
            .value();
        if v > 0 && (size <= 0 || v <= size) {
            size = v;
        }
    }
    Ok((size > 0).then_some(size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podspec::context::NodeResources;
    use crate::podspec::testutil::{container, pod_with};
    use k8s_openapi::api::core::v1::{
        ConfigMapProjection, ConfigMapVolumeSource, DownwardAPIVolumeSource, EmptyDirVolumeSource,
        HostPathVolumeSource, ObjectFieldSelector, PodSecurityContext, ProjectedVolumeSource,
        SecretVolumeSource, VolumeProjection,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::ByteString;

    fn ctx() -> Context {
        let mut ctx = Context::default();
        ctx.paths.pod_dir = "/pods/uid-1".into();
        ctx.allocatable = NodeResources {
            cpu_millis: 2000,
            memory_bytes: 1 << 30,
        };
        ctx.config_maps.insert(
            "cfg".into(),
            ConfigMap {
                data: Some(
                    [
                        ("a.conf".to_string(), "A".to_string()),
                        ("b".into(), "B".into()),
                    ]
                    .into(),
                ),
                binary_data: Some([("bin".to_string(), ByteString(vec![0, 1]))].into()),
                ..Default::default()
            },
        );
        ctx.secrets.insert(
            "sec".into(),
            Secret {
                data: Some([("key".to_string(), ByteString(b"k".to_vec()))].into()),
                ..Default::default()
            },
        );
        ctx
    }

    fn vol(name: &str, f: impl FnOnce(&mut Volume)) -> Volume {
        let mut v = Volume {
            name: name.into(),
            ..Default::default()
        };
        f(&mut v);
        v
    }

    fn plan(vols: Vec<Volume>, ctx: &Context) -> Result<Vec<VolumePlan>, SpecError> {
        let mut p = pod_with(vec![container("c")]);
        p.spec.as_mut().unwrap().volumes = Some(vols);
        volume_plan(&p, ctx)
    }

    fn files(p: &VolumePlan) -> Vec<(String, Vec<u8>, u32)> {
        match &p.kind {
            VolumeKind::Files { files } => files
                .iter()
                .map(|f| (f.path.clone(), f.data.clone(), f.mode))
                .collect(),
            k => panic!("not files: {k:?}"),
        }
    }

    #[test]
    fn empty_dirs_and_host_paths() {
        let c = ctx();
        let p = plan(
            vec![
                vol("scratch", |v| {
                    v.empty_dir = Some(EmptyDirVolumeSource::default())
                }),
                vol("mem", |v| {
                    v.empty_dir = Some(EmptyDirVolumeSource {
                        medium: Some("Memory".into()),
                        size_limit: Some(Quantity("64Mi".into())),
                    })
                }),
                vol("mem-unlimited", |v| {
                    v.empty_dir = Some(EmptyDirVolumeSource {
                        medium: Some("Memory".into()),
                        size_limit: None,
                    })
                }),
                vol("host", |v| {
                    v.host_path = Some(HostPathVolumeSource {
                        path: "/srv/data".into(),
                        type_: Some("DirectoryOrCreate".into()),
                    })
                }),
            ],
            &c,
        )
        .unwrap();
        assert_eq!(
            p[0].host_path,
            PathBuf::from("/pods/uid-1/volumes/kubernetes.io~empty-dir/scratch")
        );
        assert_eq!(p[0].kind, VolumeKind::EmptyDir);
        assert_eq!(
            p[1].kind,
            VolumeKind::Tmpfs {
                size_bytes: Some(64 << 20)
            }
        );
        assert_eq!(
            p[2].kind,
            VolumeKind::Tmpfs {
                size_bytes: Some(1 << 30)
            }
        );
        assert_eq!(p[3].host_path, PathBuf::from("/srv/data"));
        assert_eq!(
            p[3].kind,
            VolumeKind::HostPath {
                check: HostPathType::DirectoryOrCreate
            }
        );
    }

    #[test]
    fn host_path_checks() {
        use FileType as F;
        use HostPathAction as A;
        use HostPathType as T;
        let p = Path::new("/x");
        let cases: &[(T, Option<F>, Result<A, &str>)] = &[
            (T::Any, None, Ok(A::Nothing)),
            (T::DirectoryOrCreate, None, Ok(A::CreateDirectory)),
            (T::DirectoryOrCreate, Some(F::Directory), Ok(A::Nothing)),
            (
                T::DirectoryOrCreate,
                Some(F::File),
                Err("hostPath type check failed: /x is not a directory"),
            ),
            (
                T::Directory,
                None,
                Err("hostPath type check failed: /x is not a directory"),
            ),
            (T::FileOrCreate, None, Ok(A::CreateFile)),
            (
                T::File,
                Some(F::Directory),
                Err("hostPath type check failed: /x is not a file"),
            ),
            (T::Socket, Some(F::Socket), Ok(A::Nothing)),
            (
                T::Socket,
                Some(F::File),
                Err("hostPath type check failed: /x is not a socket file"),
            ),
            (
                T::CharDevice,
                None,
                Err("hostPath type check failed: /x is not a character device"),
            ),
            (
                T::BlockDevice,
                Some(F::CharDevice),
                Err("hostPath type check failed: /x is not a block device"),
            ),
        ];
        for (t, found, want) in cases {
            assert_eq!(
                t.check(p, *found),
                want.map_err(str::to_string),
                "{t:?} {found:?}"
            );
        }
        let bad = plan(
            vec![vol("h", |v| {
                v.host_path = Some(HostPathVolumeSource {
                    path: "/x".into(),
                    type_: Some("Dir".into()),
                })
            })],
            &ctx(),
        );
        assert!(bad.is_err());
    }

    #[test]
    fn config_map_and_secret_files() {
        let mut c = ctx();
        let cm = |items: Option<Vec<KeyToPath>>, optional: Option<bool>, name: &str| {
            vol("v", |v| {
                v.config_map = Some(ConfigMapVolumeSource {
                    name: name.into(),
                    items,
                    optional,
                    default_mode: None,
                })
            })
        };
        let all = plan(vec![cm(None, None, "cfg")], &c).unwrap();
        assert_eq!(
            files(&all[0]),
            [
                ("a.conf".to_string(), b"A".to_vec(), 0o644),
                ("b".into(), b"B".to_vec(), 0o644),
                ("bin".into(), vec![0, 1], 0o644)
            ]
        );
        let kp = |k: &str, p: &str, m: Option<i32>| KeyToPath {
            key: k.into(),
            path: p.into(),
            mode: m,
        };
        let some = plan(
            vec![cm(
                Some(vec![kp("b", "sub/b.txt", Some(0o600))]),
                None,
                "cfg",
            )],
            &c,
        )
        .unwrap();
        assert_eq!(
            files(&some[0]),
            [("sub/b.txt".to_string(), b"B".to_vec(), 0o600)]
        );
        // Missing key: an error unless optional.
        let e = plan(vec![cm(Some(vec![kp("nope", "n", None)]), None, "cfg")], &c).unwrap_err();
        assert_eq!(
            e.to_string(),
            "configmap references non-existent config key: nope"
        );
        assert!(files(
            &plan(
                vec![cm(Some(vec![kp("nope", "n", None)]), Some(true), "cfg")],
                &c
            )
            .unwrap()[0]
        )
        .is_empty());
        // Missing configMap: an error unless optional, then an empty volume.
        assert_eq!(
            plan(vec![cm(None, None, "gone")], &c)
                .unwrap_err()
                .to_string(),
            "configmap \"gone\" not found"
        );
        assert!(files(&plan(vec![cm(None, Some(true), "gone")], &c).unwrap()[0]).is_empty());
        // Paths that climb out are refused.
        assert!(plan(vec![cm(Some(vec![kp("b", "../x", None)]), None, "cfg")], &c).is_err());
        assert!(plan(
            vec![cm(Some(vec![kp("b", "/etc/x", None)]), None, "cfg")],
            &c
        )
        .is_err());
        // A secret with defaultMode, and fsGroup adding group read.
        let sv = vol("s", |v| {
            v.secret = Some(SecretVolumeSource {
                secret_name: Some("sec".into()),
                default_mode: Some(0o400),
                ..Default::default()
            })
        });
        let mut p = pod_with(vec![container("c")]);
        let spec = p.spec.as_mut().unwrap();
        spec.volumes = Some(vec![sv]);
        spec.security_context = Some(PodSecurityContext {
            fs_group: Some(2000),
            ..Default::default()
        });
        let sp = volume_plan(&p, &c).unwrap();
        assert_eq!(files(&sp[0]), [("key".to_string(), b"k".to_vec(), 0o440)]);
        assert_eq!(sp[0].fs_group, Some(2000));
        assert_eq!(
            sp[0].host_path,
            PathBuf::from("/pods/uid-1/volumes/kubernetes.io~secret/s")
        );
        c.secrets.clear();
        assert_eq!(
            volume_plan(&p, &c).unwrap_err().to_string(),
            "secret \"sec\" not found"
        );
    }

    #[test]
    fn downward_and_projected() {
        let c = ctx();
        let item = |path: &str, fp: &str| DownwardAPIVolumeFile {
            path: path.into(),
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: fp.into(),
            }),
            mode: None,
            resource_field_ref: None,
        };
        let mut p = pod_with(vec![container("c")]);
        p.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
        p.spec.as_mut().unwrap().volumes = Some(vec![
            vol("d", |v| {
                v.downward_api = Some(DownwardAPIVolumeSource {
                    items: Some(vec![
                        item("name", "metadata.name"),
                        item("labels", "metadata.labels"),
                    ]),
                    default_mode: None,
                })
            }),
            vol("p", |v| {
                v.projected = Some(ProjectedVolumeSource {
                    default_mode: Some(0o600),
                    sources: Some(vec![
                        VolumeProjection {
                            config_map: Some(ConfigMapProjection {
                                name: "cfg".into(),
                                items: Some(vec![KeyToPath {
                                    key: "a.conf".into(),
                                    path: "x".into(),
                                    mode: None,
                                }]),
                                optional: None,
                            }),
                            ..Default::default()
                        },
                        VolumeProjection {
                            downward_api: Some(k8s_openapi::api::core::v1::DownwardAPIProjection {
                                items: Some(vec![item("ns", "metadata.namespace")]),
                            }),
                            ..Default::default()
                        },
                    ]),
                })
            }),
        ]);
        let plan = volume_plan(&p, &c).unwrap();
        assert_eq!(
            files(&plan[0]),
            [
                ("name".to_string(), b"web".to_vec(), 0o644),
                ("labels".into(), b"app=\"web\"".to_vec(), 0o644)
            ]
        );
        assert_eq!(
            files(&plan[1]),
            [
                ("x".to_string(), b"A".to_vec(), 0o600),
                ("ns".into(), b"default".to_vec(), 0o600)
            ]
        );
        // status fields are not available to volumes.
        p.spec.as_mut().unwrap().volumes = Some(vec![vol("d", |v| {
            v.downward_api = Some(DownwardAPIVolumeSource {
                items: Some(vec![item("ip", "status.podIP")]),
                default_mode: None,
            })
        })]);
        assert!(volume_plan(&p, &c).is_err());
    }
}
