//! Command-line parsing for the two subcommands (hand-written: no dependency but libc).
//!
//! ```text
//! peapod-shim pause [--hostname NAME] [--lo-up] [--id ID] [--state-dir DIR]
//! peapod-shim monitor --id ID --bundle DIR --runtime PATH [--runtime-arg ARG]...
//!                     --exit-file FILE --runtime-log FILE [--log-path FILE] [--tty] [--stdin] [--stdin-once]
//! ```
//!
//! Options taking a value accept `--opt VALUE` and `--opt=VALUE`. The value of the separate form
//! is taken as is, even if it starts with `--` (needed for `--runtime-arg --root`). Values are
//! kept as `OsString`: paths need not be UTF-8.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// Usage text printed for `help` and on errors.
pub const USAGE: &str = "usage:
  peapod-shim pause [--hostname NAME] [--lo-up] [--id ID] [--state-dir DIR]
  peapod-shim monitor --id ID --bundle DIR --runtime PATH [--runtime-arg ARG]...
                      --exit-file FILE --runtime-log FILE [--log-path FILE] [--tty] [--stdin] [--stdin-once]
";

/// A parsed command line.
#[derive(Debug, PartialEq)]
pub enum Command {
    Pause(PauseOpts),
    Monitor(MonitorOpts),
    Help,
}

/// Options of `pause`.
#[derive(Debug, PartialEq, Default)]
pub struct PauseOpts {
    /// Hostname to set in the (new) UTS namespace.
    pub hostname: Option<OsString>,
    /// Bring `lo` up in the (new) network namespace.
    pub lo_up: bool,
    /// The sandbox ID and the daemon's state directory. The pause itself never uses them: they
    /// are on its command line so that a restarted daemon can tell its own pauses (and which
    /// sandbox each holds) from anyone else's when it sweeps orphans.
    pub id: Option<OsString>,
    pub state_dir: Option<OsString>,
}

/// Options of `monitor`.
#[derive(Debug, PartialEq)]
pub struct MonitorOpts {
    pub id: OsString,
    pub bundle: PathBuf,
    pub runtime: PathBuf,
    /// Global runtime options, placed before the runtime's subcommand (e.g. `--root DIR`).
    pub runtime_args: Vec<OsString>,
    pub exit_file: PathBuf,
    pub runtime_log: PathBuf,
    /// CRI log file; `None` discards the container's output.
    pub log_path: Option<PathBuf>,
    pub tty: bool,
    pub stdin: bool,
    /// Close the container's stdin when the first attach client that used it is done
    /// (the CRI `stdin_once`).
    pub stdin_once: bool,
}

/// Parses the arguments after the program name.
pub fn parse<I>(args: I) -> Result<Command, String>
where
    I: IntoIterator<Item = OsString>,
{
    let mut args = args.into_iter();
    let sub = match args.next() {
        None => return Err("missing subcommand".into()),
        Some(s) => s,
    };
    let opts = Opts {
        seen: Vec::new(),
        rest: args,
    };
    match sub.as_bytes() {
        b"pause" => parse_pause(opts).map(Command::Pause),
        b"monitor" => parse_monitor(opts).map(Command::Monitor),
        b"help" | b"--help" | b"-h" => Ok(Command::Help),
        _ => Err(format!("unknown subcommand {:?}", sub)),
    }
}

/// One option occurrence: its name (without `--`) and the value given with `=`, if any.
struct Opt {
    name: String,
    inline: Option<OsString>,
}

/// The options still to read, and the names of those read so far (to catch repeats). A value
/// in the separate form is the next raw argument, fetched by [`Opts::value`].
struct Opts<I: Iterator<Item = OsString>> {
    seen: Vec<String>,
    rest: I,
}

impl<I: Iterator<Item = OsString>> Opts<I> {
    /// The next option, or `None` at the end.
    fn next(&mut self) -> Result<Option<Opt>, String> {
        let arg = match self.rest.next() {
            None => return Ok(None),
            Some(a) => a,
        };
        let bytes = arg.as_bytes();
        let body = match bytes.strip_prefix(b"--") {
            Some(b) if !b.is_empty() => b,
            _ => return Err(format!("unexpected argument {:?}", arg)),
        };
        let (name, inline) = match body.iter().position(|&c| c == b'=') {
            Some(i) => (
                &body[..i],
                Some(OsStr::from_bytes(&body[i + 1..]).to_owned()),
            ),
            None => (body, None),
        };
        let name = String::from_utf8(name.to_vec()).map_err(|_| format!("bad option {arg:?}"))?;
        self.seen.push(name.clone());
        Ok(Some(Opt { name, inline }))
    }

