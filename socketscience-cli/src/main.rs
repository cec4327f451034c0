//! `socketscience`: read and write socketscience frames by hand.
//!
//! `socketscience decode` turns chat messages (frames and chunks, as
//! socketscience and Python SocketScience post them) into JSON;
//! `socketscience encode` turns a JSON object of kinds to values into a frame.
//! Install it with `cargo install socketscience-cli`; from a checkout,
//! `cargo run -p socketscience-cli -- decode ...`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{self, Read as _, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod watch;
use socketscience::wire::{self, ChatText, Codec, Decoded, LineMode, Value, WireError};

const ABOUT: &str = "Read and write socketscience frames: the chat messages through which \
the instances of a bot talk to each other";

const EXAMPLES: &str = "\
Examples:
  socketscience encode '{\"ping\": {\"location\": \"Henders/EC2\", \"timestamp\": 1.5}}'
  socketscience encode --codec msgpack '{\"metasmoke_state\": \"down\"}' | socketscience decode";

const DECODE_ABOUT: &str = "\
Decode chat messages: print each envelope they carry as JSON.

Each TEXT argument is one chat message. Without arguments the messages are read from stdin, \
one per line, except that a line \".\" followed by a line starting with \\x02 (a frame) or \\x01 \
(a chunk) is one message: a frame's own newline. So the output of `socketscience encode` can be \
piped in as is. A line that is a JSON string literal (starting with '\"') is unescaped first, so \
frames copied from a chat's JSON or from a log work too. Blank lines are skipped.

Zero-width characters (U+200B, U+200C) that chat inserts are removed. Chunks are reassembled: the \
envelope is printed when its last piece arrives.

