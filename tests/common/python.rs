//! The Python side of the interop tests: `tests/python/wire.py` (Python
//! SocketScience's encoder and decoder, on the real `msgpack` library) and
//! `tests/python/smokedetector.py` (SmokeDetector's receive path,
//! transcribed). Both run under `python3`; `scripts/test` installs it and
//! `msgpack`. A missing `python3` or `msgpack` fails the test.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;

/// `python3 tests/python/<script> <command>`, its stdin and stdout piped.
fn python(script: &str, command: &str) -> Command {
    let mut python = Command::new("python3");
    python
        .arg(format!(
            "{}/tests/python/{script}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(command)
        .env("PYTHONIOENCODING", "utf-8")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    python
}

/// Starts `python`; panics (the test fails) when python3 is missing.
fn spawn(python: &mut Command) -> Child {
    python.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot run python3 ({e}): the interop tests need python3 and its msgpack \
             library (scripts/test installs them)"
        )
    })
}

/// Runs `tests/python/wire.py <command>` with `input` on stdin; its output
/// lines. Panics (the test fails) when python3 or msgpack is missing.
pub fn wire(command: &str, input: &str) -> Vec<String> {
    let mut child = spawn(python("wire.py", command).stderr(Stdio::piped()));
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(input.as_bytes()).expect("write to wire.py");
    drop(stdin);
    let out = child.wait_with_output().expect("wait for wire.py");
    assert!(
        out.status.success(),
        "wire.py {command} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("wire.py prints UTF-8")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// One `smokedetector.py serve` process for the whole test binary, fed one
/// JSON request per line (tests share it, one request at a time).
struct SmokeDetector {
    _child: std::process::Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

static SMOKEDETECTOR: Mutex<Option<SmokeDetector>> = Mutex::new(None);

/// Sends `request` to the transcription of SmokeDetector; its answer (the
/// `ok` of its reply; a reply without one fails the test).
pub fn smokedetector(request: &serde_json::Value) -> serde_json::Value {
    let mut server = SMOKEDETECTOR.lock().unwrap_or_else(|e| e.into_inner());
    let server = server.get_or_insert_with(|| {
        let mut child = spawn(&mut python("smokedetector.py", "serve"));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        SmokeDetector {
            _child: child,
            stdin,
            stdout,
        }
    });
    writeln!(server.stdin, "{request}").expect("write to smokedetector.py");
    server.stdin.flush().expect("flush to smokedetector.py");
    let mut line = String::new();
    server
        .stdout
        .read_line(&mut line)
        .expect("read from smokedetector.py");
    let answer: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| {
        panic!("smokedetector.py answered {line:?}: {e} (is msgpack installed?)")
    });
    match answer.get("ok") {
        Some(ok) => ok.clone(),
        None => panic!("smokedetector.py failed: {answer}"),
    }
}
