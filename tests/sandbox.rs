//! The code sandbox against hostile programs: each is contained and graded as failed with
//! its reason, the host sees nothing of it, and the programs beside it finish normally.
//! Needs bubblewrap (scripts/install-bubblewrap.sh, run by scripts/test.sh).

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use assay::sandbox::{Limits, Program, Reason, Sandbox};

fn sandbox(limits: Limits) -> Sandbox {
    Sandbox::new("bubblewrap", None, limits).expect("bubblewrap is installed")
}

fn program(source: &str) -> Program {
    Program {
        source: source.to_string(),
        stdin: Vec::new(),
        timeout_seconds: None,
    }
}

#[test]
fn hostile_programs_are_contained_and_graded_with_their_reason() {
    let host = tempfile::tempdir().unwrap();
    // A secret on the host the program knows the path of.
    let secret = host.path().join("id_ed25519");
    std::fs::write(&secret, "SECRET-KEY-MATERIAL").unwrap();
    let planted = host.path().join("planted.txt");
    let repo_file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("planted-by-sandbox");

    // A server on the host's loopback that counts the connections it is sent.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    {
        let accepted = accepted.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                accepted.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
    }

    let cases: Vec<(&str, String, Reason)> = vec![
        ("passes", "assert 1 + 1 == 2\nprint('ok')\n".into(), Reason::Passed),
        (
            "fork bomb",
            "import os\nwhile True:\n    os.fork()\n".into(),
            Reason::ProcessLimit,
        ),
        (
            "busy loop",
            "while True:\n    pass\n".into(),
            Reason::CpuLimit,
        ),
        (
            "sleeps forever",
            "import time\ntime.sleep(10_000)\n".into(),
            Reason::Timeout,
        ),
        (
            "100 GB allocation",
            "x = bytearray(100 * 2**30)\n".into(),
            Reason::MemoryLimit,
        ),
        (
            "writes outside /tmp",
            format!(
                "import os\nopen('/tmp/scratch', 'w').write('fine')\nfor path in ['/usr/evil', {planted:?}, {repo:?}]:\n    try:\n        open(path, 'w').write('x')\n        print('WROTE', path)\n    except OSError as e:\n        print('refused', path, e)\nassert not any(os.path.exists(p) for p in ['/usr/evil', {planted:?}, {repo:?}])\nraise SystemExit('tried to write outside /tmp')\n",
                planted = planted.display().to_string(),
                repo = repo_file.display().to_string(),
            ),
            Reason::Error,
        ),
        (
            "connects to the host",
            format!(
                "import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\ns.sendall(b'stolen')\n"
            ),
            Reason::Error,
        ),
        (
            "reads keys and the environment",
            format!(
                "import os\nprint(sorted(os.environ))\nfor path in [{secret:?}, os.path.expanduser('~/.ssh/id_rsa'), '/root/.ssh/id_rsa']:\n    try:\n        print(open(path).read())\n    except OSError as e:\n        print('no', path, type(e).__name__)\nprint(os.environ['CARGO_MANIFEST_DIR'])\n",
                secret = secret.display().to_string(),
            ),
            Reason::Error,
        ),
        (
            "prints 1 GB",
            "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(chunk)\n"
                .into(),
            Reason::OutputLimit,
        ),
        (
            "writes a 1 GB file in /tmp",
            "with open('/tmp/big', 'wb') as f:\n    for _ in range(1024):\n        f.write(b'0' * (1 << 20))\n"
                .into(),
            Reason::FileSizeLimit,
        ),
    ];
    let limits = Limits {
        // Long enough that the busy loop reaches its CPU limit first on a loaded machine.
        timeout_seconds: 12.0,
        cpu_seconds: 2,
        ..Limits::default()
    };
    let programs: Vec<Program> = cases.iter().map(|(_, source, _)| program(source)).collect();
    let started = std::time::Instant::now();
    let results = sandbox(limits.clone()).run_all(&programs, 2);
    let elapsed = started.elapsed().as_secs_f64();

    assert_eq!(results.len(), cases.len(), "every program has a result");
    for ((name, _, want), got) in cases.iter().zip(&results) {
        assert_eq!(
            got.reason, *want,
            "{name}: {:?}, exit {:?}, signal {:?}\nstdout: {}\nstderr: {}",
            got.reason, got.exit_code, got.signal, got.stdout_tail, got.stderr_tail
        );
        assert_eq!(got.passed(), *name == "passes", "{name}");
        assert!(
            got.seconds < limits.timeout_seconds + 3.0,
            "{name} took {} s",
            got.seconds
        );
        // Nothing of the host leaks into what the program printed.
        for leak in ["SECRET-KEY-MATERIAL", "WROTE"] {
            assert!(
                !got.stdout_tail.contains(leak) && !got.stderr_tail.contains(leak),
                "{name} printed {leak}: {}",
                got.stdout_tail
            );
        }
    }
    let by_name = |n: &str| &results[cases.iter().position(|c| c.0 == n).unwrap()];
    assert_eq!(by_name("passes").stdout_tail, "ok\n");
    // The environment the program saw was the sandbox's own, nothing inherited.
    let env_seen = &by_name("reads keys and the environment").stdout_tail;
    assert!(env_seen.contains("['HOME', 'LANG', 'PATH'"), "{env_seen}");
    assert!(!env_seen.contains(env!("CARGO_MANIFEST_DIR")), "{env_seen}");
    assert!(
        env_seen.contains("KeyError")
            || by_name("reads keys and the environment")
                .stderr_tail
                .contains("KeyError")
    );
    // The flood was cut off at the output limit, keeping only a tail.
    let flood = by_name("prints 1 GB");
    assert!(flood.stdout_bytes >= limits.output_bytes && flood.stdout_bytes < 1 << 30);
    assert!(flood.stdout_tail.len() <= 2048);
    // No connection reached the host, nothing was written on it.
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "a sandboxed program reached the host"
    );
    assert!(
        !planted.exists() && !repo_file.exists() && !std::path::Path::new("/usr/evil").exists()
    );
    // Each runaway was stopped at its limit, two at a time: far less than run one by one
    // to their own ends.
    assert!(elapsed < 40.0, "the batch took {elapsed} s");
    // Every process a program started is gone.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mut ps = String::new();
    std::process::Command::new("ps")
        .args(["-eo", "uid,pid,args"])
        .output()
        .map(|o| o.stdout.as_slice().read_to_string(&mut ps))
        .ok();
    let strays: Vec<&str> = ps
        .lines()
        .filter(|l| l.contains("/sandbox/main.py"))
        .collect();
    assert!(strays.is_empty(), "processes left behind: {strays:?}");
}

