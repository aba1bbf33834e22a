//! The shape of the source, kept by a test: no file over 700 lines in any of the
//! three crates, and no import circle between the modules of any of them (`crate::`
//! paths in code, at the level of top-level modules and of files). Functions over 80 lines
//! are clippy's `too_many_lines` (clippy.toml, turned on in each crate's lib.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 700;

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn no_source_file_is_over_700_lines() {
    let mut long = Vec::new();
    for dir in ["src", "wire/src", "worker/src"] {
        for path in rust_files(&repo().join(dir)) {
            let lines = std::fs::read_to_string(&path).unwrap().lines().count();
            if lines > MAX_FILE_LINES {
                long.push(format!("{} ({lines})", path.display()));
            }
        }
    }
    assert!(long.is_empty(), "over {MAX_FILE_LINES} lines: {long:?}");
}

/// `src/a/b.rs` and `src/a/b/mod.rs` are `a::b`.
fn module_of(src: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into()).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts.join("::")
}

/// The modules a file names with `crate::`, outside comments: the longest prefix of
/// each path that is a module of the crate.
fn imports(text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        for (at, _) in code.match_indices("crate::") {
            let path: String = code[at + 7..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
            if let Some(m) = (1..=segs.len())
                .rev()
                .map(|n| segs[..n].join("::"))
                .find(|m| modules.contains(m))
            {
                out.insert(m);
            }
        }
    }
    out
}

/// A circle in `edges`, if there is one, as the modules along it.
fn find_circle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_string());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|n| visit(n, edges, &mut Vec::new(), &mut done))
}

/// Edges between modules cut to `depth` path segments (1: top-level modules), with
/// a module's imports of its own parts left out.
fn import_edges(crate_src: &str, depth: usize) -> BTreeMap<String, BTreeSet<String>> {
    let src = repo().join(crate_src);
    let files = rust_files(&src);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
    let cut = |m: &str| m.split("::").take(depth).collect::<Vec<_>>().join("::");
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let from = cut(&module_of(&src, file));
        if from == "main" || from == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        for to in imports(&text, &modules) {
            let to = cut(&to);
            let inside = to == from || from.starts_with(&format!("{to}::"));
            if !inside {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    edges
}

#[test]
fn no_import_circle_between_modules() {
    for crate_src in ["src", "worker/src", "wire/src"] {
        for depth in [1, 8] {
            if let Some(circle) = find_circle(&import_edges(crate_src, depth)) {
                panic!("import circle in {crate_src}: {}", circle.join(" -> "));
            }
        }
    }
}

#[test]
fn the_circle_finder_finds_a_circle() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    edges.entry("a".into()).or_default().insert("b".into());
    edges.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_circle(&edges), None);
    edges.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        find_circle(&edges).unwrap(),
        ["a", "b", "c", "a"].map(String::from)
    );
}

/// A clone of the repository alone runs its tests and benches: the README, the
/// tests, the bench scripts and the build scripts name no place outside it (the
/// records of past runs, `benches/results/*/command.txt` and logs, keep their
/// machine's paths as they were).
#[test]
fn nothing_refers_outside_the_repository() {
    let mut files = vec![repo().join("README.md"), repo().join("benches/README.md")];
    for dir in ["tests", "benches", "deploy", "conf", ".ci"] {
        let mut stack = vec![repo().join(dir)];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if path.is_dir() && name != "__pycache__" {
                    stack.push(path);
                } else if [".rs", ".sh", ".py", ".toml", "run"]
                    .iter()
                    .any(|e| name.ends_with(e))
                {
                    files.push(path);
                }
            }
        }
    }
    files.extend(["build.rs", "worker/build.rs", "wire/build.rs"].map(|f| repo().join(f)));
    let mut outside = Vec::new();
    for f in files.iter().filter(|f| f.exists()) {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        // Spelled in pieces, so this file does not name them itself.
        for needle in [concat!("/", "work/"), concat!("..", "/shared")] {
            if text.contains(needle) {
                outside.push(format!("{} names {needle}", f.display()));
            }
        }
    }
    assert!(outside.is_empty(), "{outside:#?}");
}

/// The README's "Tests" section names every file of `tests/` (it once named 13 of
/// them) and says that the command needs root, its time and its disk.
#[test]
fn the_readme_lists_every_test_file() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split("\n## Tests\n")
        .nth(1)
        .expect("README has a Tests section");
    let section = section.split("\n## ").next().unwrap();
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(repo().join("tests")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".rs") && !section.contains(&format!("`{name}`")) {
            missing.push(name);
        }
    }
    missing.sort();
    assert!(missing.is_empty(), "not in the README's Tests: {missing:?}");
    for fact in ["as root", "15\nminutes", "9 GiB"] {
        let flat = section.replace('\n', " ");
        assert!(flat.contains(&fact.replace('\n', " ")), "{fact:?} not said");
    }
}

/// The README cites only files the repository has (it cited a design document
/// three times that is not in it).
#[test]
fn the_readme_cites_no_missing_document() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let mut missing = Vec::new();
    for word in readme.split(|c: char| c.is_whitespace() || "`()[]\"',;:".contains(c)) {
        let word = word.trim_end_matches('.');
        if word.ends_with(".md") && !word.starts_with("http") && !repo().join(word).exists() {
            missing.push(word.to_string());
        }
    }
    missing.dedup();
    assert!(missing.is_empty(), "{missing:?}");
}
