//! The `mediagate` binary: parses the command line, loads or builds the [`Config`],
//! and hands it to `run`. It only wires; the protocol cores and engines live in their
//! own crates.
//!
//! Exit status: 0 success, 1 a role failed at run time (or `status` got no answer), 2 bad
//! command line or config.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

mod cache_cmd;
mod cert_cmd;
mod cli;
mod reload;
mod run;
mod status;
mod users;

use cli::{Cli, Command};
use mediagate_config::{load_file, render_errors, validate, Config, LoadError};

/// mimalloc rather than glibc's malloc: every role allocates per request or packet from
/// several threads, and with glibc a third of the dispatcher's and the relays' CPU per
/// call set-up went to its slow paths (`malloc_consolidate`, `unlink_chunk`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status for a bad command line or config (clap uses 2 for usage errors too).
const EXIT_BAD_CONFIG: u8 = 2;

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::CheckConfig(args) => match load(&args.file) {
            Ok(config) => match users::check_configured_file(&config) {
                Ok(()) => {
                    println!("{}: ok", args.file.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{}: {e}", args.file.display());
                    ExitCode::from(EXIT_BAD_CONFIG)
                }
            },
            Err(status) => status,
        },
        Command::Run(args) => {
            let config = match &args.config {
                None => Config::default(),
                Some(path) => match load(path) {
                    Ok(config) => config,
                    Err(status) => return status,
                },
            };
            start(config, args.config)
        }
        Command::Edge(args) => start_checked(args.to_config()),
        Command::Relay(args) => start_checked(args.to_config()),
        Command::Dispatcher(args) => match args.command {
            Some(cli::DispatcherCommand::Summary(status)) => {
                show_dispatcher_list(status, "summary")
            }
            Some(cli::DispatcherCommand::Sessions(status)) => {
                show_dispatcher_list(status, "sessions")
            }
            None => start_checked(args.to_config()),
        },
        Command::Balancer(args) => match args.command {
            Some(cli::BalancerCommand::Status(status)) => show_balancer_status(status),
            None => start_checked(args.to_config()),
        },
        Command::Status(args) => show_status(args),
        Command::Cache(cmd) => cache_cmd::run(cmd),
        Command::User(cmd) => users::run(cmd),
        Command::Report(args) => show_report(&args),
        Command::Cert(cmd) => cert_cmd::run(cmd),
    }
}

/// `mediagate report`: the totals table on stdout (status 1 when the store cannot be
/// read, 2 for a bad date or config).
fn show_report(args: &cli::ReportArgs) -> ExitCode {
    use mediagate_edge::report::{self, ReportBy};
    let config = match &args.config {
        None => Config::default(),
        Some(path) => match load(path) {
            Ok(config) => config,
            Err(status) => return status,
        },
    };
    let since = match args.since.as_deref().map(report::parse_day).transpose() {
        Ok(since) => since.unwrap_or(0),
        Err(e) => {
            eprintln!("mediagate report: --since {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let by = match args.by {
        cli::ReportBy::Url => ReportBy::Url,
        cli::ReportBy::User => ReportBy::User,
        cli::ReportBy::Day => ReportBy::Day,
    };
    let target =
        mediagate_ops::store::StoreTarget::from_config(&config.accounting, config.state_dir.get());
    if let mediagate_ops::store::StoreTarget::Sqlite(path) = &target {
        // Opening would create an empty store: say where none was found instead.
        if !path.exists() {
            eprintln!(
                "mediagate report: no records store at {} (nothing recorded yet, or another state_dir)",
                path.display()
            );
            return ExitCode::FAILURE;
        }
    }
    match report::report(&target, by, since) {
        Ok(rows) => {
            print!("{}", report::render(by, &rows));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mediagate report: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `mediagate balancer status`: the balancer's services and back ends on stdout, or
/// why there are none on stderr (status 1).
fn show_balancer_status(args: cli::StatusArgs) -> ExitCode {
    let token = match status::token_of(args.token, args.token_file.as_deref()) {
        Ok(token) => token,
        Err(e) => {
            eprintln!("mediagate balancer status: {e}");
            return ExitCode::FAILURE;
        }
    };
    let tls = status::TlsFiles {
        ca: args.cacert,
        cert: args.cert,
        key: args.key,
    };
    match status::balancer_status(&args.admin, token, &tls) {
        Ok(summary) => {
            print!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mediagate balancer status: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `mediagate dispatcher summary|sessions`: the JSON line on stdout, or why there is
/// none on stderr (status 1).
fn show_dispatcher_list(args: cli::StatusArgs, what: &str) -> ExitCode {
    let token = match status::token_of(args.token, args.token_file.as_deref()) {
        Ok(token) => token,
        Err(e) => {
            eprintln!("mediagate dispatcher {what}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let tls = status::TlsFiles {
        ca: args.cacert,
        cert: args.cert,
        key: args.key,
    };
    match status::dispatcher_list(&args.admin, token, &tls, what) {
        Ok(line) => {
            print!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mediagate dispatcher {what}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `mediagate status`: the summary on stdout, or why there is none on stderr (status 1).
fn show_status(args: cli::StatusArgs) -> ExitCode {
    let token = match status::token_of(args.token, args.token_file.as_deref()) {
        Ok(token) => token,
        Err(e) => {
            eprintln!("mediagate status: {e}");
            return ExitCode::FAILURE;
        }
    };
    let tls = status::TlsFiles {
        ca: args.cacert,
        cert: args.cert,
        key: args.key,
    };
    match status::status(&args.admin, token, &tls) {
        Ok(summary) => {
            print!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mediagate status: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Loads a config file, printing every problem as `FILE:LINE:COL: message`.
fn load(path: &Path) -> Result<Config, ExitCode> {
    let name = path.display().to_string();
    load_file(path).map_err(|error| {
        match error {
            LoadError::Invalid { text, errors } => {
                eprint!("{}", render_errors(&name, &text, &errors))
            }
            other => eprintln!("{name}: {other}"),
        }
        ExitCode::from(EXIT_BAD_CONFIG)
    })
}

/// Validates a config built from command-line arguments, then runs it.
fn start_checked(config: Config) -> ExitCode {
    let errors = validate(&config);
    if errors.is_empty() {
        // Built from flags: there is no file for SIGHUP to re-read.
        return start(config, None);
    }
    for error in &errors {
        eprintln!("mediagate: {error}");
    }
    ExitCode::from(EXIT_BAD_CONFIG)
}

/// Runs `config`; `file` is where it came from, for SIGHUP to re-read.
fn start(config: Config, file: Option<PathBuf>) -> ExitCode {
    if let Err(error) = mediagate_ops::log::init(&config.log) {
        eprintln!("mediagate: {error}");
        return ExitCode::FAILURE;
    }
    match run::run(config, file) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}
