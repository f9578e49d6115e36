//! The real binary against servers that never stop answering: an endless body, an endless
//! event stream, endless SSE comments, a 10 GB `Content-Length` that never arrives, and a
//! million tiny chunks. Each run must end with a clear error naming the cap and the
//! endpoint, and its peak RSS (the child's rusage from wait4) must stay within 200 MB of
//! the same run against a server that refuses at once.
//!
//! The server is raw TCP so the test controls every byte: framing, lengths, chunk sizes.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

/// What the server does after answering the dimension probe properly.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// `400` with a short error: the baseline run.
    Refuse,
    /// `200`, chunked, and the body never ends.
    EndlessBody,
    /// `503` (worth retrying), and its error body never ends.
    EndlessError,
    /// `200`, `text/event-stream`, text events that never finish.
    EndlessEvents,
    /// `200`, `text/event-stream`, `: keep-alive` comments forever.
    EndlessComments,
    /// `Content-Length: 10737418240`, a few bytes, then nothing.
    HugeLength,
    /// A million one-byte chunks of JSON whitespace, then a body with no vectors (hyper
    /// hands each chunk over on its own, so this is the slow path per byte).
    TinyChunks,
}

impl Mode {
    fn from_path(path: &str) -> Mode {
        // Through a proxy the request line holds the whole URL.
        let path = path
            .split_once("://")
            .map_or(path, |(_, rest)| rest.find('/').map_or("", |i| &rest[i..]));
        let name = path.trim_start_matches('/').split('/').next().unwrap_or("");
        match name {
            "endless-body" => Mode::EndlessBody,
            "endless-error" => Mode::EndlessError,
            "endless-events" => Mode::EndlessEvents,
            "endless-comments" => Mode::EndlessComments,
            "huge-length" => Mode::HugeLength,
            "tiny-chunks" => Mode::TinyChunks,
            _ => Mode::Refuse,
        }
    }
}

fn serve() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = answer(stream);
            });
        }
    });
    port
}

/// Reads one request (head and body) and answers it as its path's mode says; the
/// connection closes after each answer.
fn answer(stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut length = 0usize;
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        if line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let mut out = stream;
    if String::from_utf8_lossy(&body).contains("dimension probe") {
        let json = r#"{"data":[{"index":0,"embedding":[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8]}]}"#;
        return write!(
            out,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{json}",
            json.len()
        );
    }
    let chunked_status = |status: &str, kind: &str| {
        format!("HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n")
    };
    let chunked = |kind: &str| chunked_status("200 OK", kind);
    // One 64 KiB chunk of `piece`s, sent over and over until the client hangs up.
    let endless = |out: &mut TcpStream, piece: &str| -> std::io::Result<()> {
        let payload = piece.repeat(65_536 / piece.len());
        let chunk = format!("{:x}\r\n{payload}\r\n", payload.len());
        loop {
            out.write_all(chunk.as_bytes())?;
        }
    };
    match Mode::from_path(&path) {
        Mode::Refuse => {
            let json = r#"{"error":{"message":"refused","type":"invalid_request_error"}}"#;
            write!(
                out,
                "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{json}",
                json.len()
            )
        }
        Mode::EndlessBody => {
            out.write_all(chunked("application/json").as_bytes())?;
            let head = r#"{"data":[{"embedding":["#;
            write!(out, "{:x}\r\n{head}\r\n", head.len())?;
            endless(&mut out, "0.123456789,")
        }
        Mode::EndlessError => {
            out.write_all(chunked_status("503 Service Unavailable", "text/plain").as_bytes())?;
            endless(&mut out, "overloaded ")
        }
        Mode::EndlessEvents => {
            out.write_all(chunked("text/event-stream").as_bytes())?;
            endless(
                &mut out,
                "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n",
            )
        }
        Mode::EndlessComments => {
            out.write_all(chunked("text/event-stream").as_bytes())?;
            endless(&mut out, ": keep-alive\n")
        }
        Mode::HugeLength => {
            out.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 10737418240\r\n\r\n{\"data\":[",
            )?;
            // Never more: hold the connection until the client leaves.
            std::thread::sleep(Duration::from_secs(30));
            Ok(())
        }
        Mode::TinyChunks => {
            out.write_all(chunked("application/json").as_bytes())?;
            let block = "1\r\n \r\n".repeat(10_000);
            for _ in 0..100 {
                out.write_all(block.as_bytes())?;
            }
            let tail = r#"{"data":[]}"#;
            write!(out, "{:x}\r\n{tail}\r\n0\r\n\r\n", tail.len())
        }
    }
}

