//! The committed CRD YAML must be exactly what the Rust types generate.

use std::collections::BTreeSet;
use std::path::PathBuf;

fn yaml_dir() -> PathBuf {
    kglue_crds::crate_dir!().join("yaml")
}

#[test]
fn committed_crd_yaml_matches_the_types() {
    let mut drifted = Vec::new();
    for crd in kglue_crds::crds() {
        let name = kglue_crds::crd_file_name(&crd);
        let generated = kglue_crds::crd_yaml(&crd).expect("CRDs serialise to YAML");
        let committed = std::fs::read_to_string(yaml_dir().join(&name)).unwrap_or_default();
        if committed != generated {
            drifted.push(name);
        }
    }
    assert!(
        drifted.is_empty(),
        "crds/yaml is out of date for {drifted:?}: run `cargo run -p kglue-crds --bin crdgen` and commit the result"
    );
}

#[test]
fn no_stale_files_in_the_yaml_directory() {
    let expected: BTreeSet<String> = kglue_crds::crds().iter().map(kglue_crds::crd_file_name).collect();
    let present: BTreeSet<String> = std::fs::read_dir(yaml_dir())
        .expect("crds/yaml exists")
        .map(|entry| {
            entry
                .expect("readable directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        present, expected,
        "crds/yaml holds files that no type generates (or misses some)"
    );
}
