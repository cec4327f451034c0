//! The `socketscience` command, run as a real process.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};
use socketscience::wire::{self, LineMode};

/// Runs the command with `args`, feeding `stdin` (closed at once when `None`).
fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_socketscience"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the socketscience binary starts");
    let mut pipe = child.stdin.take().expect("stdin is piped");
    if let Some(input) = stdin {
        pipe.write_all(input.as_bytes()).expect("write stdin");
    }
    drop(pipe);
    child.wait_with_output().expect("the command ends")
}

fn stdout(output: &Output) -> &str {
    std::str::from_utf8(&output.stdout).expect("stdout is UTF-8")
}

fn stderr(output: &Output) -> &str {
    std::str::from_utf8(&output.stderr).expect("stderr is UTF-8")
}

/// What `decode` printed: envelopes (pretty JSON) and `not a frame` lines.
#[derive(Debug, PartialEq)]
enum Item {
    Envelope(Value),
    NotAFrame(String),
}

fn items(output: &Output) -> Vec<Item> {
    let mut rest = stdout(output);
    let mut items = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return items;
        }
        if let Some(line) = rest.strip_prefix("not a frame: ") {
            let (reason, after) = line.split_once('\n').unwrap_or((line, ""));
            items.push(Item::NotAFrame(reason.to_owned()));
            rest = after;
        } else {
            let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
            let value = stream
                .next()
                .expect("a JSON value")
                .unwrap_or_else(|e| panic!("not JSON ({e}): {rest:?}"));
            items.push(Item::Envelope(value));
            rest = &rest[stream.byte_offset()..];
        }
    }
}

/// A frame around `body`, made with the library's own pieces.
fn frame_of(body: &[u8], lines: LineMode) -> String {
    let mut b64 = String::new();
    wire::encode_base64(body, &mut b64);
    let mut frame = String::new();
    wire::write_frame(&mut frame, lines, 1234, &b64);
    frame
}

const JSON_BODY: &[u8] =
    br#"{"ping":{"location":"Henders/EC2","timestamp":1.5},"_from":"Henders/EC2","_sid":77,"_seq":3}"#;

fn json_body_decoded() -> Value {
    json!({
        "codec": "json",
        "from": "Henders/EC2",
        "session": 77,
        "seq": 3,
        "messages": {"ping": {"location": "Henders/EC2", "timestamp": 1.5}},
    })
}

#[test]
fn decodes_a_frame_from_stdin_as_echo_writes_it() {
    let frame = frame_of(JSON_BODY, LineMode::Multi);
    assert!(frame.starts_with(".\n\u{2}1234"));
    let output = run(&["decode"], Some(&format!("{frame}\n")));
    assert!(output.status.success(), "{output:?}");
    assert_eq!(items(&output), [Item::Envelope(json_body_decoded())]);
    // Fields come in a fixed order.
    let text = stdout(&output);
    let at = |key: &str| text.find(&format!("\"{key}\"")).unwrap();
    assert!(at("codec") < at("from") && at("from") < at("session"));
    assert!(at("session") < at("seq") && at("seq") < at("messages"));
}

#[test]
fn decodes_frames_given_as_arguments_in_both_forms_and_codecs() {
    // What Python's msgpack.dumps({"ping": 1}) writes: no metadata.
    let msgpack = frame_of(b"\x81\xa4ping\x01", LineMode::Single);
    let json = frame_of(JSON_BODY, LineMode::Multi);
    // Chat inserts zero-width spaces into long runs.
    let noisy: String = json
        .chars()
        .enumerate()
        .flat_map(|(i, c)| (i % 5 == 4).then_some('\u{200B}').into_iter().chain([c]))
        .collect();
    let output = run(&["decode", &msgpack, &noisy], None);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        items(&output),
        [
            Item::Envelope(json!({
                "codec": "msgpack", "from": null, "session": null, "seq": null,
                "messages": {"ping": 1},
            })),
            Item::Envelope(json_body_decoded()),
        ]
    );
}

#[test]
fn text_that_is_not_a_frame_is_one_line_each_and_fails_when_nothing_decodes() {
    let output = run(
        &["decode"],
        Some("hello room\n\n.\n\u{2}1234eyJwaW5nIjoxfQ==\n\u{2}12\u{3}\n"),
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let got = items(&output);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(
        matches!(&got[0], Item::NotAFrame(reason) if reason.starts_with("it does not start with")),
        "{got:?}"
    );
    assert_eq!(
        got[1],
        Item::NotAFrame("malformed frame: it does not end with \\x03".into())
    );
    assert_eq!(
        got[2],
        Item::NotAFrame("malformed frame: it is too short".into())
    );
    assert_eq!(stdout(&output).lines().count(), 3);

    // Among frames, human text is reported and the exit status is 0.
    let frame = frame_of(JSON_BODY, LineMode::Multi);
    let output = run(&["decode"], Some(&format!("hi\n{frame}\nbye\n")));
    assert!(output.status.success(), "{output:?}");
    assert!(matches!(
        items(&output).as_slice(),
        [Item::NotAFrame(_), Item::Envelope(v), Item::NotAFrame(_)] if *v == json_body_decoded()
    ));

    // A frame whose body is not a map is reported, not decoded.
    let bad = frame_of(b"[1,2]", LineMode::Multi);
    let output = run(&["decode", &bad], None);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        matches!(items(&output).as_slice(), [Item::NotAFrame(r)] if r.contains("msgpack")),
        "{output:?}"
    );
}

