//! Running untrusted, model-written Python: each program in its own bubblewrap sandbox
//! (no network, loopback included; a read-only system; a private `/tmp`; no home and no
//! repo; an empty environment), under rlimits on CPU time, address space, processes and
//! file size, with a wall-clock timeout that ends every process it started. A program that
//! misbehaves is graded as failed with the reason; nothing it does stops the harness.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How much of each stream a result keeps (its end).
const TAIL_BYTES: usize = 2048;

/// Host uids the sandboxed programs run as when assay runs as root, one per worker, so
/// root's exemption from the process limit does not apply and no two programs share a
/// count.
const SANDBOX_UID_BASE: u32 = 61000;

/// Limits on one program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Wall clock: past it the program and everything it started are killed.
    pub timeout_seconds: f64,
    pub cpu_seconds: u64,
    /// Address space (virtual memory) in bytes.
    pub memory_bytes: u64,
    /// Processes and threads inside the sandbox.
    pub processes: u64,
    /// Largest file the program may write (its private `/tmp` is memory).
    pub file_bytes: u64,
    /// Output past this many bytes (stdout and stderr together) kills the program.
    pub output_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout_seconds: 10.0,
            cpu_seconds: 10,
            memory_bytes: 2 << 30,
            processes: 64,
            file_bytes: 16 << 20,
            output_bytes: 1 << 20,
        }
    }
}

/// Whether programs run isolated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// bubblewrap at this path.
    Bubblewrap(PathBuf),
    /// Only rlimits, a timeout, an empty environment and a scratch folder: the program can
    /// see the machine and the network (`--sandbox none`).
    None,
}

/// Why a program passed or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Passed,
    /// An `assert` failed.
    AssertionFailed,
    /// A test harness compared the output and found it wrong.
    WrongAnswer,
    /// Any other exception or non-zero exit.
    Error,
    /// The wall-clock timeout.
    Timeout,
    CpuLimit,
    MemoryLimit,
    ProcessLimit,
    FileSizeLimit,
    OutputLimit,
    /// Ended by a signal not otherwise explained.
    Killed,
    /// The sandbox itself could not start the program.
    SandboxError,
}

impl Reason {
    pub fn passed(self) -> bool {
        self == Reason::Passed
    }
}

/// What running one program came to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    pub reason: Reason,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub seconds: f64,
    /// The last bytes of each stream (lossy UTF-8).
    pub stdout_tail: String,
    pub stderr_tail: String,
    pub stdout_bytes: u64,
}

impl Execution {
    pub fn passed(&self) -> bool {
        self.reason.passed()
    }
}

/// A program and what goes to its standard input.
#[derive(Debug, Clone, Default)]
pub struct Program {
    pub source: String,
    pub stdin: Vec<u8>,
    /// Overrides the sandbox's wall-clock timeout (and CPU limit) for this program: a
    /// harness that times each of many tests itself needs their sum.
    pub timeout_seconds: Option<f64>,
}

/// Runs programs under one isolation and set of limits.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub isolation: Isolation,
    pub python: PathBuf,
    pub limits: Limits,
}

/// What `--sandbox none` prints (the commands print; the library never does).
pub const NO_ISOLATION_WARNING: &str = "warning: --sandbox none: model-written code runs WITHOUT isolation (it can read your files and reach the network); only time, memory and process limits apply";

/// The system Python (not a user's virtualenv or pyenv shim, which live under home).
pub const SYSTEM_PYTHON: &str = "/usr/bin/python3";

impl Sandbox {
    /// `mode` is `bubblewrap` (the default) or `none`. bubblewrap comes from
    /// `ASSAY_BWRAP` or the PATH; missing, it is an error saying how to get it.
    pub fn new(mode: &str, python: Option<PathBuf>, limits: Limits) -> Result<Sandbox> {
        let isolation = match mode {
            "bubblewrap" | "bwrap" => Isolation::Bubblewrap(find_bwrap()?),
            "none" => Isolation::None,
            other => {
                return Err(Error::Usage(format!(
                    "--sandbox `{other}`: expected bubblewrap or none"
                )))
            }
        };
        let python = python.unwrap_or_else(|| PathBuf::from(SYSTEM_PYTHON));
        if !python.is_file() {
            return Err(Error::Usage(format!(
                "{}: no Python to run model-written code with (give --sandbox-python)",
                python.display()
            )));
        }
        Ok(Sandbox {
            isolation,
            python,
            limits,
        })
    }

