//! peapod-shim: the small helper binary of peapod, single-threaded and depending on libc only,
//! because one monitor process runs per container and its memory adds up.
//!
//! Subcommands (see `args.rs` for the exact syntax):
//! - `pause`: the pod's infra process, holding the pod's namespaces (`pause.rs`);
//! - `monitor`: one per container: runs `RUNTIME create`, copies the container's output to a
//!   CRI log, reopens it on SIGUSR1 with an acknowledgement (`logack.rs`), reaps the container
//!   and writes its exit file (`monitor.rs`).
//!
//! Both report to the daemon on fd 3 with one line (`syncfd.rs`). A command-line error is also
//! reported there, as `error <message>`, with exit status 2.

mod args;
mod attach;
// The client half (resize_payload, Decoder::pending) is the daemon's, which compiles the same file.
#[allow(dead_code)]
mod attachproto;
mod console;
mod crilog;
mod exitfile;
mod logack;
mod monitor;
mod pause;
mod runtimelog;
mod syncfd;
mod sys;

use args::Command;

fn main() {
    let code = match args::parse(std::env::args_os().skip(1)) {
        Ok(Command::Pause(opts)) => pause::run(&opts),
        Ok(Command::Monitor(opts)) => monitor::run(&opts),
        Ok(Command::Help) => {
            print!("{}", args::USAGE);
            0
        }
        Err(msg) => {
            eprint!("peapod-shim: {msg}\n{}", args::USAGE);
            syncfd::SyncPipe::take().error(&msg);
            2
        }
    };
    std::process::exit(code);
}
