//! The runtime crate's parts depend on each other one way: each top-level
//! module of `socketscience/src` imports only the modules below it in
//! [`LAYERS`] (README, "Contributing"). Read from the source: a `crate::`
//! path in code (not in comments) names what a file imports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The top-level modules, lowest first: each may import only those before it.
const LAYERS: &[&str] = &[
    "clock",
    "rate",
    "sync",
    "stats",
    "repair",
    "wire",
    "error",
    "security",
    "message",
    "failover",
    "presence",
    "shared",
    "send",
    "transport",
    "receive",
    "node",
    "harness",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("socketscience/src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("socketscience/src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`None`: `lib.rs`, the top).
fn module_of(file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src()).expect("a file under src");
    let first = relative.components().next()?.as_os_str().to_str()?;
    match first.strip_suffix(".rs") {
        Some("lib") => None,
        Some(name) => Some(name.to_owned()),
        None => Some(first.to_owned()),
    }
}

/// The names `crate::name` in the code of `text` (comments left out).
fn imports(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            // `$crate::` in a macro is the crate seen from outside.
            if !rest[..at].ends_with('$') {
                names.insert(name);
            }
            rest = after;
        }
    }
    names
}

#[test]
fn every_module_imports_only_the_modules_below_it() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.sort();
    let mut seen = BTreeSet::new();
    let mut upward = Vec::new();
    for file in &files {
        let Some(module) = module_of(file) else {
            continue;
        };
        seen.insert(module.clone());
        let Some(level) = LAYERS.iter().position(|m| *m == module) else {
            panic!(
                "{}: module `{module}` is in no layer: add it to LAYERS",
                file.display()
            );
        };
        let text = std::fs::read_to_string(file).expect("a readable source file");
        for name in imports(&text) {
            if name == module {
                continue;
            }
            let allowed = LAYERS[..level].contains(&name.as_str());
            if !allowed {
                upward.push(format!(
                    "{}: `{module}` imports `crate::{name}`",
                    file.display()
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that do not run downward (see LAYERS):\n{}",
        upward.join("\n")
    );
    // Every layer is a module that exists (the list stays true).
    for module in LAYERS {
        assert!(
            seen.contains(*module),
            "LAYERS names `{module}`, which is not a module"
        );
    }
}

#[test]
fn the_reader_sees_an_upward_import() {
    // The check above can fail: an import in code counts, one in a comment
    // or a doc link does not.
    let text = "use crate::node::Node;\n/// See [`Node`](crate::receive::Dispatcher).\n";
    assert_eq!(imports(text), BTreeSet::from(["node".to_owned()]));
    assert!(imports("macro_rules! m { () => { $crate::wire::x() } }").is_empty());
}