#[test]
fn no_bubblewrap_is_a_clear_error_and_none_runs_unisolated() {
    // The library says what to install and how to opt out.
    let err = {
        // A child process, so this test's environment stays untouched.
        let (code, _, stderr) = common::output(
            common::assay()
                .env("ASSAY_BWRAP", "/nonexistent/bwrap")
                .args(["run", "--task", "humaneval", "--limit", "1"])
                .arg("--model")
                .arg(format!("dir:{}", common::smollm2_gguf().display()))
                .arg("--data-root")
                .arg(common::data_root())
                .arg("--reports")
                .arg(tempfile::tempdir().unwrap().path()),
        );
        assert_eq!(code, 2, "{stderr}");
        stderr
    };
    assert!(err.contains("bubblewrap"), "{err}");
    assert!(err.contains("--sandbox none"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // Without isolation the limits still hold.
    let none = Sandbox::new(
        "none",
        None,
        Limits {
            timeout_seconds: 3.0,
            cpu_seconds: 1,
            ..Limits::default()
        },
    )
    .unwrap();
    let results = none.run_all(
        &[
            program("print('hi')\n"),
            program("while True:\n    pass\n"),
            program("assert False, 'no'\n"),
        ],
        2,
    );
    assert_eq!(results[0].reason, Reason::Passed);
    assert_eq!(results[0].stdout_tail, "hi\n");
    assert_eq!(results[1].reason, Reason::CpuLimit);
    assert_eq!(results[2].reason, Reason::AssertionFailed);
    assert!(Sandbox::new("docker", None, Limits::default()).is_err());
}
