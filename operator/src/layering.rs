//! A check of the operator's layering (docs/architecture.md): no module imports from a module that
//! imports it, directly or through others. The source is read as text: every `crate::…`,
//! `super::…` and `self::…` path and every use of a child module by its bare name is an edge from
//! the file's module to the deepest module the path names. Test code (after a file's first
//! `#[cfg(test)]`, and `tests.rs` files) is left out; a parent declaring a child (`mod x;`) is not
//! an edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::graph::find_cycle;

/// A module path, `[]` for the crate root.
type Module = Vec<String>;

/// The module of every file of `src` (the binary's `main.rs` is another crate).
fn modules(src: &Path) -> BTreeMap<Module, String> {
    let mut found = BTreeMap::new();
    let mut pending = vec![src.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)
            .expect("the source directory is readable")
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let Ok(relative) = path.strip_prefix(src) else { continue };
            let mut parts: Vec<String> = relative
                .with_extension("")
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if parts == ["main"]
                || parts.last().is_some_and(|p| p == "tests")
                || !relative.to_string_lossy().ends_with(".rs")
            {
                continue;
            }
            if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
                parts.pop();
            }
            let text = std::fs::read_to_string(&path).expect("a source file is readable");
            found.insert(parts, code_of(&text));
        }
    }
    found
}

/// The code of a file without its tests and comments.
fn code_of(text: &str) -> String {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    code.lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The identifiers of `text` with the `::` between them: `crate::runs::machine` → the words.
fn paths(text: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let bytes = text.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        if !word(bytes[i]) || (i > 0 && (word(bytes[i - 1]) || bytes[i - 1] == b':')) {
            i += 1;
            continue;
        }
        let mut path = Vec::new();
        let mut j = i;
        loop {
            let start = j;
            while j < bytes.len() && word(bytes[j]) {
                j += 1;
            }
            path.push(text[start..j].to_string());
            if text[j..].starts_with("::") && j + 2 < bytes.len() && word(bytes[j + 2]) {
                j += 2;
            } else {
                break;
            }
        }
        // `use super::{a, b}`: each name in the group continues the path.
        if text[j..].starts_with("::{")
            && let Some(end) = text[j..].find('}')
        {
            for name in text[j + 3..j + end].split(',') {
                let name = name.trim().split("::").next().unwrap_or_default().trim();
                if !name.is_empty() && name.bytes().all(word) {
                    let mut grouped = path.clone();
                    grouped.push(name.to_string());
                    found.push(grouped);
                }
            }
        }
        found.push(path);
        i = j.max(i + 1);
    }
    found
}

/// Every module `module` imports from (its code `code`), among `all`.
fn imports(module: &Module, code: &str, all: &BTreeMap<Module, String>) -> BTreeSet<Module> {
    let children: BTreeSet<&str> = all
        .keys()
        .filter(|m| m.len() == module.len() + 1 && m.starts_with(module))
        .filter_map(|m| m.last().map(String::as_str))
        .collect();
    let mut found = BTreeSet::new();
    for path in paths(code) {
        let (mut base, rest): (Module, &[String]) = match path[0].as_str() {
            "crate" => (Vec::new(), &path[1..]),
            "self" => (module.clone(), &path[1..]),
            "super" => (module[..module.len().saturating_sub(1)].to_vec(), &path[1..]),
            // A bare child name used as a path (`job::run(…)` in `controllers/mod.rs`).
            child if children.contains(child) && path.len() > 1 => (module.clone(), &path[..]),
            _ => continue,
        };
        let mut rest = rest;
        while rest.first().is_some_and(|p| p == "super") {
            base.pop();
            rest = &rest[1..];
        }
        let mut target = base;
        let mut deepest = target.clone();
        for part in rest {
            target.push(part.clone());
            if all.contains_key(&target) {
                deepest = target.clone();
            }
        }
        if &deepest != module && all.contains_key(&deepest) {
            found.insert(deepest);
        }
    }
    found
}

fn name(module: &Module) -> String {
    if module.is_empty() {
        "crate".into()
    } else {
        module.join("::")
    }
}

#[test]
fn no_module_imports_from_a_module_that_imports_it() {
    let src = kglue_crds::crate_dir!().join("src");
    let all = modules(&src);
    assert!(
        all.contains_key(&vec!["runs".to_string(), "machine".to_string()]),
        "the source is found"
    );
    let edges: BTreeMap<Module, Vec<Module>> = all
        .iter()
        .map(|(module, code)| (module.clone(), imports(module, code, &all).into_iter().collect()))
        .collect();
    if let Some(cycle) = find_cycle(&edges) {
        let names: Vec<String> = cycle.iter().map(name).collect();
        panic!("modules import each other in a circle: {}", names.join(" → "));
    }
}

#[test]
fn the_check_finds_a_circle() {
    let module = |path: &str| -> Module { path.split("::").map(str::to_string).collect() };
    let all: BTreeMap<Module, String> = [
        (module("a"), "use crate::b::thing;".to_string()),
        (module("b"), "pub fn thing() { crate::c::other() }".to_string()),
        (module("c"), "use super::a::{x, y};".to_string()),
        (module("d"), "mod e;\nfn f() { e::g() }".to_string()),
        (module("d::e"), "use super::super::a;".to_string()),
    ]
    .into();
    let edges: BTreeMap<Module, Vec<Module>> = all
        .iter()
        .map(|(m, code)| (m.clone(), imports(m, code, &all).into_iter().collect()))
        .collect();
    assert_eq!(edges[&module("d")], [module("d::e")], "a child used by its bare name");
    assert_eq!(edges[&module("d::e")], [module("a")]);
    let cycle = find_cycle(&edges).expect("a → b → c → a");
    assert_eq!(cycle.first(), cycle.last());
    assert_eq!(cycle.len(), 4, "{cycle:?}");
}
