//! Child processes that always stop: own process group, parent-death signal, kill on drop.
//!
//! Every peer program (gst-rtsp-server origin, ffmpeg, GStreamer clients) is started here:
//! * in its own process group, so `Drop` can SIGKILL the program and anything it forked;
//! * with `PR_SET_PDEATHSIG = SIGKILL`, so it dies even when the test binary is killed
//!   (Ctrl-C, a test timeout) and no destructor runs. The kernel sends that signal when the
//!   *thread* that forked exits, so all children are forked by one long-lived spawner
//!   thread: a peer started by one test thread and shared through a `static` is not killed
//!   when that test thread ends.
//! * with stdout and stderr read by threads that keep the last lines for failure messages
//!   (and, on request, hand each stdout line to a callback or keep all of stdout).
//!
//! What it does not do: sandboxing, resource limits, or pseudo-terminals. Linux only.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How many lines of each output stream a peer keeps for diagnostics.
pub const TAIL_LINES: usize = 200;
/// Longest line kept; longer lines are cut (a peer printing binary data stays bounded).
pub(crate) const MAX_LINE: usize = 16 * 1024;
/// Most stdout bytes [`run`] keeps for a finished program.
pub const MAX_CAPTURE: usize = 64 * 1024 * 1024;

/// How long [`Peer::wait_timeout`] and [`Peer::kill`] wait, after the child has exited,
/// for its output pipes to reach end of file. Bounded because a grandchild that left
/// the process group can hold them open.
pub const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// Debian's interpreter, which has the GStreamer GObject bindings (a `python3` earlier on
/// `PATH` may not).
pub(crate) const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// Finds `program` on `PATH` (or checks an absolute path); a missing program is an error
/// that names the Debian `package` to install.
pub fn require_program(program: &str, package: &'static str) -> Result<PathBuf> {
    let missing = || Error::MissingProgram {
        program: program.to_string(),
        package,
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return if p.is_file() { Ok(p) } else { Err(missing()) };
    }
    let path = std::env::var_os("PATH").ok_or_else(missing)?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .ok_or_else(missing)
}

/// The directory holding the Python peer scripts (`gst_origin.py`, `rtspsrc_client.py`).
pub fn peers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers")
}

/// Returns the path of a peer script, checking that it and Debian's Python exist.
pub(crate) fn python_script(name: &str) -> Result<(PathBuf, PathBuf)> {
    let python = require_program(
        SYSTEM_PYTHON,
        "python3 python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-rtsp-server-1.0",
    )?;
    let script = peers_dir().join(name);
    if !script.is_file() {
        return Err(Error::Io {
            what: format!("peer script {} is missing", script.display()),
            source: io::Error::from(io::ErrorKind::NotFound),
        });
    }
    Ok((python, script))
}

/// The last lines a stream printed, bounded in count and length.
#[derive(Debug, Default)]
struct Tail {
    lines: VecDeque<String>,
    /// Everything printed, when the caller asked to keep it (bounded by [`MAX_CAPTURE`]).
    all: Option<Vec<u8>>,
    closed: bool,
}

impl Tail {
    fn push_line(&mut self, line: &[u8]) {
        let cut = &line[..line.len().min(MAX_LINE)];
        if self.lines.len() == TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines
            .push_back(String::from_utf8_lossy(cut).into_owned());
    }
}

/// A callback for each stdout line of a [`Peer`] (called from a reader thread).
pub type LineCallback = Box<dyn FnMut(&str) + Send>;

