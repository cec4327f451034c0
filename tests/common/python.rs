//! The Python side of the interop tests: `tests/python/wire.py` (Python
//! SocketScience's encoder and decoder, on the real `msgpack` library) and
//! `tests/python/smokedetector.py` (SmokeDetector's receive path,
//! transcribed). Both run under `python3`; `scripts/test` installs it and
//! `msgpack`. A missing `python3` or `msgpack` fails the test.

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;

use socketscience::wire::BodyLimits;

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

// ---------------------------------------------------------------------------
// Frames through Python's SocketScience (tests/python/wire.py)

/// `s` as a JSON string literal, ASCII only.
pub fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c => {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
    out
}

/// `s` as Python's `json.dumps(s, ensure_ascii=False)` writes it.
pub fn python_json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub fn json_strings(texts: &[String]) -> String {
    let items: Vec<String> = texts.iter().map(|t| json_string(t)).collect();
    format!("[{}]", items.join(","))
}

/// Reads a JSON string literal (as wire.py prints frames), through the
/// crate's public body parser.
pub fn parse_json_string(literal: &str) -> String {
    let body = format!("{{\"s\":{literal}}}");
    let parsed = socketscience::wire::parse_body(body.as_bytes(), BodyLimits::default())
        .unwrap_or_else(|e| panic!("not a JSON string: {literal}: {e}"));
    parsed.messages[0]
        .1
        .decode::<String>()
        .unwrap_or_else(|e| panic!("not a JSON string: {literal}: {e}"))
}

/// The frames Python's SocketScience writes for these payload dicts (JSON
/// text) with these four digits.
pub fn python_encode(payloads: &[(&str, u16)]) -> Vec<String> {
    let unsigned: Vec<(&str, u16, Option<&str>)> =
        payloads.iter().map(|&(p, d)| (p, d, None)).collect();
    python_encode_signed(&unsigned)
}

/// Like [`python_encode`], each body signed under its secret if it has one.
pub fn python_encode_signed(payloads: &[(&str, u16, Option<&str>)]) -> Vec<String> {
    let items: Vec<String> = payloads
        .iter()
        .map(|(payload, digits, secret)| match secret {
            Some(secret) => format!(
                "{{\"payload\":{payload},\"digits\":{digits},\"secret\":{}}}",
                json_string(secret)
            ),
            None => format!("{{\"payload\":{payload},\"digits\":{digits}}}"),
        })
        .collect();
    let lines = wire("encode", &format!("[{}]", items.join(",")));
    assert_eq!(lines.len(), payloads.len(), "one frame per payload");
    lines.iter().map(|l| parse_json_string(l)).collect()
}

/// What Python reads from each chat text, as compact JSON with the keys in
/// the order they were written.
pub fn python_decode(texts: &[String]) -> Vec<String> {
    let lines = wire("decode", &json_strings(texts));
    assert_eq!(lines.len(), texts.len(), "one dict per frame");
    lines
}

// ---------------------------------------------------------------------------
// SmokeDetector, transcribed (tests/python/smokedetector.py)

/// What SmokeDetector did with one chat message: the payload `msgpack.loads`
/// gave (compact JSON), the callbacks called (kind and Python `repr` of the
/// value), what `handle` did besides, whether it logged "malformed direct
/// message", and the exception that escaped, if one did.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub payload: Option<String>,
    pub calls: Vec<(String, String)>,
    pub effects: Vec<String>,
    pub malformed: bool,
    pub raised: Option<String>,
    pub error: Option<String>,
}

impl Outcome {
    pub fn from_json(v: &serde_json::Value) -> Outcome {
        let text = |key: &str| v.get(key).and_then(|t| t.as_str()).map(str::to_owned);
        let list = |key: &str| {
            v.get(key)
                .and_then(|l| l.as_array())
                .cloned()
                .unwrap_or_default()
        };
        Outcome {
            payload: text("payload"),
            calls: list("calls")
                .iter()
                .map(|c| {
                    (
                        c[0].as_str().unwrap().to_owned(),
                        c[1].as_str().unwrap().to_owned(),
                    )
                })
                .collect(),
            effects: list("effects")
                .iter()
                .map(|e| e.as_str().unwrap().to_owned())
                .collect(),
            malformed: v
                .get("malformed")
                .and_then(|m| m.as_bool())
                .unwrap_or(false),
            raised: text("raised"),
            error: text("error"),
        }
    }

    /// The outcome in brief: `{"payload":..}`, `{"malformed":true}` or
    /// `{"exception":"TypeName"}`.
    pub fn brief(&self) -> String {
        match (&self.raised, self.malformed, &self.payload) {
            (Some(raised), ..) => format!("{{\"exception\":\"{raised}\"}}"),
            (None, true, _) => r#"{"malformed":true}"#.to_owned(),
            (None, false, payload) => {
                format!("{{\"payload\":{}}}", payload.as_deref().unwrap_or("null"))
            }
        }
    }
}

/// What SmokeDetector does with each chat text posted in its "direct" room
/// (by its own account, or by another one), with recording callbacks for
/// `callbacks`.
pub fn smokedetector_on_msg(
    texts: &[String],
    callbacks: &[&str],
    own_account: bool,
) -> Vec<Outcome> {
    let request = serde_json::json!({
        "on_msg": texts, "callbacks": callbacks, "own_account": own_account,
    });
    outcomes(&request, texts.len())
}

/// SmokeDetector's answer to `request`, `n` outcomes (one per text or
/// payload asked about).
fn outcomes(request: &serde_json::Value, n: usize) -> Vec<Outcome> {
    let answer = smokedetector(request);
    let outcomes: Vec<Outcome> = answer
        .as_array()
        .unwrap_or_else(|| panic!("smokedetector.py answered {answer}, not a list"))
        .iter()
        .map(Outcome::from_json)
        .collect();
    assert_eq!(outcomes.len(), n, "one outcome per text or payload");
    outcomes
}

/// What SmokeDetector does with each of its own `send`s of these payloads
/// (JSON text, read by Python's `json.loads`) when it reads them back.
pub fn smokedetector_send_receive(payloads: &[String], callbacks: &[&str]) -> Vec<Outcome> {
    let request = serde_json::json!({
        "send_receive": payloads, "callbacks": callbacks,
    });
    outcomes(&request, payloads.len())
}

/// What SmokeDetector's receive path does with each chat text of its own
/// account, in brief (see [`Outcome::brief`]).
pub fn smokedetector_receive(texts: &[String]) -> Vec<String> {
    smokedetector_on_msg(texts, &[], true)
        .iter()
        .map(Outcome::brief)
        .collect()
}