#[test]
fn json_escaped_frames_on_stdin_are_read() {
    let frame = frame_of(JSON_BODY, LineMode::Multi);
    let escaped = serde_json::to_string(&frame).unwrap();
    assert!(escaped.starts_with("\".\\n\\u0002"));
    let output = run(&["decode"], Some(&format!("{escaped}\n")));
    assert!(output.status.success(), "{output:?}");
    assert_eq!(items(&output), [Item::Envelope(json_body_decoded())]);
}

fn payload() -> Value {
    json!({
        "ping": {"location": "Henders/EC2", "timestamp": 1.5, "tags": ["a", "ü", null, true]},
        "metasmoke_state": "down",
        "big": 18446744073709551615u64,
        "negative": -5,
    })
}

fn round_trip(encode_args: &[&str], payload: &Value) -> Value {
    let mut args = vec!["encode"];
    args.extend_from_slice(encode_args);
    let encoded = run(&args, Some(&payload.to_string()));
    assert!(encoded.status.success(), "{encoded:?}");
    assert!(stderr(&encoded).is_empty(), "{encoded:?}");
    let decoded = run(&["decode"], Some(stdout(&encoded)));
    assert!(decoded.status.success(), "{decoded:?}");
    match items(&decoded).as_slice() {
        [Item::Envelope(envelope)] => envelope.clone(),
        other => panic!("expected one envelope, got {other:?}"),
    }
}

#[test]
fn encode_then_decode_gives_the_messages_back_in_both_codecs() {
    for (args, codec) in [
        (&[][..], "json"),
        (&["--codec", "json"][..], "json"),
        (&["--codec", "msgpack"][..], "msgpack"),
        (&["--codec", "msgpack", "--single-line"][..], "msgpack"),
        (&["--single-line", "--digits", "9999"][..], "json"),
    ] {
        let envelope = round_trip(args, &payload());
        assert_eq!(envelope["codec"], codec, "{args:?}");
        assert_eq!(envelope["messages"], payload(), "{args:?}");
        assert_eq!(envelope["from"], Value::Null);
    }
}

#[test]
fn reserved_keys_written_by_hand_become_metadata() {
    let mut with_meta = payload();
    with_meta["_from"] = json!("by hand");
    with_meta["_sid"] = json!(1);
    with_meta["_seq"] = json!(2);
    for codec in ["json", "msgpack"] {
        let envelope = round_trip(&["--codec", codec], &with_meta);
        assert_eq!(envelope["from"], "by hand");
        assert_eq!(
            (&envelope["session"], &envelope["seq"]),
            (&json!(1), &json!(2))
        );
        assert_eq!(envelope["messages"], payload());
    }
}

/// The chat messages in `encode` output: each line, except that a line "."
/// and the next are one message.
fn chat_messages(text: &str) -> Vec<String> {
    let mut messages = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        match line {
            "." => messages.push(format!(".\n{}", lines.next().expect("a line after \".\""))),
            _ => messages.push(line.to_owned()),
        }
    }
    messages
}

#[test]
fn batches_written_by_hand_show_each_envelope() {
    let batch = json!({"_sid": 1, "_seq": 5, "_batch": [{"a": 1}, {"a": 2, "b": 3}]});
    let envelope = round_trip(&[], &batch);
    assert_eq!(
        envelope,
        json!({
            "codec": "json", "from": null, "session": 1, "seq": 5, "count": 2,
            "messages": {"a": 2, "b": 3},
            "batch": [{"a": 1}, {"a": 2, "b": 3}],
        })
    );
    let merged = json!({"_seq": 5, "_count": 3, "a": 1, "b": 2});
    let envelope = round_trip(&["--codec", "msgpack"], &merged);
    assert_eq!(
        envelope,
        json!({
            "codec": "msgpack", "from": null, "session": null, "seq": 5, "count": 3,
            "messages": {"a": 1, "b": 2},
        })
    );
}