/// Shared between a reader thread and the [`Peer`]: the tail plus a way to wait for EOF.
#[derive(Default)]
struct Stream {
    tail: Mutex<Tail>,
    eof: std::sync::Condvar,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking test thread must not make every later diagnostic panic too.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn spawn_reader(
    name: String,
    mut input: impl Read + Send + 'static,
    stream: Arc<Stream>,
    mut on_line: Option<LineCallback>,
) {
    let on_failure = stream.clone();
    let spawned = thread::Builder::new()
        .name(format!("{name}-out"))
        .spawn(move || {
            let mut buf = [0u8; 8192];
            let mut line: Vec<u8> = Vec::new();
            let mut deliver = |line: &mut Vec<u8>, stream: &Stream| {
                if let Some(cb) = on_line.as_mut() {
                    cb(&String::from_utf8_lossy(line));
                }
                lock(&stream.tail).push_line(line);
                line.clear();
            };
            loop {
                let n = match input.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                let chunk = &buf[..n];
                {
                    let mut tail = lock(&stream.tail);
                    if let Some(all) = tail.all.as_mut() {
                        let room = MAX_CAPTURE.saturating_sub(all.len());
                        all.extend_from_slice(&chunk[..n.min(room)]);
                    }
                }
                for &b in chunk {
                    if b == b'\n' || b == b'\r' {
                        if !line.is_empty() {
                            deliver(&mut line, &stream);
                        }
                    } else if line.len() < MAX_LINE {
                        line.push(b);
                    }
                }
            }
            if !line.is_empty() {
                deliver(&mut line, &stream);
            }
            lock(&stream.tail).closed = true;
            stream.eof.notify_all();
        });
    if spawned.is_err() {
        // Without a reader the pipe fills and the child blocks; mark closed so nobody waits.
        lock(&on_failure.tail).closed = true;
    }
}

/// What a [`Peer`] does with its stdout besides keeping the last lines.
#[derive(Default)]
pub struct StdoutHandling {
    /// Called with every stdout line (without the line end), from a reader thread.
    pub on_line: Option<LineCallback>,
    /// Keep all of stdout (up to [`MAX_CAPTURE`] bytes) for [`Peer::stdout_bytes`].
    pub keep_all: bool,
}

/// A running child program that is killed (with its whole process group) when dropped.
pub struct Peer {
    name: String,
    pid: u32,
    child: Mutex<Child>,
    status: Mutex<Option<ExitStatus>>,
    stdout: Arc<Stream>,
    stderr: Arc<Stream>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("name", &self.name)
            .field("pid", &self.pid)
            .finish()
    }
}

type SpawnJob = (Command, mpsc::Sender<io::Result<Child>>);