/// Runs the binary to its end: exit code, stderr, peak RSS in MB (from wait4's rusage).
fn run_measured(mut cmd: Command) -> (i32, String, f64) {
    let stderr_file = tempfile::NamedTempFile::new().unwrap();
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(stderr_file.reopen().unwrap())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own child, not yet reaped; both pointers are valid for writes.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4");
    // The child is reaped: keep std from waiting on it again.
    std::mem::forget(child.stdin.take());
    std::mem::forget(child);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -libc::WTERMSIG(status)
    };
    let stderr = std::fs::read_to_string(stderr_file.path()).unwrap();
    (code, stderr, usage.ru_maxrss as f64 / 1024.0)
}

fn embed_run(port: u16, mode: &str, extra: &[&str]) -> Command {
    let mut cmd = common::assay();
    let reports = tempfile::tempdir().unwrap().keep();
    cmd.args(["run", "--task", "stsb", "--no-cache", "--timeout", "20"])
        .args(["--max-attempts", "2", "--data-root"])
        .arg(common::data_root())
        .arg("--reports")
        .arg(&reports)
        .arg("--model")
        .arg(format!("openai:http://127.0.0.1:{port}/{mode}/v1#hostile"))
        .args(extra);
    cmd
}

fn chat_run(port: u16, mode: &str) -> Command {
    let mut cmd = common::assay();
    cmd.args(["generate", "--prompt", "hi", "--max-new-tokens", "16"])
        .args(["--timeout", "20", "--max-attempts", "2", "--model"])
        .arg(format!("openai:http://127.0.0.1:{port}/{mode}/v1#hostile"));
    cmd
}

#[test]
fn every_hostile_answer_ends_in_a_clear_error_within_bounded_memory() {
    let port = serve();
    let (code, stderr, baseline) = run_measured(embed_run(port, "refuse", &[]));
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("refused"), "{stderr}");
    let (_, _, chat_baseline) = run_measured(chat_run(port, "refuse"));
    eprintln!("baseline peak RSS: run {baseline:.0} MB, generate {chat_baseline:.0} MB");

    // The same endless body through reqwest (the transport for https, credentials in the
    // URL or a proxy): this server plays the proxy.
    let mut proxied = embed_run(port, "endless-body", &[]);
    proxied.env("http_proxy", format!("http://127.0.0.1:{port}"));
    let cases: [(&str, Command, &str, f64); 7] = [
        (
            "endless body",
            embed_run(port, "endless-body", &[]),
            "the response passed its cap of",
            baseline,
        ),
        (
            "endless body through a proxy",
            proxied,
            "the response passed its cap of",
            baseline,
        ),
        (
            "endless error body (503, retried once)",
            embed_run(port, "endless-error", &[]),
            "HTTP 503 Service Unavailable: overloaded overloaded",
            baseline,
        ),
        (
            "endless event stream",
            chat_run(port, "endless-events"),
            "the event stream passed its cap of 320 events (from max_tokens 16)",
            chat_baseline,
        ),
        (
            "endless SSE comments",
            chat_run(port, "endless-comments"),
            "the response passed its cap of 131072 bytes (from max_tokens 16; --max-response-bytes raises it)",
            chat_baseline,
        ),
        (
            "10 GB Content-Length",
            embed_run(port, "huge-length", &[]),
            "the response announces 10737418240 bytes (Content-Length), over its cap of",
            baseline,
        ),
        (
            "a million one-byte chunks",
            embed_run(port, "tiny-chunks", &[]),
            "the response passed its cap of",
            baseline,
        ),
    ];
    for (name, cmd, expected, base) in cases {
        let started = std::time::Instant::now();
        let (code, stderr, peak) = run_measured(cmd);
        let seconds = started.elapsed().as_secs_f64();
        eprintln!("{name}: exit {code}, peak RSS {peak:.0} MB, {seconds:.1} s");
        assert!(
            code != 0 && !stderr.contains("panicked"),
            "{name}: {stderr}"
        );
        assert!(stderr.contains(expected), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("POST http://127.0.0.1:{port}/")),
            "{name}: the error names the endpoint: {stderr}"
        );
        assert!(
            peak - base < 200.0,
            "{name}: peak RSS {peak:.0} MB is {:.0} MB above the baseline",
            peak - base
        );
        // A cap is not worth retrying: no run waits out its 20 s timeout.
        assert!(seconds < 20.0, "{name}: took {seconds:.1} s");
    }
}