#[test]
fn long_frames_travel_as_chunks_and_are_reassembled() {
    let payload = json!({"report": "x".repeat(400)});
    for single_line in [false, true] {
        let mut args = vec!["encode", "--max-len", "80", "--codec", "msgpack"];
        if single_line {
            args.push("--single-line");
        }
        let encoded = run(&args, Some(&payload.to_string()));
        assert!(encoded.status.success(), "{encoded:?}");
        let chunks = chat_messages(stdout(&encoded));
        assert!(chunks.len() > 5, "{chunks:?}");
        for chunk in &chunks {
            assert!(chunk.len() <= 80, "{chunk:?}");
            assert_eq!(chunk.starts_with(wire::CHUNK_START), !single_line);
            assert!(matches!(
                wire::parse_chat_text(chunk),
                Ok(wire::ChatText::Chunk(_))
            ));
        }

        // Reassembled even when the chunks come in reverse order.
        let reversed: Vec<&str> = chunks.iter().rev().map(String::as_str).collect();
        let decoded = run(&["decode"], Some(&reversed.join("\n")));
        assert!(decoded.status.success(), "{decoded:?}");
        match items(&decoded).as_slice() {
            [Item::Envelope(envelope)] => assert_eq!(envelope["messages"], payload),
            other => panic!("expected one envelope, got {other:?}"),
        }

        // A missing piece is reported at the end.
        let decoded = run(&["decode"], Some(&chunks[1..].join("\n")));
        assert_eq!(decoded.status.code(), Some(1), "{decoded:?}");
        assert!(
            matches!(items(&decoded).as_slice(), [Item::NotAFrame(r)] if r.contains(": 1 of")),
            "{decoded:?}"
        );
    }
}

#[test]
fn encode_prints_the_frame_exactly() {
    let expected = ".\n\u{2}0042eyJtZXRhc21va2Vfc3RhdGUiOiJkb3duIn0=\u{3}\n";
    let output = run(
        &[
            "encode",
            "--digits",
            "0042",
            r#"{"metasmoke_state": "down"}"#,
        ],
        None,
    );
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout(&output), expected);
    let output = run(
        &["encode", "--digits", "42", "--single-line"],
        Some(r#"{"metasmoke_state":"down"}"#),
    );
    assert_eq!(stdout(&output), &expected[2..]);
    // Python's msgpack.dumps({"metasmoke_state": "down"}).
    let output = run(
        &["encode", "--codec", "msgpack", "--digits", "7"],
        Some(r#"{"metasmoke_state":"down"}"#),
    );
    assert_eq!(
        stdout(&output),
        format!(
            "{}\n",
            frame_of(b"\x81\xafmetasmoke_state\xa4down", LineMode::Multi).replace("1234", "0007")
        )
    );
}

#[test]
fn encode_errors_are_one_line_on_stderr_with_status_2() {
    for (args, stdin, says) in [
        (&["encode", "[1, 2]"][..], None, "not an array"),
        (&["encode"][..], Some("\"ping\""), "not a string"),
        (&["encode"][..], Some("{\"ping\": "), "not JSON"),
        (
            &["encode", "--max-len", "10", "{\"a\": 1}"][..],
            None,
            "too small",
        ),
    ] {
        let output = run(args, stdin);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        assert!(output.stdout.is_empty(), "{output:?}");
        let err = stderr(&output);
        assert_eq!(err.lines().count(), 1, "{err:?}");
        assert!(err.contains(says), "{err:?} lacks {says:?}");
    }
    // Digits out of range are a usage error.
    let output = run(&["encode", "--digits", "10000", "{}"], None);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}

#[test]
fn help_of_every_verb_shows_an_example() {
    for args in [
        &["--help"][..],
        &["decode", "--help"][..],
        &["encode", "--help"][..],
        &["help", "decode"][..],
    ] {
        let output = run(args, None);
        assert!(output.status.success(), "{args:?}: {output:?}");
        assert!(stdout(&output).contains("Example"), "{args:?}");
    }
    let output = run(&["decode", "--help"], None);
    assert!(stdout(&output).contains("Exit status"));
}

#[test]
fn the_decode_help_example_works() {
    // `socketscience decode "$(printf '.\n\0020042eyJwaW5nIjoxfQ==\003')"`
    let output = run(&["decode", ".\n\u{2}0042eyJwaW5nIjoxfQ==\u{3}"], None);
    assert!(output.status.success(), "{output:?}");
    match items(&output).as_slice() {
        [Item::Envelope(envelope)] => assert_eq!(envelope["messages"], json!({"ping": 1})),
        other => panic!("expected one envelope, got {other:?}"),
    }
}

#[test]
fn encode_keeps_the_key_order_of_its_input_as_python_does() {
    // Python: msgpack.dumps({"zeta": {"b": 1, "a": [{"y": None, "x": 2.5}]}, "alpha": "first?"})
    let input = r#"{"zeta": {"b": 1, "a": [{"y": null, "x": 2.5}]}, "alpha": "first?"}"#;
    let output = run(
        &["encode", "--codec", "msgpack", "--digits", "1234"],
        Some(input),
    );
    assert!(output.status.success(), "{output:?}");
    let mut body = b"\x82\xa4zeta\x82\xa1b\x01\xa1a\x91\x82\xa1y\xc0\xa1x".to_vec();
    body.extend(b"\xcb\x40\x04\0\0\0\0\0\0\xa5alpha\xa6first?");
    assert_eq!(
        stdout(&output),
        format!("{}\n", frame_of(&body, LineMode::Multi))
    );
    // And decode shows them in that order too.
    let decoded = run(&["decode"], Some(stdout(&output)));
    let text = stdout(&decoded);
    let at = |key: &str| text.find(&format!("\"{key}\"")).unwrap();
    assert!(at("zeta") < at("b") && at("b") < at("a") && at("a") < at("y"));
    assert!(at("y") < at("x") && at("x") < at("alpha"), "{text}");
}

#[test]
fn decode_shows_bytes_and_prints_floats_as_python_json_does() {
    // {"ping": 1, "sig": b"\x00\xff", "n": NaN, "i": inf, "m": -inf, "big": 1e16}
    let mut body = b"\x86\xa4ping\x01\xa3sig\xc4\x02\x00\xff".to_vec();
    body.extend(b"\xa1n\xcb\x7f\xf8\0\0\0\0\0\0");
    body.extend(b"\xa1i\xcb\x7f\xf0\0\0\0\0\0\0");
    body.extend(b"\xa1m\xcb\xff\xf0\0\0\0\0\0\0");
    body.extend(b"\xa3big\xcb\x43\x41\xc3\x79\x37\xe0\x80\x00");
    let output = run(&["decode", &frame_of(&body, LineMode::Multi)], None);
    assert!(output.status.success(), "{output:?}");
    // What Python's json.dumps(.., indent=2) writes for these messages.
    let expected = r#"  "messages": {
    "ping": 1,
    "sig": {
      "$bin": "00ff"
    },
    "n": NaN,
    "i": Infinity,
    "m": -Infinity,
    "big": 1e+16
  }
}"#;
    assert!(stdout(&output).contains(expected), "{}", stdout(&output));
}