    /// Runs every program, `workers` at a time, each result at its program's position.
    pub fn run_all(&self, programs: &[Program], workers: usize) -> Vec<Execution> {
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Option<Execution>>> = Mutex::new(vec![None; programs.len()]);
        let workers = workers.clamp(1, programs.len().max(1));
        std::thread::scope(|scope| {
            for slot in 0..workers {
                let (next, results) = (&next, &results);
                scope.spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= programs.len() {
                        break;
                    }
                    let outcome = self.run_in_slot(&programs[i], slot as u32);
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(outcome);
                });
            }
        });
        results
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .into_iter()
            .map(|r| r.expect("every program ran"))
            .collect()
    }

    /// Runs one program.
    pub fn run(&self, program: &Program) -> Execution {
        self.run_in_slot(program, 0)
    }

    fn run_in_slot(&self, program: &Program, slot: u32) -> Execution {
        let started = Instant::now();
        match self.execute(program, slot, started) {
            Ok(done) => done,
            Err(e) => Execution {
                reason: Reason::SandboxError,
                exit_code: None,
                signal: None,
                seconds: started.elapsed().as_secs_f64(),
                stdout_tail: String::new(),
                stderr_tail: e.to_string(),
                stdout_bytes: 0,
            },
        }
    }

    fn execute(&self, program: &Program, slot: u32, started: Instant) -> Result<Execution> {
        // The program's folder, readable by the sandbox's user, bound read-only.
        let dir = tempfile::Builder::new()
            .prefix("assay-sandbox-")
            .tempdir()
            .map_err(|e| Error::io(std::env::temp_dir(), e))?;
        let main = dir.path().join("main.py");
        std::fs::write(&main, &program.source).map_err(|e| Error::io(&main, e))?;
        let stdin_file = dir.path().join("stdin");
        std::fs::write(&stdin_file, &program.stdin).map_err(|e| Error::io(&stdin_file, e))?;
        readable_by_all(dir.path())?;

        let limits = self.limits_for(program);
        let mut command = self.command(dir.path(), slot, &limits);
        let stdin = std::fs::File::open(&stdin_file).map_err(|e| Error::io(&stdin_file, e))?;
        command
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|e| {
            Error::External(format!("starting {}: {e}", command.get_program().display()))
        })?;
        let output = Arc::new(Mutex::new(Output::default()));
        let cap = limits.output_bytes;
        let readers = [
            reader(child.stdout.take(), output.clone(), Stream::Stdout, cap),
            reader(child.stderr.take(), output.clone(), Stream::Stderr, cap),
        ];
        let deadline = started + Duration::from_secs_f64(limits.timeout_seconds);
        let mut timed_out = false;
        let mut flooded = false;
        let mut pause = Duration::from_millis(1);
        let status = loop {
            if let Some(status) = child
                .try_wait()
                .map_err(|e| Error::External(e.to_string()))?
            {
                break status;
            }
            let total = output.lock().unwrap_or_else(|e| e.into_inner()).total();
            if total > limits.output_bytes {
                flooded = true;
            } else if Instant::now() >= deadline {
                timed_out = true;
            }
            if flooded || timed_out {
                kill_all(&mut child);
                break child.wait().map_err(|e| Error::External(e.to_string()))?;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        };
        for r in readers.into_iter().flatten() {
            let _ = r.join();
        }
        let output = output.lock().unwrap_or_else(|e| e.into_inner());
        // A program stopped by the closed pipe (or ending) before the check above saw the
        // flood still flooded.
        let flooded = flooded || output.total() > limits.output_bytes;
        use std::os::unix::process::ExitStatusExt;
        let (code, signal) = match (&self.isolation, status.code(), status.signal()) {
            // bubblewrap's init reports a program killed by signal N as exit 128 + N.
            (Isolation::Bubblewrap(_), Some(code), None) if (129..=128 + 64).contains(&code) => {
                (None, Some(code - 128))
            }
            (_, code, signal) => (code, signal),
        };
        let stderr_tail = String::from_utf8_lossy(&output.stderr.tail).into_owned();
        let reason = if flooded {
            Reason::OutputLimit
        } else if timed_out {
            Reason::Timeout
        } else {
            classify(code, signal, &stderr_tail)
        };
        Ok(Execution {
            reason,
            exit_code: code,
            signal,
            seconds: started.elapsed().as_secs_f64(),
            stdout_tail: String::from_utf8_lossy(&output.stdout.tail).into_owned(),
            stderr_tail,
            stdout_bytes: output.stdout.total,
        })
    }

    /// The command line: bubblewrap around Python (or Python alone), which sets the
    /// limits on itself and then runs the program.
    /// The sandbox's limits with the program's own timeout, if it has one.
    fn limits_for(&self, program: &Program) -> Limits {
        match program.timeout_seconds {
            Some(seconds) => Limits {
                timeout_seconds: seconds,
                cpu_seconds: seconds.ceil() as u64,
                ..self.limits.clone()
            },
            None => self.limits.clone(),
        }
    }

    fn command(&self, dir: &Path, slot: u32, l: &Limits) -> Command {
        // rlimits are set by the sandboxed Python on itself before it runs the program:
        // inside its own user namespace the process limit counts only its processes.
        let prelude = format!(
            "import os, resource as r\n\
             for k, v in ((r.RLIMIT_CPU, {cpu}), (r.RLIMIT_AS, {mem}), (r.RLIMIT_NPROC, {procs}), (r.RLIMIT_FSIZE, {file}), (r.RLIMIT_CORE, 0)):\n    r.setrlimit(k, (v, v if k != r.RLIMIT_CPU else v + 1))\n\
             os.execv({python:?}, [{python:?}, '-B', {main:?}])",
            cpu = l.cpu_seconds,
            mem = l.memory_bytes,
            procs = l.processes,
            file = l.file_bytes,
            python = self.python.display().to_string(),
            main = match self.isolation {
                Isolation::Bubblewrap(_) => "/sandbox/main.py".to_string(),
                Isolation::None => dir.join("main.py").display().to_string(),
            },
        );
        let mut command = match &self.isolation {
            Isolation::Bubblewrap(bwrap) => {
                let mut c = Command::new(bwrap);
                c.args(["--unshare-all", "--die-with-parent", "--new-session"]);
                c.args(["--ro-bind", "/usr", "/usr"]);
                for top in ["/bin", "/sbin", "/lib", "/lib32", "/lib64"] {
                    bind_top(&mut c, Path::new(top));
                }
                let python_dir = self.python.parent().unwrap_or(Path::new("/"));
                if !python_dir.starts_with("/usr") && python_dir != Path::new("/") {
                    c.arg("--ro-bind").arg(python_dir).arg(python_dir);
                }
                c.args(["--proc", "/proc", "--dev", "/dev"]);
                c.args(["--size", &(64u64 << 20).to_string(), "--tmpfs", "/tmp"]);
                c.arg("--ro-bind").arg(dir).arg("/sandbox");
                c.args(["--chdir", "/tmp", "--clearenv"]);
                c.args([
                    "--setenv",
                    "PATH",
                    "/usr/bin:/bin",
                    "--setenv",
                    "HOME",
                    "/tmp",
                ]);
                c.args(["--setenv", "LANG", "C.UTF-8"]);
                c.arg(&self.python);
                c
            }
            Isolation::None => {
                let mut c = Command::new(&self.python);
                c.env_clear()
                    .env("PATH", "/usr/bin:/bin")
                    .env("HOME", dir)
                    .env("LANG", "C.UTF-8")
                    .current_dir(dir);
                c
            }
        };
        command.arg("-c").arg(prelude);
        if let Isolation::Bubblewrap(_) = self.isolation {
            command.env_clear();
        }
        {
            use std::os::unix::process::CommandExt;
            command.process_group(0);
            if is_root() {
                let uid = SANDBOX_UID_BASE + slot;
                command.uid(uid).gid(uid);
            }
        }
        command
    }
}

