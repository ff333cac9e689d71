//! Listing a crawler target: every object under the prefix, minus markers, hidden files and
//! exclusions. Nothing is dropped silently: each skipped object is returned with its reason, for
//! the crawl report.

use std::fmt;

use futures::TryStreamExt;
use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use object_store::{ObjectMeta, ObjectStore};

use crate::storage::Location;

/// What can go wrong listing a target.
#[derive(Debug, thiserror::Error)]
pub enum ListingError {
    /// An exclusion pattern is not a valid glob.
    #[error("exclusion {pattern:?} is not a valid glob: {message}")]
    InvalidExclusion {
        /// The pattern.
        pattern: String,
        /// The parser's message.
        message: String,
    },
    /// The store refused or failed the listing (unreachable endpoint, wrong credentials, missing
    /// bucket…).
    #[error("listing {location} failed: {source}")]
    List {
        /// The target.
        location: String,
        /// The store's error (boxed: object-store errors are large).
        source: Box<object_store::Error>,
    },
}

/// Why an object was left out of a crawl.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// A job-output marker: `_SUCCESS`, `_committed_*`, `_started_*`, `*.crc`, `*_$folder$`.
    Marker,
    /// A file or folder whose name starts with `.` or `_` (`.DS_Store`, `_temporary/`), named.
    Hidden(String),
    /// Matched one of the target's exclusions, named.
    Excluded(String),
    /// A zero-byte object: a folder placeholder or an empty file, which has no schema.
    Empty,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Marker => write!(f, "job-output marker"),
            SkipReason::Hidden(component) => write!(f, "hidden ({component:?} starts with '.' or '_')"),
            SkipReason::Excluded(pattern) => write!(f, "matches exclusion {pattern:?}"),
            SkipReason::Empty => write!(f, "empty (0 bytes)"),
        }
    }
}

/// An object the crawl will consider, with its path relative to the target.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The object's metadata (key, size, last modified).
    pub meta: ObjectMeta,
    /// The folders between the target and the object, outermost first.
    pub folders: Vec<String>,
    /// The file name.
    pub file_name: String,
}

/// The result of listing one target.
#[derive(Debug, Default)]
pub struct Listing {
    /// Objects to classify.
    pub objects: Vec<Listed>,
    /// Objects left out, with the reason.
    pub skipped: Vec<(ObjectMeta, SkipReason)>,
}

/// The exclusion globs of a target, matched against paths relative to the target (`*` stays
/// within one folder; `**` crosses folders), as Glue matches them.
#[derive(Debug, Clone)]
pub struct Exclusions {
    patterns: Vec<String>,
    set: GlobSet,
}

impl Exclusions {
    /// Compiles the patterns, naming the first one that is not a valid glob.
    pub fn new(patterns: &[String]) -> Result<Self, ListingError> {
        let mut builder = GlobSetBuilder::new();
        for pattern in patterns {
            let glob: Glob = GlobBuilder::new(pattern).literal_separator(true).build().map_err(|e| {
                ListingError::InvalidExclusion {
                    pattern: pattern.clone(),
                    message: e.kind().to_string(),
                }
            })?;
            builder.add(glob);
        }
        let set = builder.build().map_err(|e| ListingError::InvalidExclusion {
            pattern: patterns.join(", "),
            message: e.to_string(),
        })?;
        Ok(Exclusions {
            patterns: patterns.to_vec(),
            set,
        })
    }

    /// No exclusions.
    pub fn none() -> Exclusions {
        Exclusions {
            patterns: Vec::new(),
            set: GlobSet::empty(),
        }
    }

    /// The first pattern that matches `relative_path`, if any.
    pub fn matching(&self, relative_path: &str) -> Option<&str> {
        self.set
            .matches(relative_path)
            .first()
            .map(|&i| self.patterns[i].as_str())
    }
}

/// Why `relative` (the path below the target, split in parts) must be skipped, if it must.
pub fn skip_reason(parts: &[String], size: u64, exclusions: &Exclusions) -> Option<SkipReason> {
    let file_name = parts.last().map(String::as_str).unwrap_or_default();
    let is_marker = file_name == "_SUCCESS"
        || file_name.starts_with("_committed_")
        || file_name.starts_with("_started_")
        || file_name.ends_with(".crc")
        || file_name.ends_with("_$folder$");
    if is_marker {
        return Some(SkipReason::Marker);
    }
    if let Some(hidden) = parts.iter().find(|p| p.starts_with('.') || p.starts_with('_')) {
        return Some(SkipReason::Hidden(hidden.clone()));
    }
    if let Some(pattern) = exclusions.matching(&parts.join("/")) {
        return Some(SkipReason::Excluded(pattern.to_string()));
    }
    if size == 0 {
        return Some(SkipReason::Empty);
    }
    None
}

