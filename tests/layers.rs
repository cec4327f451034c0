//! The runtime crate's parts depend on each other one way: each top-level
//! module of `socketscience/src` imports only the modules below it in
//! [`LAYERS`] (ARCHITECTURE.md, "Layers of the runtime"). Read from the
//! source: a `crate::` path in code (not in comments) names what a file
//! imports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The top-level modules, lowest first: each may import only those before it.
const LAYERS: &[&str] = &[
    "clock",
    "rate",
    "sync",
    "stats",
    "wire",
    "error",
    "security",
    "message",
    "failover",
    "presence",
    "shared",
    "core",
    "repair",
    "send",
    "receive",
    "transport",
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

/// The layers ARCHITECTURE.md describes, in its order: its `### ` headings
/// under "Layers of the runtime", each a file (`clock.rs`) or a folder
/// (`wire/`) in backticks.
fn documented_layers(text: &str) -> Vec<String> {
    let section = text
        .split("\n## Layers of the runtime\n")
        .nth(1)
        .expect("ARCHITECTURE.md has a section \"Layers of the runtime\"");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter_map(|line| line.strip_prefix("### `")?.strip_suffix('`'))
        .map(|name| {
            name.trim_end_matches(".rs")
                .trim_end_matches('/')
                .to_owned()
        })
        .collect()
}

#[test]
fn architecture_md_describes_the_layers_in_order() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md");
    let text = std::fs::read_to_string(&path).expect("ARCHITECTURE.md is readable");
    let documented = documented_layers(&text);
    let layers: Vec<String> = LAYERS.iter().map(|m| (*m).to_owned()).collect();
    assert_eq!(
        documented, layers,
        "ARCHITECTURE.md's layer headings (left) and LAYERS in tests/layers.rs (right) differ"
    );
}

#[test]
fn the_architecture_check_sees_a_missing_layer() {
    let text = "# A\n\n## Layers of the runtime\n\n### `clock.rs`\n\ntext\n\n### `wire/`\n\n## Tests\n\n### `later`\n";
    assert_eq!(documented_layers(text), ["clock", "wire"]);
}

#[test]
fn the_reader_sees_an_upward_import() {
    // The check above can fail: an import in code counts, one in a comment
    // or a doc link does not.
    let text = "use crate::node::Node;\n/// See [`Node`](crate::receive::Receiver).\n";
    assert_eq!(imports(text), BTreeSet::from(["node".to_owned()]));
    assert!(imports("macro_rules! m { () => { $crate::wire::x() } }").is_empty());
}