    /// The value of option `opt`: its `=` part, else the next argument.
    fn value(&mut self, opt: Opt) -> Result<OsString, String> {
        match opt.inline {
            Some(v) => Ok(v),
            None => self
                .rest
                .next()
                .ok_or_else(|| format!("--{} needs a value", opt.name)),
        }
    }

    /// Fails for a flag given with `=VALUE`.
    fn flag(&self, opt: &Opt) -> Result<bool, String> {
        match opt.inline {
            Some(_) => Err(format!("--{} takes no value", opt.name)),
            None => Ok(true),
        }
    }

    /// Fails if the option just read was already given (all but `--runtime-arg` are single).
    fn once(&self, opt: &Opt) -> Result<(), String> {
        if self.seen.iter().filter(|n| **n == opt.name).count() > 1 {
            Err(format!("--{} given twice", opt.name))
        } else {
            Ok(())
        }
    }
}

fn parse_pause<I: Iterator<Item = OsString>>(mut opts: Opts<I>) -> Result<PauseOpts, String> {
    let mut p = PauseOpts::default();
    while let Some(opt) = opts.next()? {
        opts.once(&opt)?;
        match opt.name.as_str() {
            "hostname" => {
                let h = opts.value(opt)?;
                if h.is_empty() || h.len() > 64 {
                    return Err("--hostname must be 1 to 64 bytes".into());
                }
                p.hostname = Some(h);
            }
            "lo-up" => p.lo_up = opts.flag(&opt)?,
            "id" => p.id = Some(opts.value(opt)?),
            "state-dir" => p.state_dir = Some(opts.value(opt)?),
            other => return Err(format!("unknown pause option --{other}")),
        }
    }
    Ok(p)
}