#[test]
fn watch_takes_exactly_one_chat_and_only_its_options() {
    let usage_error = |args: &[&str], says: &str| {
        let output = run(
            &[&["watch", "--trust", "smokey-*"][..], args].concat(),
            None,
        );
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        assert!(
            stderr(&output).contains(says),
            "{args:?}: {says:?} missing from {}",
            stderr(&output)
        );
    };
    let required = "<--irc <HOST:PORT>|--matrix <URL>|--stackexchange <HOST>>";
    usage_error(&[], required);
    usage_error(&["--channel", "#smokey"], required);
    usage_error(
        &["--irc", "h:1", "--channel", "#c", "--matrix", "http://h"],
        "cannot be used with",
    );
    usage_error(
        &[
            "--matrix",
            "http://h",
            "--room",
            "1",
            "--stackexchange",
            "h",
        ],
        "cannot be used with",
    );
    usage_error(&["--irc", "h:1"], "--channel <#NAME>");
    usage_error(&["--matrix", "http://h"], "--room <ROOM>");
    usage_error(&["--stackexchange", "stackexchange.com"], "--room <ROOM>");
    // Each chat's own options only with it.
    for (chat, foreign) in [
        (
            &["--irc", "h:1", "--channel", "#c"][..],
            &["--room", "1"][..],
        ),
        (
            &["--irc", "h:1", "--channel", "#c"][..],
            &["--user", "u"][..],
        ),
        (
            &["--irc", "h:1", "--channel", "#c"][..],
            &["--email", "e"][..],
        ),
        (
            &["--matrix", "http://h", "--room", "r"][..],
            &["--channel", "#c"][..],
        ),
        (
            &["--matrix", "http://h", "--room", "r"][..],
            &["--nick", "n"][..],
        ),
        (&["--matrix", "http://h", "--room", "r"][..], &["--tls"][..]),
        (
            &["--matrix", "http://h", "--room", "r"][..],
            &["--cookie-file", "f"][..],
        ),
        (
            &["--stackexchange", "h", "--room", "1"][..],
            &["--tls-ca", "f"][..],
        ),
        (
            &["--stackexchange", "h", "--room", "1"][..],
            &["--user", "u"][..],
        ),
    ] {
        usage_error(&[chat, foreign].concat(), "cannot be used with");
    }
    let output = run(&["watch", "--help"], None);
    for flag in [
        "--irc",
        "--matrix",
        "--stackexchange",
        "SOCKETSCIENCE_MATRIX_PASSWORD",
    ] {
        assert!(stdout(&output).contains(flag), "{flag}");
    }
}
