//! `mediagate user add|del|list`: edits an edge users file (`mediagate_ops::users`).
//!
//! Passwords come from the terminal with echo off (through `stty`, so no unsafe code
//! here) or from standard input with `--password-stdin`; never from the command line,
//! where other users could read them in the process list. The file is written to a
//! temporary file beside it (mode 0600) and renamed over it, so a running edge reloading
//! on SIGHUP never reads half a file.
//!
//! What it does not: lock against two concurrent editors (the last rename wins), keep
//! comments of an edited file, or signal the running edge (send SIGHUP, or reload
//! through the admin API).

use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;

use mediagate_ops::users::{User, UsersFile};
use mediagate_rtsp::auth::{digest_ha1, Algorithm};

use crate::cli::UserCommand;

/// Runs one `mediagate user` subcommand; problems go to stderr with status 1.
pub fn run(cmd: UserCommand) -> ExitCode {
    match run_inner(cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mediagate user: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_inner(cmd: UserCommand) -> Result<(), String> {
    match cmd {
        UserCommand::Add(a) => {
            let mut file = read(&a.file, true)?;
            let password = read_password(a.password_stdin)?;
            if password.is_empty() {
                return Err("the password is empty".into());
            }
            let mut user = User::new(&a.user, &password, a.groups).map_err(|e| e.reason)?;
            if let Some(realm) = &a.digest_realm {
                user.ha1_md5 = Some(digest_ha1(Algorithm::Md5, &a.user, realm, &password));
                user.ha1_sha256 = Some(digest_ha1(Algorithm::Sha256, &a.user, realm, &password));
            }
            let existed = file.get(&a.user).is_some();
            file.upsert(user);
            write(&a.file, &file)?;
            println!(
                "{} user {} in {}",
                if existed { "updated" } else { "added" },
                a.user,
                a.file.display()
            );
            Ok(())
        }
        UserCommand::Del(a) => {
            let mut file = read(&a.file, false)?;
            if !file.remove(&a.user) {
                return Err(format!("no user {} in {}", a.user, a.file.display()));
            }
            write(&a.file, &file)?;
            println!("removed user {} from {}", a.user, a.file.display());
            Ok(())
        }
        UserCommand::List(a) => {
            let file = read(&a.file, false)?;
            let mut out = std::io::stdout().lock();
            for u in file.users() {
                if a.user.as_ref().is_some_and(|n| *n != u.name) {
                    continue;
                }
                let digest = if u.ha1_md5.is_some() || u.ha1_sha256.is_some() {
                    "digest"
                } else {
                    "basic-only"
                };
                let _ = writeln!(out, "{}\t{}\t{}", u.name, u.groups.join(","), digest);
            }
            Ok(())
        }
    }
}

/// `check-config`: the edge's users file, when configured, must read and parse.
pub fn check_configured_file(config: &mediagate_config::Config) -> Result<(), String> {
    match &config.edge.auth.users_file {
        Some(path) => read(path.get(), false).map(|_| ()),
        None => Ok(()),
    }
}

fn read(path: &Path, missing_is_empty: bool) -> Result<UsersFile, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => UsersFile::parse(&text).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if missing_is_empty && e.kind() == std::io::ErrorKind::NotFound => {
            Ok(UsersFile::default())
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn write(path: &Path, file: &UsersFile) -> Result<(), String> {
    let name = path
        .file_name()
        .ok_or_else(|| format!("{} is not a file name", path.display()))?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(file.to_text().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })
}

/// The password: one line of stdin, or typed twice at the terminal without echo.
fn read_password(from_stdin: bool) -> Result<String, String> {
    let stdin = std::io::stdin();
    if from_stdin || !stdin.is_terminal() {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password: {e}"))?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    let first = prompt("Password: ")?;
    let second = prompt("Again: ")?;
    if first != second {
        return Err("the passwords differ".into());
    }
    Ok(first)
}

fn prompt(text: &str) -> Result<String, String> {
    eprint!("{text}");
    let _ = std::io::stderr().flush();
    let echo_off = stty("-echo");
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if echo_off {
        stty("echo");
        eprintln!();
    }
    read.map_err(|e| format!("cannot read the password: {e}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Runs `stty ARG` on our terminal; false when it could not.
fn stty(arg: &str) -> bool {
    std::process::Command::new("stty")
        .arg(arg)
        .stdin(std::process::Stdio::inherit())
        .status()
        .is_ok_and(|s| s.success())
}