/// `/bin`, `/lib`, ...: a symlink (merged /usr) stays a symlink, a folder is bound
/// read-only, an absent one is left out.
fn bind_top(c: &mut Command, top: &Path) {
    match std::fs::symlink_metadata(top) {
        Ok(m) if m.file_type().is_symlink() => {
            if let Ok(target) = std::fs::read_link(top) {
                c.arg("--symlink").arg(target).arg(top);
            }
        }
        Ok(m) if m.is_dir() => {
            c.arg("--ro-bind").arg(top).arg(top);
        }
        _ => {}
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Kills the program's whole process group (bubblewrap's namespace dies with it).
fn kill_all(child: &mut Child) {
    // SAFETY: killpg only sends a signal; the group is the child's own (process_group(0)).
    unsafe {
        libc::killpg(child.id() as libc::pid_t, libc::SIGKILL);
    }
    let _ = child.kill();
}

fn readable_by_all(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| Error::io(&path, e))?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::io(dir, e))
}

/// The reason from how the program ended and what it printed last.
fn classify(code: Option<i32>, signal: Option<i32>, stderr: &str) -> Reason {
    let last_line = stderr.lines().rev().find(|l| !l.trim().is_empty());
    let said = |what: &str| last_line.is_some_and(|l| l.starts_with(what));
    match (code, signal) {
        (Some(0), _) => Reason::Passed,
        (_, Some(libc::SIGXCPU)) => Reason::CpuLimit,
        (_, Some(libc::SIGXFSZ)) => Reason::FileSizeLimit,
        (_, Some(_)) => Reason::Killed,
        _ if said("MemoryError") => Reason::MemoryLimit,
        _ if said("BlockingIOError") || stderr.contains("Resource temporarily unavailable") => {
            Reason::ProcessLimit
        }
        _ if said("OSError: [Errno 27]") || stderr.contains("File too large") => {
            Reason::FileSizeLimit
        }
        _ if said("AssertionError") => Reason::AssertionFailed,
        _ if said("WrongAnswer") => Reason::WrongAnswer,
        _ if said("TimeLimitExceeded") => Reason::Timeout,
        _ => Reason::Error,
    }
}