/// Lists every object under `location` and sorts it into objects to crawl and skipped ones.
/// Objects come back in key order, so crawls are deterministic.
pub async fn list_target(
    store: &dyn ObjectStore,
    location: &Location,
    exclusions: &Exclusions,
) -> Result<Listing, ListingError> {
    let prefix = (!location.prefix.as_ref().is_empty()).then_some(&location.prefix);
    let mut metas: Vec<ObjectMeta> = store
        .list(prefix)
        .try_collect()
        .await
        .map_err(|source| ListingError::List {
            location: location.to_string(),
            source: Box::new(source),
        })?;
    metas.sort_by(|a, b| a.location.cmp(&b.location));
    let mut listing = Listing::default();
    for meta in metas {
        // `list` returns keys below the prefix as a folder, so every key has a relative path.
        let Some(mut parts) = location.relative(&meta.location) else {
            continue;
        };
        match skip_reason(&parts, meta.size, exclusions) {
            Some(reason) => listing.skipped.push((meta, reason)),
            None => {
                let file_name = parts.pop().unwrap_or_default();
                listing.objects.push(Listed {
                    meta,
                    folders: parts,
                    file_name,
                });
            }
        }
    }
    Ok(listing)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::local::LocalFileSystem;

    use super::*;

    fn parts(path: &str) -> Vec<String> {
        path.split('/').map(str::to_string).collect()
    }

    fn no_exclusions() -> Exclusions {
        Exclusions::new(&[]).expect("empty set compiles")
    }

    #[test]
    fn markers_and_hidden_files_are_skipped_with_their_reason() {
        let none = no_exclusions();
        let cases = [
            ("dt=2024-01-01/_SUCCESS", Some(SkipReason::Marker)),
            ("dt=2024-01-01/_committed_123", Some(SkipReason::Marker)),
            ("dt=2024-01-01/part-0.parquet.crc", Some(SkipReason::Marker)),
            ("logs_$folder$", Some(SkipReason::Marker)),
            (
                "_temporary/0/part-0.parquet",
                Some(SkipReason::Hidden("_temporary".into())),
            ),
            ("dt=2024-01-01/.DS_Store", Some(SkipReason::Hidden(".DS_Store".into()))),
            (".hidden/part-0.csv", Some(SkipReason::Hidden(".hidden".into()))),
            ("dt=2024-01-01/part-0.csv", None),
        ];
        for (path, expected) in cases {
            assert_eq!(skip_reason(&parts(path), 10, &none), expected, "{path}");
        }
        assert_eq!(skip_reason(&parts("a/empty.csv"), 0, &none), Some(SkipReason::Empty));
    }

    #[test]
    fn exclusions_match_relative_paths_with_glue_glob_semantics() {
        let exclusions = Exclusions::new(&["**/tmp/**".into(), "*.log".into(), "2023/**".into()]).expect("valid");
        assert_eq!(exclusions.matching("dt=1/tmp/a.csv"), Some("**/tmp/**"));
        assert_eq!(exclusions.matching("tmp/a.csv"), Some("**/tmp/**"));
        assert_eq!(exclusions.matching("server.log"), Some("*.log"));
        // `*` does not cross folders: a log file in a folder is not excluded by `*.log`.
        assert_eq!(exclusions.matching("logs/server.log"), None);
        assert_eq!(exclusions.matching("2023/01/a.csv"), Some("2023/**"));
        assert_eq!(exclusions.matching("2024/01/a.csv"), None);

        let error = Exclusions::new(&["a/[b".into()]).expect_err("invalid glob").to_string();
        assert!(error.contains("exclusion \"a/[b\" is not a valid glob"), "{error}");
    }

    #[tokio::test]
    async fn lists_a_local_target_in_key_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = [
            ("orders/dt=2024-01-02/part-0.csv", "a\n1\n"),
            ("orders/dt=2024-01-01/part-0.csv", "a\n1\n"),
            ("orders/dt=2024-01-01/_SUCCESS", ""),
            ("orders/dt=2024-01-01/tmp/x.csv", "a\n1\n"),
            ("orders/dt=2024-01-01/empty.csv", ""),
            ("other/ignored.csv", "a\n1\n"),
        ];
        for (path, content) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
            std::fs::write(path, content).expect("write");
        }
        let store = Arc::new(LocalFileSystem::new());
        let location = Location::from_directory(&dir.path().join("orders")).expect("location");
        let exclusions = Exclusions::new(&["**/tmp/**".into()]).expect("valid");
        let listing = list_target(store.as_ref(), &location, &exclusions)
            .await
            .expect("lists");

        let objects: Vec<String> = listing
            .objects
            .iter()
            .map(|o| format!("{}/{}", o.folders.join("/"), o.file_name))
            .collect();
        assert_eq!(objects, ["dt=2024-01-01/part-0.csv", "dt=2024-01-02/part-0.csv"]);
        let mut skipped: Vec<(String, SkipReason)> = listing
            .skipped
            .iter()
            .map(|(meta, reason)| {
                (
                    location.relative(&meta.location).expect("below").join("/"),
                    reason.clone(),
                )
            })
            .collect();
        skipped.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            skipped,
            [
                ("dt=2024-01-01/_SUCCESS".to_string(), SkipReason::Marker),
                ("dt=2024-01-01/empty.csv".to_string(), SkipReason::Empty),
                (
                    "dt=2024-01-01/tmp/x.csv".to_string(),
                    SkipReason::Excluded("**/tmp/**".into())
                ),
            ]
        );
    }

    #[tokio::test]
    async fn a_missing_local_target_lists_nothing() {
        // object_store treats a missing local folder like an empty S3 prefix; the crawl reports an
        // empty target rather than failing on it.
        let store = LocalFileSystem::new();
        let location: Location = "file:///nonexistent-kglue-test-dir/x/".parse().expect("valid");
        let listing = list_target(&store, &location, &no_exclusions())
            .await
            .expect("an empty listing");
        assert!(listing.objects.is_empty() && listing.skipped.is_empty());
    }
}