fn parse_monitor<I: Iterator<Item = OsString>>(mut opts: Opts<I>) -> Result<MonitorOpts, String> {
    let mut id = None;
    let mut bundle = None;
    let mut runtime = None;
    let mut runtime_args = Vec::new();
    let mut exit_file = None;
    let mut runtime_log = None;
    let mut log_path = None;
    let mut tty = false;
    let mut stdin = false;
    let mut stdin_once = false;
    while let Some(opt) = opts.next()? {
        if opt.name != "runtime-arg" {
            opts.once(&opt)?;
        }
        match opt.name.as_str() {
            "id" => id = Some(opts.value(opt)?),
            "bundle" => bundle = Some(PathBuf::from(opts.value(opt)?)),
            "runtime" => runtime = Some(PathBuf::from(opts.value(opt)?)),
            "runtime-arg" => runtime_args.push(opts.value(opt)?),
            "exit-file" => exit_file = Some(PathBuf::from(opts.value(opt)?)),
            "runtime-log" => runtime_log = Some(PathBuf::from(opts.value(opt)?)),
            "log-path" => log_path = Some(PathBuf::from(opts.value(opt)?)),
            "tty" => tty = opts.flag(&opt)?,
            "stdin" => stdin = opts.flag(&opt)?,
            "stdin-once" => stdin_once = opts.flag(&opt)?,
            other => return Err(format!("unknown monitor option --{other}")),
        }
    }
    fn required<T: AsRef<OsStr>>(v: Option<T>, name: &str) -> Result<T, String> {
        match v {
            Some(v) if !v.as_ref().is_empty() => Ok(v),
            _ => Err(format!("--{name} is required")),
        }
    }
    let id = required(id, "id")?;
    if id.as_bytes().contains(&b'/') || id.as_bytes().starts_with(b"-") {
        return Err(format!("invalid container id {id:?}"));
    }
    Ok(MonitorOpts {
        id,
        bundle: required(bundle, "bundle")?,
        runtime: required(runtime, "runtime")?,
        runtime_args,
        exit_file: required(exit_file, "exit-file")?,
        runtime_log: required(runtime_log, "runtime-log")?,
        log_path: log_path.filter(|p| !p.as_os_str().is_empty()),
        tty,
        stdin,
        stdin_once,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Command, String> {
        parse(args.iter().map(OsString::from))
    }

    fn monitor_base() -> Vec<&'static str> {
        vec![
            "monitor",
            "--id",
            "c1",
            "--bundle",
            "/b",
            "--runtime",
            "/usr/sbin/runc",
            "--exit-file",
            "/e",
            "--runtime-log",
            "/rl",
        ]
    }

    #[test]
    fn pause_defaults_and_flags() {
        assert_eq!(
            parse_strs(&["pause"]),
            Ok(Command::Pause(PauseOpts::default()))
        );
        assert_eq!(
            parse_strs(&["pause", "--hostname", "pod-a", "--lo-up"]),
            Ok(Command::Pause(PauseOpts {
                hostname: Some("pod-a".into()),
                lo_up: true,
                ..Default::default()
            }))
        );
        assert_eq!(
            parse_strs(&["pause", "--hostname=h"]),
            Ok(Command::Pause(PauseOpts {
                hostname: Some("h".into()),
                lo_up: false,
                ..Default::default()
            }))
        );
        assert_eq!(
            parse_strs(&["pause", "--id", "abc", "--state-dir", "/run/peapod"]),
            Ok(Command::Pause(PauseOpts {
                id: Some("abc".into()),
                state_dir: Some("/run/peapod".into()),
                ..Default::default()
            }))
        );
    }

    #[test]
    fn pause_errors() {
        assert!(parse_strs(&["pause", "--hostname"]).is_err());
        assert!(parse_strs(&["pause", "--lo-up=1"]).is_err());
        assert!(parse_strs(&["pause", "--bogus"]).is_err());
        assert!(parse_strs(&["pause", "stray"]).is_err());
        assert!(parse_strs(&["pause", "--hostname", ""]).is_err());
        assert!(parse_strs(&["pause", "--hostname", &"x".repeat(65)]).is_err());
        assert!(parse_strs(&["pause", "--lo-up", "--lo-up"]).is_err());
        assert!(parse_strs(&[]).is_err());
        assert!(parse_strs(&["nope"]).is_err());
    }

    #[test]
    fn monitor_full() {
        let mut a = monitor_base();
        a.extend([
            "--runtime-arg",
            "--root",
            "--runtime-arg=/run/r",
            "--log-path",
            "/l",
            "--tty",
            "--stdin",
            "--stdin-once",
        ]);
        let Ok(Command::Monitor(m)) = parse_strs(&a) else {
            panic!("not a monitor command")
        };
        assert_eq!(m.id, "c1");
        assert_eq!(m.bundle, PathBuf::from("/b"));
        assert_eq!(m.runtime, PathBuf::from("/usr/sbin/runc"));
        assert_eq!(
            m.runtime_args,
            vec![OsString::from("--root"), OsString::from("/run/r")]
        );
        assert_eq!(m.exit_file, PathBuf::from("/e"));
        assert_eq!(m.runtime_log, PathBuf::from("/rl"));
        assert_eq!(m.log_path, Some(PathBuf::from("/l")));
        assert!(m.tty && m.stdin && m.stdin_once);
    }

    #[test]
    fn monitor_minimal() {
        let Ok(Command::Monitor(m)) = parse_strs(&monitor_base()) else {
            panic!("not a monitor command")
        };
        assert!(m.runtime_args.is_empty());
        assert_eq!(m.log_path, None);
        assert!(!m.tty && !m.stdin && !m.stdin_once);
    }

    #[test]
    fn monitor_errors() {
        // Each required option, left out.
        for skip in [
            "--id",
            "--bundle",
            "--runtime",
            "--exit-file",
            "--runtime-log",
        ] {
            let base = monitor_base();
            let i = base.iter().position(|a| *a == skip).unwrap();
            let a: Vec<&str> = base
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i && *j != i + 1)
                .map(|(_, a)| *a)
                .collect();
            let err = parse_strs(&a).unwrap_err();
            assert!(err.contains(&skip[2..]), "{err}");
        }
        let mut a = monitor_base();
        a.extend(["--id", "c2"]);
        assert!(parse_strs(&a).unwrap_err().contains("twice"));
        let mut a = monitor_base();
        a[2] = "a/b";
        assert!(parse_strs(&a).is_err());
        let mut a = monitor_base();
        a.push("--runtime-arg");
        assert!(parse_strs(&a).unwrap_err().contains("needs a value"));
        let mut a = monitor_base();
        a.push("--tty=yes");
        assert!(parse_strs(&a).is_err());
    }

    #[test]
    fn help() {
        assert_eq!(parse_strs(&["help"]), Ok(Command::Help));
        assert_eq!(parse_strs(&["--help"]), Ok(Command::Help));
    }
}
