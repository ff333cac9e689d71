//! Writes every kglue CRD as YAML into a directory (default: `crds/yaml` of this crate), one file
//! per CRD. The committed copy is checked against the types by `tests/crd_drift.rs`.
//!
//! `crdgen --reference [FILE]` writes the CR reference instead (default: `docs/reference.md` of
//! the repository), checked by `tests/reference_drift.rs`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args: Vec<_> = std::env::args_os().skip(1).collect();
    let reference = args.first().is_some_and(|a| a == "--reference");
    if reference {
        args.remove(0);
    }
    let target = args.into_iter().next().map(PathBuf::from);
    let result = if reference {
        let path = target.unwrap_or_else(default_reference_path);
        write_reference(&path).map(|()| format!("wrote the CR reference to {}", path.display()))
    } else {
        let dir = target.unwrap_or_else(|| kglue_crds::crate_dir!().join("yaml"));
        write_all(&dir).map(|count| format!("wrote {count} CRDs to {}", dir.display()))
    };
    match result {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("crdgen: {message}");
            ExitCode::FAILURE
        }
    }
}

fn default_reference_path() -> PathBuf {
    let crate_dir = kglue_crds::crate_dir!();
    crate_dir
        .parent()
        .unwrap_or(&crate_dir)
        .join(kglue_crds::reference::REFERENCE_PATH)
}

fn write_all(dir: &Path) -> Result<usize, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let crds = kglue_crds::crds();
    for crd in &crds {
        let path = dir.join(kglue_crds::crd_file_name(crd));
        let yaml = kglue_crds::crd_yaml(crd).map_err(|e| format!("cannot serialise {}: {e}", path.display()))?;
        std::fs::write(&path, yaml).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(crds.len())
}

fn write_reference(path: &Path) -> Result<(), String> {
    std::fs::write(path, kglue_crds::reference::reference_markdown())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
