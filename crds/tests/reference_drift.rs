//! The committed CR reference (`docs/reference.md`) must be exactly what the CRD schemas render.

use kglue_crds::reference::{REFERENCE_COMMAND, REFERENCE_PATH, reference_markdown};

#[test]
fn committed_reference_matches_the_schemas() {
    let path = kglue_crds::crate_dir!().join("..").join(REFERENCE_PATH);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = reference_markdown();
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()))
            + 1;
        panic!(
            "{REFERENCE_PATH} is out of date (first difference at line {line}): run `{REFERENCE_COMMAND}` and commit the result"
        );
    }
}
