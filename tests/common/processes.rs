//! Example programs run as OS processes by the multi-process tests
//! (irc_fleet, irc_repair, irc_failover).

use std::io::{BufRead as _, BufReader, Read};
use std::path::PathBuf;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The example `name` built beside this test binary (`cargo test` builds
/// the examples before it runs the tests).
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in target/<profile>/deps");
    let binary = profile_dir.join("examples").join(name);
    assert!(
        binary.is_file(),
        "{} is missing: `cargo test` builds the examples before running tests; \
         with a target filter, add `--example {name}`",
        binary.display()
    );
    binary
}

/// A child's standard output and error, collected line by line by one
/// thread each.
pub struct Output {
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
    pub readers: Vec<JoinHandle<()>>,
}

/// Starts collecting `child`'s piped standard output and error.
pub fn collect_output(child: &mut Child) -> Output {
    let mut readers = Vec::new();
    let mut collect = |stream: Box<dyn Read + Send>| {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        }));
        lines
    };
    let stdout = collect(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = collect(Box::new(child.stderr.take().expect("piped stderr")));
    Output {
        stdout,
        stderr,
        readers,
    }
}