For each envelope, prints a JSON object: {\"codec\": \"json\" | \"msgpack\", \"from\", \"session\", \
\"seq\", \"messages\": {kind: value, ...}} (metadata absent from the body is null). A body that \
holds several envelopes also shows \"count\", and for a JSON batch \"batch\": each envelope's \
messages in order (\"messages\" then lists them all, so a kind may repeat). Every value is shown, \
in the body's key order, as Python's json.dumps(.., indent=2) writes what msgpack.loads gives: \
floats as Python's repr (1e+16), NaN and infinities as NaN, Infinity and -Infinity (which \
Python's json.loads reads back, unlike strict JSON parsers), bytes as {\"$bin\": \"<hex>\"}, and \
map keys that are not strings as strings (7 as \"7\"). For each message \
that is not a readable frame or chunk, prints one line `not a frame: <reason>`; for chunks still \
missing pieces at the end, one line `not a frame: ... pieces missing`.

Exit status: 0 if at least one envelope was decoded, 1 if none was, 2 on a usage or I/O error.";

const DECODE_EXAMPLES: &str = "\
Examples:
  socketscience encode '{\"ping\": 1}' | socketscience decode
  socketscience decode \"$(printf '.\\n\\0020042eyJwaW5nIjoxfQ==\\003')\"
  socketscience decode < room-transcript.txt";

const ENCODE_ABOUT: &str = "\
Encode a JSON object of message kinds to values as one frame, and print it followed by a newline.

The object is read from the JSON argument, or from stdin when there is none. Every key is written \
as given, reserved ones included (\"_from\", \"_sid\", \"_seq\"), so that envelopes can be made by \
hand for testing, and in the order given at every level. MessagePack is written as Python's \
msgpack.dumps writes the same dict, byte for byte.

With --max-len, a frame longer than that many bytes is printed as chunks instead, one after the \
other, each followed by a newline; `socketscience decode` reassembles them.

Exit status: 0 on success; 2 when the input is not a JSON object or on a usage or I/O error (one \
line on stderr).";

const ENCODE_EXAMPLES: &str = "\
Examples:
  socketscience encode '{\"ping\": {\"location\": \"Henders/EC2\", \"timestamp\": 1.5}}'
  socketscience encode --codec msgpack --digits 0042 '{\"metasmoke_state\": \"down\"}'
  echo '{\"ping\": 1, \"_from\": \"test\"}' | socketscience encode --single-line
  socketscience encode --max-len 100 \"$(cat big.json)\" | socketscience decode";

#[derive(Debug, Parser)]
#[command(name = "socketscience", version, about = ABOUT, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decode chat messages: print each envelope they carry as JSON.
    #[command(long_about = DECODE_ABOUT, after_help = DECODE_EXAMPLES)]
    Decode {
        /// Chat messages, one per argument; read from stdin when none is given.
        #[arg(value_name = "TEXT")]
        texts: Vec<OsString>,
    },
    /// Encode a JSON object of message kinds to values as a frame.
    #[command(long_about = ENCODE_ABOUT, after_help = ENCODE_EXAMPLES)]
    Encode {
        /// How the body is serialised.
        #[arg(long, value_enum, default_value_t = CodecArg::Json)]
        codec: CodecArg,
        /// Write the single-line form (starting at \x02), as on IRC.
        #[arg(long)]
        single_line: bool,
        /// The frame's four digits, 0 to 9999 [default: random].
        #[arg(long, value_name = "NNNN", value_parser = clap::value_parser!(u16).range(0..=9999))]
        digits: Option<u16>,
        /// Print chunks of at most this many bytes when the frame is longer.
        #[arg(long, value_name = "BYTES")]
        max_len: Option<usize>,
        /// The JSON object; read from stdin when not given.
        json: Option<String>,
    },
    /// Watch a fleet from its room, read-only: instances, roles, traffic, losses.
    #[command(long_about = watch::WATCH_ABOUT, after_help = watch::WATCH_EXAMPLES)]
    Watch(Box<watch::WatchArgs>),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CodecArg {
    /// UTF-8 JSON, the default between Rust instances.
    Json,
    /// MessagePack, as Python SocketScience writes it.
    Msgpack,
}

impl From<CodecArg> for Codec {
    fn from(codec: CodecArg) -> Codec {
        match codec {
            CodecArg::Json => Codec::Json,
            CodecArg::Msgpack => Codec::MessagePack,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Decode { texts } => decode(texts),
        Command::Encode {
            codec,
            single_line,
            digits,
            max_len,
            json,
        } => encode(codec.into(), single_line, digits, max_len, json),
        Command::Watch(args) => watch::watch(*args).map_err(Failure::Input),
    };
    match result {
        Ok(code) => code,
        // The reader went away (`| head`): nothing more to say.
        Err(Failure::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("socketscience: {e}");
            ExitCode::from(2)
        }
    }
}

/// Why a command stopped: one line on stderr, exit status 2.
#[derive(Debug)]
enum Failure {
    Io(io::Error),
    Input(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Io(e) => write!(f, "{e}"),
            Failure::Input(reason) => f.write_str(reason),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Io(e)
    }
}

fn read_stdin() -> io::Result<Vec<u8>> {
    let mut input = Vec::new();
    io::stdin().lock().read_to_end(&mut input)?;
    Ok(input)
}

fn decode(texts: Vec<OsString>) -> Result<ExitCode, Failure> {
    let messages = if texts.is_empty() {
        split_messages(&String::from_utf8_lossy(&read_stdin()?))
    } else {
        texts
            .iter()
            .map(|text| unescape(&text.to_string_lossy()))
            .collect()
    };
    let mut out = io::stdout().lock();
    let mut decoder = Decoder::default();
    let mut decoded = 0usize;
    for message in &messages {
        match decoder.message(message) {
            Some(Ok(envelope)) => {
                decoded += 1;
                print_envelope(&mut out, &envelope)?;
            }
            Some(Err(reason)) => writeln!(out, "not a frame: {reason}")?,
            None => {}
        }
    }
    for reason in decoder.finish() {
        writeln!(out, "not a frame: {reason}")?;
    }
    out.flush()?;
    Ok(if decoded > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Splits stdin into chat messages (see `DECODE_ABOUT`).
fn split_messages(input: &str) -> Vec<String> {
    let mut messages = Vec::new();
    let mut lines = input.lines().peekable();
    while let Some(line) = lines.next() {
        if wire::clean(line).is_empty() {
            continue;
        }
        if wire::clean(line) == "." {
            if let Some(next) = lines.next_if(|next| starts_frame_or_chunk(next)) {
                messages.push(format!("{line}\n{next}"));
                continue;
            }
        }
        messages.push(unescape(line));
    }
    messages
}

fn starts_frame_or_chunk(line: &str) -> bool {
    let line = line.trim_start_matches(|c: char| c.is_whitespace() || is_zero_width(c));
    line.starts_with(wire::FRAME_START_SINGLE_LINE)
        || line.starts_with(wire::CHUNK_START_SINGLE_LINE)
}

fn is_zero_width(c: char) -> bool {
    matches!(c, '\u{200B}' | '\u{200C}')
}

/// A JSON string literal is read as the text it stands for.
fn unescape(text: &str) -> String {
    let trimmed = text.trim();
    if trimmed.starts_with('"') {
        if let Ok(unescaped) = serde_json::from_str::<String>(trimmed) {
            return unescaped;
        }
    }
    text.to_owned()
}

/// Prints an envelope (see `DECODE_ABOUT`) as Python's
/// `json.dumps(.., indent=2)` would, fields in this order.
fn print_envelope(out: &mut impl Write, envelope: &Decoded) -> Result<(), Failure> {
    let text = |s: &str| Value::String(s.to_owned());
    let number = |n: Option<u64>| n.map_or(Value::Null, |n| Value::Int(n.into()));
    let map = |messages: &Vec<(String, Value)>| {
        Value::Map(
            messages
                .iter()
                .map(|(kind, value)| (text(kind), value.clone()))
                .collect(),
        )
    };
    let mut fields = vec![
        (text("codec"), text(&envelope.codec.to_string())),
        (
            text("from"),
            envelope.from.as_deref().map_or(Value::Null, text),
        ),
        (text("session"), number(envelope.session)),
        (text("seq"), number(envelope.seq)),
    ];
    if envelope.count.is_some() {
        fields.push((text("count"), number(envelope.count)));
    }
    fields.push((text("messages"), map(&envelope.messages)));
    if let Some(batch) = &envelope.batch {
        fields.push((text("batch"), Value::Array(batch.iter().map(map).collect())));
    }
    writeln!(out, "{:#}", Value::Map(fields))?;
    Ok(())
}

/// Reads chat messages one by one, reassembling chunks.
#[derive(Default)]
struct Decoder {
    /// Chunks waiting for their other pieces, by id.
    partials: HashMap<u32, Partial>,
    /// Ids in the order their first chunk came, for the final report.
    order: Vec<u32>,
    buf: Vec<u8>,
}

struct Partial {
    total: u32,
    pieces: HashMap<u32, String>,
}

impl Decoder {
    /// The envelope a message completes, why it is not one, or `None` for a
    /// chunk that waits for more pieces.
    fn message(&mut self, text: &str) -> Option<Result<Decoded, String>> {
        let text = wire::clean(text);
        match wire::parse_chat_text(&text) {
            Ok(ChatText::Frame { body }) => Some(self.body(body)),
            Ok(ChatText::Chunk(chunk)) => {
                let partial = self.partials.entry(chunk.id).or_insert_with(|| {
                    self.order.push(chunk.id);
                    Partial {
                        total: chunk.total,
                        pieces: HashMap::new(),
                    }
                });
                if partial.total != chunk.total {
                    return Some(Err(format!(
                        "malformed chunk: it says {} pieces, other chunks of {:08x} say {}",
                        chunk.total, chunk.id, partial.total
                    )));
                }
                // A repeated piece is ignored, as the node does.
                partial
                    .pieces
                    .entry(chunk.index)
                    .or_insert_with(|| chunk.piece.to_owned());
                if partial.pieces.len() < partial.total as usize {
                    return None;
                }
                let partial = self.partials.remove(&chunk.id)?;
                self.order.retain(|&id| id != chunk.id);
                let body: String = (1..=partial.total)
                    .filter_map(|index| partial.pieces.get(&index).map(String::as_str))
                    .collect();
                Some(self.body(&body))
            }
            Err(WireError::NotAFrame) => Some(Err(
                "it does not start with \".\\n\\x02\", \".\\n\\x01\", \"\\x02\" or \"\\x01\""
                    .to_owned(),
            )),
            Err(e) => Some(Err(e.to_string())),
        }
    }

    fn body(&mut self, body_b64: &str) -> Result<Decoded, String> {
        wire::decode_base64(body_b64, &mut self.buf).map_err(|e| e.to_string())?;
        wire::decode_body(&self.buf).map_err(|e| e.to_string())
    }

    /// What is left: one line per chunked frame that misses pieces.
    fn finish(self) -> Vec<String> {
        self.order
            .iter()
            .filter_map(|id| self.partials.get(id).map(|p| (id, p)))
            .map(|(id, partial)| {
                format!(
                    "chunks {id:08x}: {} of {} pieces missing",
                    partial.total as usize - partial.pieces.len(),
                    partial.total
                )
            })
            .collect()
    }
}

fn encode(
    codec: Codec,
    single_line: bool,
    digits: Option<u16>,
    max_len: Option<usize>,
    json: Option<String>,
) -> Result<ExitCode, Failure> {
    let json = match json {
        Some(json) => json,
        None => String::from_utf8(read_stdin()?)
            .map_err(|_| Failure::Input("stdin is not UTF-8".to_owned()))?,
    };
    // Read in order: keys are written in the order given, as Python's
    // msgpack.dumps writes a dict in its insertion order.
    let payload: Value = serde_json::from_str(&json)
        .map_err(|e| Failure::Input(format!("the input is not JSON: {e}")))?;
    if !matches!(payload, Value::Map(_)) {
        return Err(Failure::Input(format!(
            "the input must be a JSON object of message kinds to values, not {}",
            json_type(&payload)
        )));
    }
    let lines = if single_line {
        LineMode::Single
    } else {
        LineMode::Multi
    };
    let digits = digits.unwrap_or_else(|| fastrand::u16(0..10_000));
    let frame = wire::encode_frame(codec, lines, digits, &payload)
        .map_err(|e| Failure::Input(e.to_string()))?;
    let mut out = io::stdout().lock();
    match max_len {
        Some(max_len) if frame.len() > max_len => {
            let Ok(ChatText::Frame { body }) = wire::parse_chat_text(&frame) else {
                return Err(Failure::Input(format!(
                    "cannot read back the frame {frame:?}"
                )));
            };
            let chunks = wire::split_into_chunks(lines, fastrand::u32(..), body, max_len)
                .ok_or_else(|| {
                    Failure::Input(format!("--max-len {max_len} is too small to hold a chunk"))
                })?;
            for chunk in chunks {
                writeln!(out, "{chunk}")?;
            }
        }
        _ => writeln!(out, "{frame}")?,
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Int(_) | Value::Float(_) => "a number",
        Value::String(_) => "a string",
        Value::Bytes(_) => "bytes",
        Value::Array(_) => "an array",
        Value::Map(_) => "an object",
    }
}