#[derive(Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

#[derive(Default)]
struct Tail {
    tail: Vec<u8>,
    total: u64,
}

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        self.tail.extend_from_slice(bytes);
        if self.tail.len() > 2 * TAIL_BYTES {
            self.tail.drain(..self.tail.len() - TAIL_BYTES);
        }
    }
}

#[derive(Default)]
struct Output {
    stdout: Tail,
    stderr: Tail,
}

impl Output {
    fn total(&self) -> u64 {
        self.stdout.total + self.stderr.total
    }
}

/// Reads a stream to its end, keeping only its tail and count; past `cap` bytes in all
/// it stops reading and closes the pipe, so a flood cannot outrun the kill.
fn reader(
    stream: Option<impl Read + Send + 'static>,
    output: Arc<Mutex<Output>>,
    which: Stream,
    cap: u64,
) -> Option<std::thread::JoinHandle<()>> {
    let mut stream = stream?;
    Some(std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut out = output.lock().unwrap_or_else(|e| e.into_inner());
            match which {
                Stream::Stdout => out.stdout.push(&buf[..n]),
                Stream::Stderr => out.stderr.push(&buf[..n]),
            }
            if out.total() > cap {
                break;
            }
        }
        drop(stream);
        if let Ok(mut out) = output.lock() {
            let tail = match which {
                Stream::Stdout => &mut out.stdout,
                Stream::Stderr => &mut out.stderr,
            };
            let keep = tail.tail.len().saturating_sub(TAIL_BYTES);
            tail.tail.drain(..keep);
        }
    }))
}

/// bubblewrap from `ASSAY_BWRAP` or the PATH.
fn find_bwrap() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("ASSAY_BWRAP") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(missing_bwrap(&format!("ASSAY_BWRAP={}", path.display())))
        };
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("bwrap"))
                .find(|p| p.is_file())
        })
        .ok_or_else(|| missing_bwrap("bwrap is not on the PATH"))
}

fn missing_bwrap(detail: &str) -> Error {
    Error::Usage(format!(
        "model-written code runs in a bubblewrap sandbox, and none was found ({detail}): install it (Debian/Ubuntu: apt-get install bubblewrap; or scripts/install-bubblewrap.sh), or pass --sandbox none to run the code without isolation"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_from_how_a_program_ended() {
        assert_eq!(classify(Some(0), None, ""), Reason::Passed);
        assert_eq!(
            classify(Some(1), None, "Traceback...\nAssertionError\n"),
            Reason::AssertionFailed
        );
        assert_eq!(
            classify(Some(1), None, "Traceback...\nMemoryError\n"),
            Reason::MemoryLimit
        );
        assert_eq!(
            classify(
                Some(1),
                None,
                "BlockingIOError: [Errno 11] Resource temporarily unavailable"
            ),
            Reason::ProcessLimit
        );
        assert_eq!(classify(None, Some(libc::SIGXCPU), ""), Reason::CpuLimit);
        assert_eq!(
            classify(None, Some(libc::SIGXFSZ), ""),
            Reason::FileSizeLimit
        );
        assert_eq!(
            classify(Some(1), None, "NameError: name 'x' is not defined"),
            Reason::Error
        );
    }

    #[test]
    fn a_tail_keeps_the_end_and_counts_everything() {
        let mut t = Tail::default();
        for _ in 0..10_000 {
            t.push(b"0123456789");
        }
        assert_eq!(t.total, 100_000);
        assert!(t.tail.len() <= 2 * TAIL_BYTES);
        assert!(t.tail.ends_with(b"0123456789"));
    }
}
