//! The `peapod` command: the daemon and the operator's CLI. The only place that uses anyhow-style
//! erasure of error types: everything below returns typed errors.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use peapod::config::{CgroupDriver, Config};

#[derive(Parser)]
#[command(
    name = "peapod",
    version,
    about = "A single-node pod runtime (CRI server)"
)]
struct Cli {
    /// TOML config file; every setting has an embedded default.
    #[arg(long, global = true, env = "PEAPOD_CONFIG")]
    config: Option<PathBuf>,
    /// Persistent data directory (default /var/lib/peapod).
    #[arg(long, global = true)]
    root: Option<PathBuf>,
    /// Volatile state directory (default /run/peapod).
    #[arg(long, global = true)]
    state: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon: the CRI socket and the pod engine.
    Daemon {
        /// CRI socket path (default /run/peapod/peapod.sock).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// cgroupfs or systemd.
        #[arg(long)]
        cgroup_driver: Option<String>,
        /// The static pod manifest directory (default /etc/peapod/manifests).
        #[arg(long)]
        manifests: Option<PathBuf>,
        /// Log filter, as RUST_LOG (default info).
        #[arg(long, env = "PEAPOD_LOG", default_value = "info")]
        log_level: String,
        /// Log lines as text for people, or json (one object per line, for journald and
        /// log shippers).
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Show static pods or their events as kubectl does:
    /// `peapod get pods [NAME] [-n NS | -A] [-o wide|json|yaml|name]`, `peapod get events`.
    Get {
        /// The resource type: pods (pod, po) or events (event, ev).
        resource: String,
        /// One pod's name.
        name: Option<String>,
        /// The namespace (default "default").
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Output format: wide, json, yaml or name.
        #[arg(short = 'o', long)]
        output: Option<String>,
    },
    /// Print a container's log, as kubectl logs:
    /// `peapod logs POD [-n NS] [-c CONTAINER] [-f] [-p] [--tail N] [--timestamps]`.
    Logs {
        /// The pod's name.
        pod: String,
        /// The namespace (default "default").
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// The container (default: the only one, or the default-container annotation's).
        #[arg(short = 'c', long)]
        container: Option<String>,
        /// Stream the log until the container ends.
        #[arg(short = 'f', long)]
        follow: bool,
        /// The previous instance's log (before the last restart).
        #[arg(short = 'p', long)]
        previous: bool,
        /// Only the last N lines (-1: all).
        #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
        tail: i64,
        /// Prefix each line with its RFC3339Nano timestamp.
        #[arg(long)]
        timestamps: bool,
    },
    /// Show a pod in detail, as kubectl describe: `peapod describe pod NAME [-n NS]`.
    Describe {
        /// The resource type: pod (pods, po).
        resource: String,
        /// The pod's name.
        name: String,
        /// The namespace (default "default").
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// Create or update the objects of a manifest file: `peapod apply -f FILE`. The file is
    /// checked, then becomes the daemon's manifest of the same name.
    Apply {
        /// The manifest (YAML or JSON, one or more Pods, ConfigMaps, Secrets).
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
    },
    /// Delete objects: `peapod delete -f FILE` or `peapod delete pod NAME [-n NS]`. Waits
    /// until a deleted pod has stopped and is gone.
    Delete {
        /// The resource type: pod (pods, po).
        resource: Option<String>,
        /// The pod's name.
        name: Option<String>,
        /// Delete what this manifest file defines.
        #[arg(short = 'f', long = "filename", conflicts_with_all = ["resource", "name"])]
        file: Option<PathBuf>,
        /// The namespace (default "default").
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// Show the pods' CPU and memory, as kubectl top: `peapod top pods [-n NS|-A] [--containers]`.
    Top {
        /// The resource type: pods (pod, po).
        resource: String,
        /// The namespace (default "default").
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// One row per container.
        #[arg(long)]
        containers: bool,
    },
    /// Run a command in a container: `peapod exec POD [-c C] [-i] [-t] -- CMD ARGS...`.
    /// Exits with the command's exit code.
    Exec {
        /// The pod's name.
        pod: String,
        /// The namespace (default "default").
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// The container (default: the only one, or the default-container annotation's).
        #[arg(short = 'c', long)]
        container: Option<String>,
        /// Pass stdin to the command.
        #[arg(short = 'i', long)]
        stdin: bool,
        /// Run the command in a terminal.
        #[arg(short = 't', long)]
        tty: bool,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// The daemon's configuration: `peapod config default` prints every key with its default,
    /// commented; `peapod config check FILE` reports each error with its line and key.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Manage the local image store.
    Image {
        #[command(subcommand)]
        cmd: ImageCmd,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print the default configuration as commented TOML.
    Default,
    /// Check a config file: every unknown key, bad type or unusable value, with its line.
    Check { file: PathBuf },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum ImageCmd {
    /// Import an OCI image layout (directory or tar) or a docker-archive tar.
    Import {
        file: PathBuf,
        /// Name to tag the image with when the archive carries none.
        #[arg(long)]
        name: Option<String>,
    },
    /// Pull an image from a registry through the running daemon.
    Pull {
        reference: String,
        /// Registry credentials as USER:PASSWORD.
        #[arg(long)]
        creds: Option<String>,
    },
    /// List images.
    Ls,
    /// Remove an image by ID, tag or digest.
    Rm { reference: String },
}

fn load_config(cli: &Cli) -> Result<Config, String> {
    let mut cfg = match &cli.config {
        Some(p) => Config::load(p).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    if let Some(r) = &cli.root {
        cfg.root_dir = r.clone();
    }
    if let Some(s) = &cli.state {
        cfg.state_dir = s.clone();
        if cli.config.is_none() {
            cfg.socket = s.join("peapod.sock");
            cfg.static_pods.api_socket = s.join("api.sock");
        }
    }
    if let Cmd::Daemon {
        socket,
        cgroup_driver,
        manifests,
        ..
    } = &cli.cmd
    {
        if let Some(m) = manifests {
            cfg.static_pods.manifest_dir = m.clone();
        }
        if let Some(s) = socket {
            cfg.socket = s.clone();
        }
        match cgroup_driver.as_deref() {
            None => {}
            Some("cgroupfs") => cfg.cgroup_driver = CgroupDriver::Cgroupfs,
            Some("systemd") => {
                cfg.cgroup_driver = CgroupDriver::Systemd;
                if cfg.cgroup_parent == Config::default().cgroup_parent {
                    cfg.cgroup_parent = "peapod.slice".into();
                }
            }
            Some(other) => return Err(format!("--cgroup-driver: unknown driver {other:?}")),
        }
    }
    Ok(cfg)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before the config is loaded: these read a file of their own, or none.
    if let Cmd::Config { cmd } = &cli.cmd {
        return config_cmd(cmd);
    }
    let cfg = match load_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("peapod: {e}");
            return ExitCode::from(2);
        }
    };
    let res = match cli.cmd {
        Cmd::Daemon {
            log_level,
            log_format,
            ..
        } => daemon(cfg, &log_level, log_format),
        Cmd::Image { cmd } => image(cfg, cmd),
        Cmd::Config { .. } => unreachable!("handled before the config is loaded"),
        Cmd::Describe {
            resource,
            name,
            namespace,
        } => return describe(&cfg, &resource, &name, namespace.as_deref()),
        Cmd::Apply { file } => {
            let socket = cfg.static_pods.api_socket.clone();
            return apply_client(async move {
                for line in peapod::cli::apply::apply(&socket, &file).await? {
                    println!("{line}");
                }
                Ok(())
            });
        }
        Cmd::Delete {
            resource,
            name,
            file,
            namespace,
        } => return delete(&cfg, resource, name, file, namespace),
        Cmd::Exec {
            pod,
            namespace,
            container,
            stdin,
            tty,
            command,
        } => {
            let opts = peapod::cli::exec::ExecOptions {
                container,
                command,
                stdin,
                tty,
            };
            return exec(&cfg, namespace.as_deref().unwrap_or("default"), &pod, &opts);
        }
        Cmd::Top {
            resource,
            namespace,
            all_namespaces,
            containers,
        } => {
            if !matches!(resource.as_str(), "pods" | "pod" | "po") {
                eprintln!("error: peapod top serves pods, not \"{resource}\"");
                return ExitCode::FAILURE;
            }
            let ns = (!all_namespaces).then(|| namespace.unwrap_or_else(|| "default".into()));
            let socket = cfg.static_pods.api_socket.clone();
            return client(async move {
                let (out, note) =
                    peapod::cli::top::top_pods(&socket, ns.as_deref(), containers).await?;
                print!("{out}");
                if let Some(n) = note {
                    eprintln!("{n}");
                }
                Ok(())
            });
        }
        Cmd::Logs {
            pod,
            namespace,
            container,
            follow,
            previous,
            tail,
            timestamps,
        } => {
            let opts = peapod::cli::logs::LogOptions {
                container,
                follow,
                previous,
                timestamps,
                tail_lines: usize::try_from(tail).ok(),
            };
            let ns = namespace.unwrap_or_else(|| "default".into());
            let socket = cfg.static_pods.api_socket.clone();
            return client(
                async move { peapod::cli::logs::print(&socket, &ns, &pod, &opts).await },
            );
        }
        Cmd::Get {
            resource,
            name,
            namespace,
            all_namespaces,
            output,
        } => {
            return get(
                &cfg,
                &resource,
                name.as_deref(),
                namespace.as_deref(),
                all_namespaces,
                output.as_deref(),
            )
        }
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peapod: {e}");
            ExitCode::FAILURE
        }
    }
}

/// glibc malloc settings for the long-running daemon, before its first thread exists.
///
/// One arena instead of up to 8 per core: each worker, blocking and per-pod network-namespace
/// thread otherwise gets an arena of its own, and what a pod start frees in one stays there as
/// free pages no other thread reuses (about 1 MiB at 250 pods). Contention is no concern here:
/// the daemon has two workers and each thread's tcache serves small allocations without the
/// arena's lock. A fixed trim threshold (glibc's default value, but no longer raised each time
/// a large block is freed) gives the freed top of the heap back to the kernel.
fn tune_malloc() {
    // SAFETY: mallopt only changes allocator parameters; called before any other thread runs,
    // as glibc advises for M_ARENA_MAX.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
    }
}

fn daemon(cfg: Config, log_level: &str, log_format: LogFormat) -> Result<(), String> {
    tune_malloc();
    // Before any thread exists: it changes the environment.
    let notifier = peapod::notify::Notifier::from_env();
    // libcgroups reports every unmounted v1 controller at warn level on each call: noise. h2
    // logs every HTTP/2 frame at debug level, several per RPC and more as a List response
    // grows (a pod list is sent in 16 KiB frames): at --log-level debug, formatting and
    // writing them is a good share of each RPC's cost.
    let filter =
        tracing_subscriber::EnvFilter::try_new(format!("h2=info,{log_level},libcgroups=error"))
            .map_err(|e| format!("--log-level: {e}"))?;
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log_format {
        LogFormat::Text => fmt
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // journald stamps each line itself; the event's own time stays for shippers.
        LogFormat::Json => fmt
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    // Two workers: the daemon mostly waits on child processes and the socket.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))?;
    rt.block_on(async move {
        let socket = cfg.socket.clone();
        let stream_addr = cfg.stream_server_addr();
        let metrics_addr = cfg.metrics_addr()?;
        let static_cfg = cfg.static_pods.clone();
        let root_dir = cfg.root_dir.clone();
        let engine = peapod::pod::Engine::new(cfg)
            .await
            .map_err(|e| format!("starting the pod engine: {e}"))?;
        let stop_notifier = notifier.clone();
        let shutdown = async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing the SIGTERM handler");
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
            // Pods and containers are left running on purpose: their monitors own them.
            tracing::info!("shutting down; pods keep running");
            stop_notifier.stopping();
        };
        if !static_cfg.manifest_dir.as_os_str().is_empty() {
            let node_name = if static_cfg.node_name.is_empty() {
                nix::unistd::gethostname()
                    .ok()
                    .and_then(|h| h.into_string().ok())
                    .unwrap_or_else(|| "localhost".into())
            } else {
                static_cfg.node_name.clone()
            };
            let sp = peapod::staticpods::start(
                engine.clone(),
                peapod::staticpods::StaticPodsConfig {
                    manifest_dir: static_cfg.manifest_dir.clone(),
                    pods_dir: root_dir.join("static-pods"),
                    log_root: static_cfg.log_dir.clone(),
                    node_name,
                },
            );
            peapod::staticpods::api::serve(sp, &static_cfg.api_socket)
                .await
                .map_err(|e| format!("local API on {}: {e}", static_cfg.api_socket.display()))?;
        }
        if let Some(addr) = metrics_addr {
            peapod::metrics::serve(addr, engine.clone())
                .await
                .map_err(|e| e.to_string())?;
        }
        let streaming = peapod::cri::Streaming {
            addr: stream_addr,
            backend: Arc::new(peapod::cri::stream_backend::EngineBackend(engine.clone())),
        };
        // Recovery is done (Engine::new) and the static pods' API is up: ready once the CRI
        // socket answers.
        let ready = || notifier.ready();
        peapod::cri::serve(engine, &socket, Some(streaming), ready, shutdown)
            .await
            .map_err(|e| e.to_string())
    })
}

/// `peapod config default` and `peapod config check FILE` (exit 1 when it has errors, each
/// printed as `FILE:LINE: key: message`, as compilers do).
fn config_cmd(cmd: &ConfigCmd) -> ExitCode {
    match cmd {
        ConfigCmd::Default => {
            print!("{}", peapod::config::check::DEFAULT_TOML);
            ExitCode::SUCCESS
        }
        ConfigCmd::Check { file } => {
            let text = match std::fs::read_to_string(file) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("{}: {e}", file.display());
                    return ExitCode::FAILURE;
                }
            };
            let issues = peapod::config::check::check(&text);
            for i in &issues {
                let line = i.line.map(|l| format!(":{l}")).unwrap_or_default();
                let key = if i.key.is_empty() {
                    String::new()
                } else {
                    format!(" {}:", i.key)
                };
                println!("{}{line}:{key} {}", file.display(), i.message);
            }
            if issues.is_empty() {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The small runtime a CLI command's requests run on; kubectl's exit 1 if there is none.
fn cli_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        })
}

/// Runs one CLI request on a small runtime: kubectl's error line and exit 1 on failure.
fn client<F>(fut: F) -> ExitCode
where
    F: std::future::Future<Output = Result<(), peapod::cli::client::ClientError>>,
{
    let rt = match cli_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// As [`client`], for apply and delete, whose failures print their own lines.
fn apply_client<F>(fut: F) -> ExitCode
where
    F: std::future::Future<Output = Result<(), peapod::cli::apply::ApplyError>>,
{
    use peapod::cli::apply::ApplyError;
    let rt = match cli_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(ApplyError::Partial) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn is_pod_resource(resource: &str) -> bool {
    matches!(resource, "pods" | "pod" | "po")
}

fn unknown_resource(resource: &str) -> ExitCode {
    eprintln!("error: the server doesn't have a resource type \"{resource}\"");
    ExitCode::FAILURE
}

/// `peapod exec`: the command's exit code, with kubectl's note when it is not 0.
fn exec(cfg: &Config, ns: &str, pod: &str, opts: &peapod::cli::exec::ExecOptions) -> ExitCode {
    let rt = match cli_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let socket = cfg.static_pods.api_socket.clone();
    let res = rt.block_on(peapod::cli::exec::exec(&socket, ns, pod, opts));
    // A read of stdin may still block on its thread: not waited for.
    rt.shutdown_background();
    match res {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => {
            eprintln!("command terminated with exit code {code}");
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `peapod describe pod NAME`.
fn describe(cfg: &Config, resource: &str, name: &str, namespace: Option<&str>) -> ExitCode {
    if !is_pod_resource(resource) {
        return unknown_resource(resource);
    }
    let socket = cfg.static_pods.api_socket.clone();
    let ns = namespace.unwrap_or("default").to_string();
    let name = name.to_string();
    client(async move {
        print!(
            "{}",
            peapod::cli::describe::describe(&socket, &ns, &name).await?
        );
        Ok(())
    })
}

/// `peapod delete -f FILE` or `peapod delete pod NAME`.
fn delete(
    cfg: &Config,
    resource: Option<String>,
    name: Option<String>,
    file: Option<PathBuf>,
    namespace: Option<String>,
) -> ExitCode {
    let socket = cfg.static_pods.api_socket.clone();
    if let Some(file) = file {
        return apply_client(async move { peapod::cli::apply::delete_file(&socket, &file).await });
    }
    let (Some(resource), Some(name)) = (resource, name) else {
        eprintln!("error: you must provide one or more resources by argument or filename (-f FILE, or pod NAME)");
        return ExitCode::FAILURE;
    };
    if !is_pod_resource(&resource) {
        return unknown_resource(&resource);
    }
    let ns = namespace.unwrap_or_else(|| "default".into());
    apply_client(async move { peapod::cli::apply::delete_pod(&socket, &ns, &name).await })
}

/// `peapod get`: prints as kubectl would; exits 1 with kubectl's error line on failure.
fn get(
    cfg: &Config,
    resource: &str,
    name: Option<&str>,
    namespace: Option<&str>,
    all: bool,
    output: Option<&str>,
) -> ExitCode {
    use peapod::cli::get::{get_pods, Output};
    let events = match resource {
        "pods" | "pod" | "po" => false,
        "events" | "event" | "ev" => true,
        _ => {
            eprintln!(
                "error: the server doesn't have a resource type \"{resource}\" (peapod serves pods and events)"
            );
            return ExitCode::FAILURE;
        }
    };
    let output = match Output::parse(output) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let namespace = if all && name.is_none() {
        None
    } else {
        Some(namespace.unwrap_or("default"))
    };
    let rt = match cli_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let socket = cfg.static_pods.api_socket.clone();
    let printed = rt.block_on(async {
        if events {
            return peapod::cli::events::get_events(&socket, namespace, output).await;
        }
        // kubectl prints the server's warnings before what it asked for: here, the manifests
        // that do not parse, whose pods are not (or no longer) what the files say.
        for w in peapod::cli::events::manifest_warnings(&socket).await? {
            eprintln!("{w}");
        }
        get_pods(&socket, name, namespace, output).await
    });
    match printed {
        Ok(p) => {
            print!("{}", p.stdout);
            if let Some(e) = p.stderr {
                eprintln!("{e}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Pulls through the daemon's CRI socket, so the daemon's own pull de-duplication, registry
/// config and image index are the ones used.
fn pull_via_daemon(cfg: &Config, reference: &str, creds: Option<&str>) -> Result<(), String> {
    use peapod::api::image_service_client::ImageServiceClient;
    let auth = match creds {
        None => None,
        Some(c) => {
            let (u, p) = c.split_once(':').ok_or("--creds: expected USER:PASSWORD")?;
            Some(peapod::api::AuthConfig {
                username: u.to_string(),
                password: p.to_string(),
                ..Default::default()
            })
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let socket = cfg.socket.clone();
        let channel = tonic::transport::Endpoint::try_from("http://[::]:50051")
            .map_err(|e| e.to_string())?
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let socket = socket.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(socket).await?,
                    ))
                }
            }))
            .await
            .map_err(|e| format!("connecting to {}: {e}", cfg.socket.display()))?;
        let resp = ImageServiceClient::new(channel)
            .pull_image(peapod::api::PullImageRequest {
                image: Some(peapod::api::ImageSpec {
                    image: reference.to_string(),
                    ..Default::default()
                }),
                auth,
                sandbox_config: None,
            })
            .await
            .map_err(|e| format!("pull {reference}: {}", e.message()))?;
        println!("{}", resp.into_inner().image_ref);
        Ok(())
    })
}

fn image(cfg: Config, cmd: ImageCmd) -> Result<(), String> {
    if let ImageCmd::Pull { reference, creds } = &cmd {
        return pull_via_daemon(&cfg, reference, creds.as_deref());
    }
    let store =
        peapod::image::ImageStore::open(&cfg.root_dir.join("images")).map_err(|e| e.to_string())?;
    match cmd {
        ImageCmd::Import { file, name } => {
            let recs =
                peapod::image::import(&store, &file, name.as_deref()).map_err(|e| e.to_string())?;
            for r in recs {
                println!("{} {}", r.id, r.repo_tags.join(","));
            }
        }
        ImageCmd::Ls => {
            println!("{:<20} {:<12} TAGS", "IMAGE ID", "SIZE");
            for r in store.list() {
                let short =
                    r.id.trim_start_matches("sha256:")
                        .chars()
                        .take(12)
                        .collect::<String>();
                println!("{:<20} {:<12} {}", short, r.size, r.repo_tags.join(","));
            }
        }
        ImageCmd::Rm { reference } => {
            let rec = store.remove(&reference).map_err(|e| e.to_string())?;
            println!("removed {}", rec.id);
            // Layers of existing containers stay, whether or not their image does.
            let mut in_use = peapod::pod::record::layers_in_use(&cfg.root_dir.join("containers"));
            in_use.extend(peapod::pod::record::infra_layers_in_use(
                &cfg.root_dir.join("sandboxes"),
            ));
            let stats = peapod::image::gc(&store, &in_use).map_err(|e| e.to_string())?;
            println!("freed {stats:?}");
        }
        ImageCmd::Pull { .. } => unreachable!("handled above"),
    }
    Ok(())
}
