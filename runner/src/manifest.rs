//! Reading one object of a kind from a manifest file, as `kubectl apply -f` takes it (several
//! documents allowed; other kinds ignored), for the commands that take `-f FILE`.

use std::path::{Path, PathBuf};

use kube::Resource;
use serde::de::DeserializeOwned;

/// A manifest file that does not hold exactly one readable object of the kind asked for.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct ManifestError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong: unreadable, not YAML, no or several objects of the kind, or the object's
    /// field that does not fit its schema.
    pub message: String,
}

/// The single `K` (of `kglue.dev/v1alpha1`) in the manifest file `path`.
pub fn read_one<K>(path: &Path) -> Result<K, ManifestError>
where
    K: Resource<DynamicType = ()> + DeserializeOwned,
{
    let error = |message: String| ManifestError {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    parse_one(&text, path)
}

/// The single `K` in manifest text `text` (read from `path`, named in errors).
pub fn parse_one<K>(text: &str, path: &Path) -> Result<K, ManifestError>
where
    K: Resource<DynamicType = ()> + DeserializeOwned,
{
    let error = |message: String| ManifestError {
        path: path.to_path_buf(),
        message,
    };
    let kind = K::kind(&());
    let api_version = K::api_version(&());
    let documents: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(text).map_err(|e| error(format!("not valid YAML: {e}")))?;
    let mut found = documents
        .into_iter()
        .filter(|d| d["kind"] == kind.as_ref() && d["apiVersion"] == api_version.as_ref());
    let (Some(object), None) = (found.next(), found.next()) else {
        return Err(error(format!("expected exactly one {api_version} {kind} in the file")));
    };
    let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
    serde_json::from_value(object).map_err(|e| error(format!("{kind} {name:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use kglue_crds::{Crawler, Job};

    use super::*;

    #[test]
    fn one_object_of_the_kind_is_read_and_anything_else_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("objects.yaml");
        std::fs::write(
            &file,
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\n\
             apiVersion: kglue.dev/v1alpha1\nkind: Crawler\nmetadata: {name: landing}\n\
             spec: {databaseName: raw, targets: [{path: 's3://landing/x/'}]}\n",
        )
        .expect("write");
        let crawler: Crawler = read_one(&file).expect("one Crawler");
        assert_eq!(crawler.metadata.name.as_deref(), Some("landing"));
        let error = read_one::<Job>(&file).expect_err("no Job").to_string();
        assert!(
            error.ends_with("expected exactly one kglue.dev/v1alpha1 Job in the file"),
            "{error}"
        );
        std::fs::write(
            &file,
            "apiVersion: kglue.dev/v1alpha1\nkind: Crawler\nmetadata: {name: x}\nspec: {}\n",
        )
        .expect("write");
        let error = read_one::<Crawler>(&file).expect_err("no targets").to_string();
        assert!(error.contains("Crawler \"x\": missing field"), "{error}");
    }

    proptest::proptest! {
        // The manifest loader takes whatever a user's file holds: any text, and YAML-shaped text
        // near a Job, is read or refused with a message, never a panic.
        #[test]
        fn any_manifest_text_is_read_or_refused_without_panic(text in "\\PC{0,300}") {
            let _ = parse_one::<kglue_crds::Job>(&text, Path::new("job.yaml"));
        }

        #[test]
        fn job_shaped_yaml_is_read_or_refused_without_panic(
            lines in proptest::collection::vec(
                "(apiVersion: kglue.dev/v1alpha1|kind: Job|metadata: \\{name: [a-z]{1,4}\\}|spec:|  sql: [a-z ]{0,8}|  sources: \\[\\]|  sinks:|    - name: [a-z]{1,3}|      storage: \\{location: [a-z:/]{0,12}, format: (Csv|Json|Parquet|x)\\}|---|  [a-zA-Z]{1,6}: [0-9a-z\\[\\]{}\"']{0,6})",
                0..14,
            )
        ) {
            let _ = parse_one::<kglue_crds::Job>(&lines.join("\n"), Path::new("job.yaml"));
        }
    }
}