/// Forks every child from one thread that lives as long as the test process, because the
/// kernel delivers `PR_SET_PDEATHSIG` when the forking *thread* ends.
fn spawn_on_spawner_thread(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        let started = thread::Builder::new()
            .name("testkit-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            });
        if let Err(e) = started {
            eprintln!("testkit: cannot start the spawner thread: {e}");
        }
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    lock(sender)
        .send((cmd, reply_tx))
        .map_err(|_| io::Error::other("testkit spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("testkit spawner thread dropped the request"))?
}

/// Arranges for the child to get SIGKILL when the spawner thread (hence the test process)
/// dies, and refuses to start if that already happened.
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec. It only calls prctl(2) and
    // getppid(2), which are async-signal-safe, and builds io::Errors from raw OS codes,
    // which does not allocate; no lock or other state of the parent is touched.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl; then nobody would kill us.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Sends `signal` to every process in the group `pgid`.
#[allow(unsafe_code)]
fn signal_group(pgid: u32, signal: libc::c_int) -> bool {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return false;
    };
    // kill(0) and kill(-1) would hit our own group or every process we may signal.
    if pgid <= 1 {
        return false;
    }
    // SAFETY: kill(2) has no memory-safety preconditions; a negative pid addresses exactly
    // the process group created for this child with `process_group(0)`.
    unsafe { libc::kill(-pgid, signal) == 0 }
}

impl Peer {
    /// Starts `cmd` as a peer named `name` (used in diagnostics), keeping output tails.
    pub fn spawn(name: &str, cmd: Command) -> Result<Peer> {
        Self::spawn_with(name, cmd, StdoutHandling::default())
    }

    /// Starts `cmd`, handling stdout as `stdout` says.
    pub fn spawn_with(name: &str, mut cmd: Command, stdout: StdoutHandling) -> Result<Peer> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        die_with_parent(&mut cmd);
        let mut child = spawn_on_spawner_thread(cmd).map_err(|source| Error::Spawn {
            program: program.clone(),
            source,
        })?;
        let out_stream = Arc::new(Stream::default());
        let err_stream = Arc::new(Stream::default());
        if stdout.keep_all {
            lock(&out_stream.tail).all = Some(Vec::new());
        }
        if let Some(out) = child.stdout.take() {
            spawn_reader(name.to_string(), out, out_stream.clone(), stdout.on_line);
        } else {
            lock(&out_stream.tail).closed = true;
        }
        if let Some(err) = child.stderr.take() {
            spawn_reader(name.to_string(), err, err_stream.clone(), None);
        } else {
            lock(&err_stream.tail).closed = true;
        }
        Ok(Peer {
            name: name.to_string(),
            pid: child.id(),
            child: Mutex::new(child),
            status: Mutex::new(None),
            stdout: out_stream,
            stderr: err_stream,
        })
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child's process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends the signal `name` (`"HUP"`, `"TERM"`, `"USR1"`, …) to the child alone, not
    /// its group, as an operator's `kill -NAME pid` would. Panics if `kill` refuses: a
    /// test that signals a peer has no use for a signal that was not sent.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(
            status.success(),
            "kill -{name} {} failed\n{}",
            self.pid,
            self.diagnostics()
        );
    }

    /// The exit status if the child has exited, without blocking.
    pub fn try_status(&self) -> Option<ExitStatus> {
        let mut status = lock(&self.status);
        if status.is_none() {
            if let Ok(Some(s)) = lock(&self.child).try_wait() {
                *status = Some(s);
            }
        }
        *status
    }

    /// Waits up to `timeout` for the child to exit. Once it has, also waits (at most
    /// [`OUTPUT_DRAIN`]) for the reader threads to drain its pipes, so the output tails
    /// read after this are complete: without that, a test could check a line the
    /// process wrote just before it exited and find it missing.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_status() {
                self.wait_output_closed(OUTPUT_DRAIN);
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Asks the process group to stop (SIGTERM), waits up to `grace`, then kills it.
    /// Returns the exit status.
    pub fn terminate(&self, grace: Duration) -> Option<ExitStatus> {
        if self.try_status().is_none() {
            signal_group(self.pid, libc::SIGTERM);
            if let Some(s) = self.wait_timeout(grace) {
                // Leftover group members (forked helpers) still get killed.
                signal_group(self.pid, libc::SIGKILL);
                return Some(s);
            }
        }
        self.kill()
    }

    /// Kills the whole process group (SIGKILL) and reaps the child; like
    /// [`Peer::wait_timeout`], lets the reader threads drain its output first.
    pub fn kill(&self) -> Option<ExitStatus> {
        signal_group(self.pid, libc::SIGKILL);
        let status = {
            let mut status = lock(&self.status);
            if status.is_none() {
                let mut child = lock(&self.child);
                let _ = child.kill();
                *status = child.wait().ok();
            }
            *status
        };
        self.wait_output_closed(OUTPUT_DRAIN);
        status
    }

    /// Waits up to `timeout` for both output streams to reach end of file (after exit the
    /// reader threads may still be draining the pipes).
    pub fn wait_output_closed(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        for stream in [&self.stdout, &self.stderr] {
            let mut tail = lock(&stream.tail);
            while !tail.closed {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                tail = stream
                    .eof
                    .wait_timeout(tail, left)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
        }
        true
    }

    /// The last stdout lines (at most [`TAIL_LINES`]).
    pub fn stdout_tail(&self) -> Vec<String> {
        lock(&self.stdout.tail).lines.iter().cloned().collect()
    }

    /// The last stderr lines (at most [`TAIL_LINES`]).
    pub fn stderr_tail(&self) -> Vec<String> {
        lock(&self.stderr.tail).lines.iter().cloned().collect()
    }

    /// Polls the last stderr lines until `find` picks something out of them and returns
    /// it; panics naming `what`, with the peer's output, once `timeout` has passed or
    /// the peer has exited without it. For tests that wait on a peer's log.
    pub fn wait_for_stderr<T>(
        &self,
        what: &str,
        timeout: Duration,
        find: impl FnMut(&[String]) -> Option<T>,
    ) -> T {
        self.wait_for_lines(what, timeout, || self.stderr_tail(), find)
    }

    fn wait_for_lines<T>(
        &self,
        what: &str,
        timeout: Duration,
        tail: impl Fn() -> Vec<String>,
        mut find: impl FnMut(&[String]) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            // Taken before the lines are read: once the peer has exited and both pipes
            // are drained, the lines are all there will be, and waiting on is pointless.
            let ended = self.try_status().is_some() && self.output_closed();
            if let Some(found) = find(&tail()) {
                return found;
            }
            assert!(
                !ended && Instant::now() < deadline,
                "no {what} in {timeout:?}{}:\n{}",
                if ended { " (the peer has exited)" } else { "" },
                self.diagnostics()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether both output streams have reached end of file (not waiting).
    fn output_closed(&self) -> bool {
        [&self.stdout, &self.stderr]
            .iter()
            .all(|stream| lock(&stream.tail).closed)
    }

    /// The first of the last stderr lines that contains `needle`, waiting up to
    /// `timeout` for one (see [`Peer::wait_for_stderr`]).
    pub fn wait_for_stderr_line(&self, needle: &str, timeout: Duration) -> String {
        self.wait_for_stderr(&format!("line with {needle:?}"), timeout, |lines| {
            lines.iter().find(|l| l.contains(needle)).cloned()
        })
    }

    /// Polls the last stdout lines until `find` picks something out of them and returns
    /// it; panics naming `what`, with the peer's output, once `timeout` has passed or
    /// the peer has exited without it. A
    /// line the peer printed before the test saw its effect (an answer it sent) may
    /// still be on its way through the reader thread: wait for it, do not look once.
    pub fn wait_for_stdout<T>(
        &self,
        what: &str,
        timeout: Duration,
        find: impl FnMut(&[String]) -> Option<T>,
    ) -> T {
        self.wait_for_lines(what, timeout, || self.stdout_tail(), find)
    }

    /// Waits up to `timeout` until UDP `port` is bound (by this peer, as it is meant to
    /// be), in network namespace `netns` if given; panics with the peer's output once
    /// the time is up or the peer has exited. A peer that others send to (a SIP callee,
    /// a proxy) must listen before the first datagram comes: a fixed pause is too short
    /// on a loaded machine. Asks `ss`.
    pub fn wait_udp_bound(&self, port: u16, netns: Option<&str>, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let filter = format!("sport = :{port}");
        loop {
            let mut cmd = match netns {
                Some(ns) => {
                    let mut cmd = Command::new("ip");
                    cmd.args(["netns", "exec", ns, "ss"]);
                    cmd
                }
                None => Command::new("ss"),
            };
            let out = cmd
                .args(["-H", "-l", "-u", "-n", &filter])
                .output()
                .expect("ss runs");
            if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
                return;
            }
            assert!(
                self.try_status().is_none() && Instant::now() < deadline,
                "{} never bound UDP port {port}:\n{}",
                self.name,
                self.diagnostics()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// All of stdout so far, if the peer was spawned with `keep_all`.
    pub fn stdout_bytes(&self) -> Vec<u8> {
        lock(&self.stdout.tail).all.clone().unwrap_or_default()
    }

    /// A block of text for failure messages: name, pid, status and the last output lines.
    pub fn diagnostics(&self) -> String {
        diagnostics_text(
            &self.name,
            self.pid,
            self.try_status(),
            &self.stdout_tail(),
            &self.stderr_tail(),
            40,
        )
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The nice value of each thread of process `pid` whose name starts with `prefix`
/// (`/proc/PID/task/*`), for checking a `*_scheduling` key reached its threads.
pub fn thread_nice_values(pid: u32, prefix: &str) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the command's closing parenthesis: state is the 3rd field of
        // stat, nice the 19th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        if let Some(nice) = rest.split_whitespace().nth(16).and_then(|n| n.parse().ok()) {
            out.push(nice);
        }
    }
    out
}

/// Describes an exit status in words ("exit status 1", "killed by signal 9").
pub fn describe_status(status: Option<ExitStatus>) -> String {
    match status {
        None => "still running".to_string(),
        Some(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            (None, None) => format!("{s}"),
        },
    }
}

fn diagnostics_text(
    name: &str,
    pid: u32,
    status: Option<ExitStatus>,
    stdout: &[String],
    stderr: &[String],
    max_lines: usize,
) -> String {
    let mut s = format!("{name} (pid {pid}, {})\n", describe_status(status));
    for (label, lines) in [("stdout", stdout), ("stderr", stderr)] {
        let skip = lines.len().saturating_sub(max_lines);
        for line in lines.iter().skip(skip) {
            s.push_str(label);
            s.push_str(": ");
            s.push_str(line);
            s.push('\n');
        }
    }
    s
}

/// A program that ran to its end (or was killed at its time limit).
#[derive(Debug)]
pub struct Finished {
    /// Exit status; `None` only if reaping failed.
    pub status: Option<ExitStatus>,
    /// True if the harness killed it at the time limit.
    pub timed_out: bool,
    /// Everything it wrote to stdout (bounded by [`MAX_CAPTURE`]).
    pub stdout: Vec<u8>,
    /// Its last stderr lines.
    pub stderr: Vec<String>,
    /// Name, status and last output lines, for failure messages.
    pub diagnostics: String,
}

impl Finished {
    /// True if it exited by itself with status 0.
    pub fn success(&self) -> bool {
        !self.timed_out && self.status.is_some_and(|s| s.success())
    }
}

/// Runs `cmd` to completion, killing it (and its group) after `timeout`.
pub fn run(name: &str, cmd: Command, timeout: Duration) -> Result<Finished> {
    let peer = Peer::spawn_with(
        name,
        cmd,
        StdoutHandling {
            on_line: None,
            keep_all: true,
        },
    )?;
    let mut timed_out = false;
    let status = match peer.wait_timeout(timeout) {
        Some(s) => Some(s),
        None => {
            timed_out = true;
            peer.kill()
        }
    };
    // A grandchild that kept the pipe open was killed with the group; EOF follows quickly.
    peer.wait_output_closed(Duration::from_secs(2));
    Ok(Finished {
        status,
        timed_out,
        stdout: peer.stdout_bytes(),
        stderr: peer.stderr_tail(),
        diagnostics: peer.diagnostics(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(script);
        c
    }

    #[test]
    fn run_captures_stdout_and_stderr_tail() {
        let f = run(
            "sh",
            sh("printf 'a\\nb\\n'; echo oops >&2; exit 3"),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(f.stdout, b"a\nb\n");
        assert_eq!(f.stderr, vec!["oops".to_string()]);
        assert_eq!(f.status.and_then(|s| s.code()), Some(3));
        assert!(!f.timed_out);
        assert!(!f.success());
        assert!(f.diagnostics.contains("exit status 3"), "{}", f.diagnostics);
        assert!(f.diagnostics.contains("stderr: oops"), "{}", f.diagnostics);
    }

    #[test]
    fn run_kills_at_the_time_limit_including_grandchildren() {
        let started = Instant::now();
        // The grandchild `sleep` holds stdout open; only a group kill ends the run quickly.
        let f = run(
            "sleeper",
            sh("sleep 30 & echo started; wait"),
            Duration::from_millis(300),
        )
        .unwrap();
        assert!(f.timed_out);
        assert_eq!(f.stdout, b"started\n");
        assert_eq!(f.status.and_then(|s| s.signal()), Some(libc::SIGKILL));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn an_exited_peers_output_is_complete_once_wait_returns() {
        // The child exits at once; a grandchild still holding its stderr writes the
        // last line 300 ms later. `wait_timeout` returns at the child's exit, and the
        // line must be in the tail by then: the pipes are drained before it returns.
        let peer = Peer::spawn("late", sh("(sleep 0.3; echo late >&2) & exit 5")).unwrap();
        let status = peer.wait_timeout(Duration::from_secs(20)).unwrap();
        assert_eq!(status.code(), Some(5));
        assert_eq!(peer.stderr_tail(), vec!["late".to_string()]);
    }

    #[test]
    fn drop_kills_the_process_group() {
        let peer = Peer::spawn("group", sh("sleep 30 & echo $!; wait")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while peer.stdout_tail().is_empty() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        let grandchild: u32 = peer.stdout_tail()[0].trim().parse().unwrap();
        let proc_path = format!("/proc/{grandchild}");
        assert!(std::path::Path::new(&proc_path).exists());
        drop(peer);
        // The grandchild is not our child, so it is reaped by init: wait for it to vanish
        // (or become a zombie, whose state is 'Z').
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let state = std::fs::read_to_string(format!("{proc_path}/stat")).unwrap_or_default();
            let gone = state.is_empty() || state.split(' ').nth(2) == Some("Z");
            if gone {
                break;
            }
            assert!(Instant::now() < deadline, "grandchild survived: {state}");
            thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn child_has_parent_death_signal_and_own_group() {
        // Ask the child itself: prctl(PR_GET_PDEATHSIG) and its process group.
        let mut cmd = Command::new(SYSTEM_PYTHON);
        cmd.arg("-c").arg(
            "import ctypes, os\n\
             sig = ctypes.c_int(0)\n\
             ctypes.CDLL(None).prctl(2, ctypes.byref(sig))\n\
             print(sig.value, os.getpgid(0) == os.getpid(), os.getppid())",
        );
        let f = run("pdeathsig", cmd, Duration::from_secs(10)).unwrap();
        assert!(f.success(), "{}", f.diagnostics);
        assert_eq!(
            String::from_utf8_lossy(&f.stdout).trim(),
            format!("{} True {}", libc::SIGKILL, std::process::id())
        );
    }

    #[test]
    fn terminate_sends_sigterm_first() {
        let peer = Peer::spawn(
            "trap",
            sh("trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.05; done"),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while peer.stdout_tail().is_empty() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        let status = peer.terminate(Duration::from_secs(5));
        assert_eq!(status.and_then(|s| s.code()), Some(7));
        peer.wait_output_closed(Duration::from_secs(2));
        assert_eq!(peer.stdout_tail(), vec!["ready", "got-term"]);
    }

    #[test]
    fn line_callback_sees_every_line_and_tail_is_bounded() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let peer = Peer::spawn_with(
            "lines",
            sh("i=0; while [ $i -lt 250 ]; do echo line$i; i=$((i+1)); done"),
            StdoutHandling {
                on_line: Some(Box::new(move |l| lock(&seen2).push(l.to_string()))),
                keep_all: false,
            },
        )
        .unwrap();
        assert!(peer.wait_timeout(Duration::from_secs(5)).is_some());
        assert!(peer.wait_output_closed(Duration::from_secs(5)));
        assert_eq!(lock(&seen).len(), 250);
        let tail = peer.stdout_tail();
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail[0], "line50");
        assert_eq!(tail[TAIL_LINES - 1], "line249");
    }

    #[test]
    fn a_wait_for_a_line_gives_up_once_the_peer_has_exited_without_it() {
        let peer = Peer::spawn("gone", sh("echo other >&2")).unwrap();
        let started = Instant::now();
        let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            peer.wait_for_stderr_line("never-printed", Duration::from_secs(60))
        }));
        let message = waited.expect_err("no such line");
        let message = message
            .downcast_ref::<String>()
            .expect("a formatted panic message");
        assert!(message.contains("the peer has exited"), "{message}");
        assert!(started.elapsed() < Duration::from_secs(30));
        // A line printed just before the exit is still found.
        let peer = Peer::spawn("last-words", sh("echo last-words >&2")).unwrap();
        peer.wait_for_stderr_line("last-words", Duration::from_secs(20));
    }

    #[test]
    fn wait_udp_bound_returns_once_the_port_is_bound() {
        let peer = Peer::spawn("binds-later", sh("sleep 30")).unwrap();
        let port = crate::ports::free_udp_port().unwrap();
        let binder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let socket = std::net::UdpSocket::bind(("127.0.0.1", port)).unwrap();
            std::thread::sleep(Duration::from_secs(10));
            drop(socket);
        });
        let started = Instant::now();
        peer.wait_udp_bound(port, None, Duration::from_secs(20));
        assert!(started.elapsed() >= Duration::from_millis(250));
        drop(binder);
    }

    #[test]
    fn wait_for_stdout_sees_a_line_printed_later() {
        let peer = Peer::spawn("late-out", sh("sleep 0.3; echo found-it; sleep 30")).unwrap();
        assert!(peer.stdout_tail().is_empty());
        let line = peer.wait_for_stdout("the line", Duration::from_secs(20), |lines| {
            lines.iter().find(|l| l.starts_with("found")).cloned()
        });
        assert_eq!(line, "found-it");
    }

    #[test]
    fn missing_program_is_a_clear_error() {
        let e = require_program("surely-not-a-program-xyz", "some-package").unwrap_err();
        assert_eq!(
            e.to_string(),
            "`surely-not-a-program-xyz` is not installed; install the Debian package(s) \
             `some-package` (apt-get install some-package)"
        );
        assert!(require_program("sh", "dash").is_ok());
        assert!(require_program("/nonexistent/bin/x", "x").is_err());
    }

    #[test]
    fn long_lines_are_cut() {
        let f = run(
            "long",
            sh("head -c 40000 /dev/zero | tr '\\0' x >&2"),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(f.stderr.len(), 1);
        assert_eq!(f.stderr[0].len(), MAX_LINE);
    }
}
