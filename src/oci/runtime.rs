//! The OCI runtime CLI driver: one [`OciRuntime`] per CRI runtime handler (runc, crun, youki),
//! all driven through the same subcommands. `create` is run by the per-container monitor (so it
//! becomes the container's parent); the daemon runs start, kill, delete and state.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::config::{find_in_path, Config, RuntimeHandler};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("running {bin}: {source}")]
    Exec {
        bin: PathBuf,
        source: std::io::Error,
    },
    #[error("{runtime} {op} {id} failed: {message}")]
    Failed {
        runtime: String,
        op: &'static str,
        id: String,
        message: String,
    },
    #[error("no runtime handler {0:?} is configured")]
    UnknownHandler(String),
    #[error("no OCI runtime found: install runc, crun or youki, or configure [runtimes]")]
    NoneInstalled,
}

#[derive(Debug, Clone)]
pub struct OciRuntime {
    /// The CRI runtime handler name.
    pub name: String,
    pub path: PathBuf,
    /// Global arguments: the configured extras, then `--root`.
    pub global_args: Vec<String>,
}

impl OciRuntime {
    fn new(name: &str, path: PathBuf, extra: &[String], state_dir: &Path, systemd: bool) -> Self {
        let mut global_args = extra.to_vec();
        global_args.push("--root".into());
        global_args.push(
            state_dir
                .join("runtime")
                .join(name)
                .to_string_lossy()
                .into_owned(),
        );
        if systemd {
            global_args.push("--systemd-cgroup".into());
        }
        OciRuntime {
            name: name.to_string(),
            path,
            global_args,
        }
    }

    /// `<runtime> <global args>`, for the caller to add a subcommand to.
    pub fn command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.path);
        cmd.args(&self.global_args);
        cmd
    }

    /// Runs `<runtime> <global args> <args> <id> <tail>` and turns a failure into its stderr.
    async fn run(
        &self,
        op: &'static str,
        args: &[&str],
        id: &str,
        tail: &[&str],
    ) -> Result<(), RuntimeError> {
        let out = self
            .command()
            .args(args)
            .arg(id)
            .args(tail)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .await
            .map_err(|source| RuntimeError::Exec {
                bin: self.path.clone(),
                source,
            })?;
        if out.status.success() {
            return Ok(());
        }
        let mut message = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if message.is_empty() {
            message = format!("exit status {}", out.status);
        }
        Err(RuntimeError::Failed {
            runtime: self.name.clone(),
            op,
            id: id.to_string(),
            message,
        })
    }

    pub async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.run("start", &["start"], id, &[]).await
    }

    /// Sends `signal` to the container's init, or with `all` to every process in it.
    pub async fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), RuntimeError> {
        let args: &[&str] = if all { &["kill", "--all"] } else { &["kill"] };
        // runc takes the signal after the ID.
        self.run("kill", args, id, &[&signal.to_string()]).await
    }

    /// Applies the resources in the JSON file `resources` (an OCI `linux.resources`).
    pub async fn update(&self, id: &str, resources: &Path) -> Result<(), RuntimeError> {
        let arg = resources.to_string_lossy();
        self.run("update", &["update", "--resources", &arg], id, &[])
            .await
    }

    /// The container's status as the runtime reports it (`created`, `running`, `stopped`...).
    pub async fn status(&self, id: &str) -> Result<String, RuntimeError> {
        let out = self
            .command()
            .args(["state", id])
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|source| RuntimeError::Exec {
                bin: self.path.clone(),
                source,
            })?;
        let failed = |message: String| RuntimeError::Failed {
            runtime: self.name.clone(),
            op: "state",
            id: id.to_string(),
            message,
        };
        if !out.status.success() {
            return Err(failed(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| failed(e.to_string()))?;
        v["status"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| failed("no status in its state".into()))
    }

    /// The runtime's state directory (its `--root`), where each container it knows has a
    /// directory named after its ID.
    pub fn state_root(&self) -> Option<PathBuf> {
        let i = self.global_args.iter().position(|a| a == "--root")?;
        self.global_args.get(i + 1).map(PathBuf::from)
    }

    /// Deletes the container's runtime state (and with `force` kills what is left). A container
    /// the runtime does not know is already deleted, so that is success.
    pub async fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        let args: &[&str] = if force {
            &["delete", "--force"]
        } else {
            &["delete"]
        };
        match self.run("delete", args, id, &[]).await {
            Err(RuntimeError::Failed { message, .. })
                if message.contains("does not exist") || message.contains("not found") =>
            {
                Ok(())
            }
            other => other,
        }
    }
}

