//! Writes every kglue CRD as YAML into a directory (default: `crds/yaml` of this crate), one file
//! per CRD. The committed copy is checked against the types by `tests/crd_drift.rs`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("yaml"));
    match write_all(&dir) {
        Ok(count) => {
            println!("wrote {count} CRDs to {}", dir.display());
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("crdgen: {message}");
            ExitCode::FAILURE
        }
    }
}

fn write_all(dir: &std::path::Path) -> Result<usize, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let crds = kglue_crds::crds();
    for crd in &crds {
        let path = dir.join(kglue_crds::crd_file_name(crd));
        let yaml = kglue_crds::crd_yaml(crd).map_err(|e| format!("cannot serialise {}: {e}", path.display()))?;
        std::fs::write(&path, yaml).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(crds.len())
}
