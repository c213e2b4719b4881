//! A container's environment, as kubelet's `makeEnvironmentVariables`: `envFrom` first (a
//! later source wins), then `env` in order, each `value` expanded against the variables
//! defined before it, each `valueFrom` resolved. Kubelet hands the runtime a map, so its order
//! is random; here a variable keeps the place it was first defined, which is deterministic.
//! Service links are not made: there is no API server and so no Services.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::context::Context;
use super::error::{Missing, SpecError};
use super::expand::expand;
use super::fieldpath::{field_value, resource_value, FieldUse};
use super::pod;

/// Variables in their final order with their values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    vars: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl Env {
    fn set(&mut self, k: String, v: String) {
        match self.index.get(&k) {
            Some(&i) => self.vars[i].1 = v,
            None => {
                self.index.insert(k.clone(), self.vars.len());
                self.vars.push((k, v));
            }
        }
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.index.get(k).map(|&i| self.vars[i].1.as_str())
    }

    pub fn vars(&self) -> &[(String, String)] {
        &self.vars
    }

    /// Expands `$(VAR)` against these variables (command, args, subPathExpr).
    pub fn expand(&self, s: &str) -> String {
        expand(s, |name| self.get(name).map(str::to_string))
    }
}

pub fn environment(pod: &Pod, c: &Container, ctx: &Context) -> Result<Env, SpecError> {
    let spec = pod::spec(pod)?;
    let cpath = pod::container_path(spec, c);
    let ns = pod::namespace(pod);
    let mut env = Env::default();
    for (i, from) in c.env_from.iter().flatten().enumerate() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        let mut put = |k: &str, v: String| {
            let key = format!("{prefix}{k}");
            // A name with `=` cannot be passed in an environment; the API refuses it.
            if key.is_empty() || key.contains('=') {
                return Err(SpecError::invalid(
                    format!("{cpath}.envFrom[{i}]"),
                    format!("invalid environment variable name {key:?}"),
                ));
            }
            env.set(key, v);
            Ok(())
        };
        if let Some(r) = &from.config_map_ref {
            match ctx.config_maps.get(&r.name) {
                Some(cm) => {
                    for (k, v) in cm.data.iter().flatten() {
                        put(k, v.clone())?;
                    }
                }
                None if r.optional == Some(true) => {}
                None => {
                    return Err(Missing::ConfigMap {
                        name: r.name.clone(),
                    }
                    .into())
                }
            }
        } else if let Some(r) = &from.secret_ref {
            match ctx.secrets.get(&r.name) {
                Some(s) => {
                    for (k, v) in secret_data(s) {
                        put(&k, v)?;
                    }
                }
                None if r.optional == Some(true) => {}
                None => {
                    return Err(Missing::Secret {
                        name: r.name.clone(),
                    }
                    .into())
                }
            }
        }
    }
    for (i, var) in c.env.iter().flatten().enumerate() {
        let path = format!("{cpath}.env[{i}]");
        let value = var.value.as_deref().unwrap_or("");
        let resolved = if !value.is_empty() {
            env.expand(value)
        } else if let Some(from) = &var.value_from {
            let vpath = format!("{path}.valueFrom");
            if let Some(f) = &from.field_ref {
                field_value(f, pod, ctx, FieldUse::Env, &format!("{vpath}.fieldRef"))?
            } else if let Some(r) = &from.resource_field_ref {
                resource_value(r, pod, Some(c), ctx, &format!("{vpath}.resourceFieldRef"))?
            } else if let Some(k) = &from.config_map_key_ref {
                let optional = k.optional == Some(true);
                let Some(cm) = ctx.config_maps.get(&k.name) else {
                    if optional {
                        continue;
                    }
                    return Err(Missing::ConfigMap {
                        name: k.name.clone(),
                    }
                    .into());
                };
                match cm.data.as_ref().and_then(|d| d.get(&k.key)) {
                    Some(v) => v.clone(),
                    None if optional => continue,
                    None => {
                        return Err(Missing::ConfigMapKey {
                            namespace: ns.into(),
                            name: k.name.clone(),
                            key: k.key.clone(),
                        }
                        .into())
                    }
                }
            } else if let Some(k) = &from.secret_key_ref {
                let optional = k.optional == Some(true);
                let Some(s) = ctx.secrets.get(&k.name) else {
                    if optional {
                        continue;
                    }
                    return Err(Missing::Secret {
                        name: k.name.clone(),
                    }
                    .into());
                };
                match secret_data(s).into_iter().find(|(key, _)| *key == k.key) {
                    Some((_, v)) => v,
                    None if optional => continue,
                    None => {
                        return Err(Missing::SecretKey {
                            namespace: ns.into(),
                            name: k.name.clone(),
                            key: k.key.clone(),
                        }
                        .into())
                    }
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        env.set(var.name.clone(), resolved);
    }
    Ok(env)
}

/// A Secret's values as text: `data`, with `stringData` over it as the API server merges
/// them on write (manifests are never written through one). Non-UTF-8 bytes are replaced,
/// as Go's `string([]byte)` would pass them on unchecked.
pub fn secret_data(s: &k8s_openapi::api::core::v1::Secret) -> Vec<(String, String)> {
    let mut m: std::collections::BTreeMap<String, String> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    for (k, v) in s.string_data.iter().flatten() {
        m.insert(k.clone(), v.clone());
    }
    m.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podspec::testutil::{container, pod_with};
    use k8s_openapi::api::core::v1::{
        ConfigMap, ConfigMapEnvSource, ConfigMapKeySelector, EnvFromSource, EnvVar, EnvVarSource,
        ObjectFieldSelector, Secret, SecretEnvSource, SecretKeySelector,
    };
    use k8s_openapi::ByteString;

    fn val(n: &str, v: &str) -> EnvVar {
        EnvVar {
            name: n.into(),
            value: Some(v.into()),
            value_from: None,
        }
    }

    fn from(n: &str, src: EnvVarSource) -> EnvVar {
        EnvVar {
            name: n.into(),
            value: None,
            value_from: Some(src),
        }
    }

    fn cm_key(name: &str, key: &str, optional: bool) -> EnvVarSource {
        EnvVarSource {
            config_map_key_ref: Some(ConfigMapKeySelector {
                name: name.into(),
                key: key.into(),
                optional: optional.then_some(true),
            }),
            ..Default::default()
        }
    }

    fn secret_key(name: &str, key: &str, optional: bool) -> EnvVarSource {
        EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: name.into(),
                key: key.into(),
                optional: optional.then_some(true),
            }),
            ..Default::default()
        }
    }

    fn ctx() -> Context {
        let mut ctx = Context::default();
        ctx.config_maps.insert(
            "cfg".into(),
            ConfigMap {
                data: Some(
                    [
                        ("A".to_string(), "from-cm".to_string()),
                        ("B".into(), "b".into()),
                    ]
                    .into(),
                ),
                ..Default::default()
            },
        );
        ctx.secrets.insert(
            "sec".into(),
            Secret {
                data: Some([("TOKEN".to_string(), ByteString(b"s3cret".to_vec()))].into()),
                ..Default::default()
            },
        );
        ctx
    }

    fn run(
        env: Vec<EnvVar>,
        env_from: Vec<EnvFromSource>,
    ) -> Result<Vec<(String, String)>, SpecError> {
        let mut c = container("c");
        c.env = Some(env);
        c.env_from = Some(env_from);
        let p = pod_with(vec![c.clone()]);
        environment(&p, &c, &ctx()).map(|e| e.vars().to_vec())
    }

    fn pairs(l: &[(&str, &str)]) -> Vec<(String, String)> {
        l.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn precedence_and_expansion() {
        let cm_from = |prefix: Option<&str>| EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: "cfg".into(),
                optional: None,
            }),
            prefix: prefix.map(str::to_string),
            secret_ref: None,
        };
        let sec_from = EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: "sec".into(),
                optional: None,
            }),
            ..Default::default()
        };
        type Case<'a> = (
            &'a str,
            Vec<EnvVar>,
            Vec<EnvFromSource>,
            Vec<(String, String)>,
        );
        let cases: Vec<Case> = vec![
            (
                "env overrides envFrom in place",
                vec![val("A", "mine")],
                vec![cm_from(None)],
                pairs(&[("A", "mine"), ("B", "b")]),
            ),
            (
                "prefix",
                vec![],
                vec![cm_from(Some("P_"))],
                pairs(&[("P_A", "from-cm"), ("P_B", "b")]),
            ),
            (
                "secret envFrom",
                vec![],
                vec![sec_from],
                pairs(&[("TOKEN", "s3cret")]),
            ),
            (
                "refers to earlier vars only",
                vec![val("X", "$(Y)-$(A)"), val("Y", "y"), val("Z", "$(Y)$(X)")],
                vec![cm_from(None)],
                pairs(&[
                    ("A", "from-cm"),
                    ("B", "b"),
                    ("X", "$(Y)-from-cm"),
                    ("Y", "y"),
                    ("Z", "y$(Y)-from-cm"),
                ]),
            ),
            (
                "escape",
                vec![val("E", "$$(A)"), val("F", "$$$$")],
                vec![],
                pairs(&[("E", "$(A)"), ("F", "$$")]),
            ),
            (
                "later duplicate wins",
                vec![val("D", "1"), val("D", "2$(D)")],
                vec![],
                pairs(&[("D", "21")]),
            ),
            (
                "empty value",
                vec![val("V", "")],
                vec![],
                pairs(&[("V", "")]),
            ),
            (
                "keys",
                vec![
                    from("K1", cm_key("cfg", "B", false)),
                    from("K2", secret_key("sec", "TOKEN", false)),
                ],
                vec![],
                pairs(&[("K1", "b"), ("K2", "s3cret")]),
            ),
            (
                "optional missing skipped",
                vec![
                    from("O1", cm_key("cfg", "nope", true)),
                    from("O2", cm_key("nocfg", "x", true)),
                    from("O3", secret_key("sec", "nope", true)),
                    from("O4", secret_key("nosec", "x", true)),
                ],
                vec![EnvFromSource {
                    config_map_ref: Some(ConfigMapEnvSource {
                        name: "absent".into(),
                        optional: Some(true),
                    }),
                    ..Default::default()
                }],
                vec![],
            ),
            (
                "fieldRef",
                vec![from(
                    "POD",
                    EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            api_version: Some("v1".into()),
                            field_path: "metadata.name".into(),
                        }),
                        ..Default::default()
                    },
                )],
                vec![],
                pairs(&[("POD", "web")]),
            ),
        ];
        for (name, env, env_from, want) in cases {
            assert_eq!(run(env, env_from).unwrap(), want, "{name}");
        }
    }

    #[test]
    fn missing_objects_and_keys() {
        let cases = [
            (
                from("X", cm_key("nocfg", "a", false)),
                "configmap \"nocfg\" not found",
            ),
            (
                from("X", cm_key("cfg", "nope", false)),
                "couldn't find key nope in ConfigMap default/cfg",
            ),
            (
                from("X", secret_key("nosec", "a", false)),
                "secret \"nosec\" not found",
            ),
            (
                from("X", secret_key("sec", "nope", false)),
                "couldn't find key nope in Secret default/sec",
            ),
        ];
        for (var, want) in cases {
            let e = run(vec![var], vec![]).unwrap_err();
            assert!(matches!(e, SpecError::Missing(_)), "{e:?}");
            assert_eq!(e.to_string(), want);
        }
        let e = run(
            vec![],
            vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: "gone".into(),
                    optional: Some(false),
                }),
                ..Default::default()
            }],
        )
        .unwrap_err();
        assert_eq!(
            e,
            SpecError::Missing(Missing::Secret {
                name: "gone".into()
            })
        );
    }
}