/// The configured handlers, by name, and the default one.
#[derive(Debug, Clone)]
pub struct Runtimes {
    handlers: BTreeMap<String, OciRuntime>,
    default: String,
}

impl Runtimes {
    /// Builds the handler table: the configured `[runtimes]`, or else runc, crun and youki where
    /// installed. The default is the configured one, or the first that works on this host: crun
    /// (1.8, Debian's) refuses a hybrid cgroup v1 layout, so there runc or youki come first.
    pub fn from_config(cfg: &Config, unified_cgroups: bool) -> Result<Self, RuntimeError> {
        let systemd = cfg.cgroup_driver == crate::config::CgroupDriver::Systemd;
        let mut handlers = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        if cfg.runtimes.is_empty() {
            let preferred: &[&str] = if unified_cgroups {
                &["crun", "runc", "youki"]
            } else {
                &["runc", "youki", "crun"]
            };
            for name in preferred {
                if let Some(path) = find_in_path(name) {
                    handlers.insert(
                        name.to_string(),
                        OciRuntime::new(name, path, &[], &cfg.state_dir, systemd),
                    );
                    order.push(name.to_string());
                }
            }
        } else {
            for (name, RuntimeHandler { path, args }) in &cfg.runtimes {
                let resolved = find_in_path(path).unwrap_or_else(|| PathBuf::from(path));
                handlers.insert(
                    name.clone(),
                    OciRuntime::new(name, resolved, args, &cfg.state_dir, systemd),
                );
                order.push(name.clone());
            }
        }
        let default = if !cfg.default_runtime.is_empty() {
            cfg.default_runtime.clone()
        } else {
            order.first().cloned().ok_or(RuntimeError::NoneInstalled)?
        };
        if !handlers.contains_key(&default) {
            return Err(RuntimeError::UnknownHandler(default));
        }
        Ok(Runtimes { handlers, default })
    }

    /// The handler for a request; the empty name means the default.
    pub fn get(&self, name: &str) -> Result<&OciRuntime, RuntimeError> {
        let key = if name.is_empty() { &self.default } else { name };
        self.handlers
            .get(key)
            .ok_or_else(|| RuntimeError::UnknownHandler(name.to_string()))
    }

    pub fn default_name(&self) -> &str {
        &self.default
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.handlers.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        Config::parse(text, Path::new("test.toml")).unwrap()
    }

    #[test]
    fn configured_handlers_and_default() {
        let c = cfg(
            "default_runtime = \"b\"\n[runtimes.a]\npath = \"/bin/true\"\n\
                     [runtimes.b]\npath = \"/bin/false\"\nargs = [\"--debug\"]",
        );
        let r = Runtimes::from_config(&c, false).unwrap();
        assert_eq!(r.default_name(), "b");
        let b = r.get("").unwrap();
        assert_eq!(b.path, PathBuf::from("/bin/false"));
        assert_eq!(b.global_args[0], "--debug");
        assert_eq!(b.global_args[1], "--root");
        assert!(b.global_args[2].ends_with("runtime/b"));
        assert_eq!(r.get("a").unwrap().name, "a");
        assert!(matches!(
            r.get("kata"),
            Err(RuntimeError::UnknownHandler(_))
        ));
        assert_eq!(r.names().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn first_configured_is_default_and_systemd_flag_is_passed() {
        let c = cfg("cgroup_driver = \"systemd\"\n[runtimes.x]\npath = \"/bin/true\"");
        let r = Runtimes::from_config(&c, true).unwrap();
        assert_eq!(r.default_name(), "x");
        assert_eq!(
            r.get("").unwrap().global_args.last().unwrap(),
            "--systemd-cgroup"
        );
    }
}
