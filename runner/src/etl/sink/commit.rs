//! Committing staged files (move, then apply the write mode, then drop the staging folder) and
//! cleaning up after an earlier attempt of a run.

use std::collections::{BTreeSet, HashSet};

use futures::{StreamExt, TryStreamExt};
use kglue_crds::job::WriteMode;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use super::{
    CleanOutcome, STAGING_FOLDER, SinkError, SinkOutcome, SinkTarget, Staged, check_run_id, join_path, parse_path,
    staging_root,
};
use crate::storage::Store;

/// Store requests in flight at once during commit and clean-up.
const CONCURRENCY: usize = 16;

fn store_error(target: &SinkTarget, action: &'static str, path: &Path, source: object_store::Error) -> SinkError {
    SinkError::Store {
        sink: target.name.clone(),
        action,
        url: target.location.url_of(path),
        source: Box::new(source),
    }
}

/// Every object below `prefix`.
async fn list(target: &SinkTarget, prefix: &Path) -> Result<Vec<Path>, SinkError> {
    target
        .store
        .list(Some(prefix))
        .map_ok(|meta| meta.location)
        .try_collect()
        .await
        .map_err(|e| store_error(target, "list", prefix, e))
}

/// Deletes `paths`; objects already gone are fine (a retry, or a concurrent clean-up).
async fn delete_all(target: &SinkTarget, paths: Vec<Path>) -> Result<u64, SinkError> {
    let count = paths.len() as u64;
    let store = &target.store;
    futures::stream::iter(paths)
        .map(|path| async move {
            match store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(store_error(target, "delete", &path, e)),
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<()>()
        .await?;
    Ok(count)
}

/// Whether a file name is one this run writes: `part-<run id>-<digits>-<digits>.<ext>`. The digits
/// after the run id keep run `r1` from claiming run `r1-2`'s files.
fn written_by_run(name: &str, run_id: &str) -> bool {
    let Some(rest) = name
        .strip_prefix("part-")
        .and_then(|r| r.strip_prefix(run_id))
        .and_then(|r| r.strip_prefix('-'))
    else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let Some((stream, rest)) = rest.split_once('-') else {
        return false;
    };
    let Some((seq, ext)) = rest.split_once('.') else {
        return false;
    };
    digits(stream) && digits(seq) && !ext.is_empty()
}

/// Whether `path` is in the location's staging area (any run's).
fn in_staging(target: &SinkTarget, path: &Path) -> bool {
    target
        .location
        .relative(path)
        .is_some_and(|parts| parts.first().is_some_and(|p| p == STAGING_FOLDER))
}

/// Removes folders left empty on a local filesystem: every empty folder inside `tree` (a run's
/// staging folder), and each of `dirs` and its parents up to (not including) the location. Object
/// stores have no folders; local ones keep them, and empty staging or partition folders would
/// confuse people and crawlers.
async fn prune_empty_dirs(target: &SinkTarget, mut dirs: BTreeSet<String>, tree: &Path) {
    if target.location.store != Store::File {
        return;
    }
    let root = std::path::PathBuf::from(format!("/{}", target.location.prefix.as_ref()));
    let tree = std::path::PathBuf::from(format!("/{tree}"));
    dirs.insert(tree.to_string_lossy().trim_start_matches('/').to_string());
    let _ = tokio::task::spawn_blocking(move || {
        remove_empty_below(&tree);
        // Deepest first, so a parent is tried after its children.
        let mut dirs: Vec<String> = dirs.into_iter().collect();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.matches('/').count()));
        for dir in dirs {
            let mut current = std::path::PathBuf::from(format!("/{dir}"));
            // remove_dir only removes empty folders, so a folder with files (or a store that is
            // not rooted at `/`) is left alone.
            while current.starts_with(&root) && current != root && std::fs::remove_dir(&current).is_ok() {
                if !current.pop() {
                    break;
                }
            }
        }
    })
    .await;
}

/// Removes a run's staging folder from a local filesystem with everything still in it. A killed
/// attempt can leave an upload it was writing as `<file>#<n>`, which the local store hides from
/// listings, so deleting the listed objects alone would leave it (and its folders) behind. The
/// folder belongs to this run only, so nothing else is lost.
async fn remove_interrupted_uploads(target: &SinkTarget, staging: &Path) -> Result<(), SinkError> {
    if target.location.store != Store::File {
        return Ok(());
    }
    let tree = std::path::PathBuf::from(format!("/{staging}"));
    let removed = tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&tree) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    })
    .await
    .unwrap_or_else(|joined| Err(std::io::Error::other(joined)));
    removed.map_err(|e| {
        let source = object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(e),
        };
        store_error(target, "delete", staging, source)
    })
}

/// Removes the empty folders inside `dir` (not `dir` itself), deepest first.
fn remove_empty_below(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let path = entry.path();
            remove_empty_below(&path);
            let _ = std::fs::remove_dir(&path);
        }
    }
}

fn parent_dir(path: &Path) -> Option<String> {
    path.as_ref().rsplit_once('/').map(|(parent, _)| parent.to_string())
}

/// Removes everything an earlier (failed or killed) attempt of `run_id` left: its staging folder,
/// and final files whose names carry the run id (from a commit cut short). Call it before an
/// attempt stages. Other runs' files and staging folders are not touched.
pub async fn clean_attempt(target: &SinkTarget, run_id: &str) -> Result<CleanOutcome, SinkError> {
    check_run_id(&target.name, run_id)?;
    let staging = parse_path(&target.name, &staging_root(&target.location, run_id))?;
    let staged = list(target, &staging).await?;
    let mut dirs: BTreeSet<String> = staged.iter().filter_map(parent_dir).collect();
    let staging_objects = delete_all(target, staged).await?;
    remove_interrupted_uploads(target, &staging).await?;

    let committed: Vec<Path> = list(target, &target.location.prefix)
        .await?
        .into_iter()
        .filter(|p| !in_staging(target, p) && p.filename().is_some_and(|name| written_by_run(name, run_id)))
        .collect();
    dirs.extend(committed.iter().filter_map(parent_dir));
    let committed_objects = delete_all(target, committed).await?;
    prune_empty_dirs(target, dirs, &staging).await;
    Ok(CleanOutcome {
        staging_objects,
        committed_objects,
    })
}

/// Moves the staged files into place, then applies the write mode, then removes the staging
/// folder; returns the figures and partitions for the run's metrics and the catalog update.
///
/// Append keeps every other file. Overwrite deletes every object under the location that is not
/// one of this run's files (other runs' staging folders excepted); with an empty result it empties
/// the location, as Spark does. OverwritePartitions deletes the other files of the partition
/// folders this run wrote, and nothing else.
pub async fn commit(target: &SinkTarget, staged: Staged, run_id: &str) -> Result<SinkOutcome, SinkError> {
    if staged.run_id != run_id || staged.sink != target.name {
        return Err(SinkError::StagedElsewhere {
            sink: target.name.clone(),
            run_id: run_id.to_string(),
            staged_sink: staged.sink,
            staged_run: staged.run_id,
        });
    }
    let mut moves = Vec::with_capacity(staged.files.len());
    for file in &staged.files {
        moves.push((
            parse_path(&target.name, &file.staging_path)?,
            parse_path(&target.name, &file.final_path)?,
        ));
    }
    let ours: HashSet<Path> = moves.iter().map(|(_, to)| to.clone()).collect();

    // 1. Move. Rename is cheap on a filesystem and a copy plus delete on S3.
    let store = &target.store;
    futures::stream::iter(&moves)
        .map(|(from, to)| async move {
            match store.rename(from, to).await {
                Ok(()) => Ok(()),
                // A commit retried after it was cut short: the file is already in place.
                Err(object_store::Error::NotFound { .. }) if store.head(to).await.is_ok() => Ok(()),
                Err(e) => Err(store_error(target, "move", from, e)),
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<()>()
        .await?;

    // 2. Apply the write mode, noting which partitions held data before this run.
    let depth = staged.partitions.first().map(|p| p.values.len()).unwrap_or_default();
    let mut existed: HashSet<String> = HashSet::new();
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    let whole_location = target.write_mode == WriteMode::Overwrite
        || (target.write_mode == WriteMode::OverwritePartitions && target.partition_by.is_empty());
    let objects_deleted = if whole_location {
        let mut old = Vec::new();
        for path in list(target, &target.location.prefix).await? {
            if ours.contains(&path) || in_staging(target, &path) {
                continue;
            }
            if let Some(parts) = target.location.relative(&path)
                && depth > 0
                && parts.len() > depth
            {
                existed.insert(parts[..depth].join("/"));
            }
            dirs.extend(parent_dir(&path));
            old.push(path);
        }
        delete_all(target, old).await?
    } else {
        let overwrite = target.write_mode == WriteMode::OverwritePartitions;
        let prefix = target.location.prefix.as_ref();
        let mut folders = Vec::with_capacity(staged.partitions.len());
        for partition in &staged.partitions {
            folders.push((
                partition.path.clone(),
                parse_path(&target.name, &join_path(prefix, &partition.path))?,
            ));
        }
        let ours = &ours;
        let found: Vec<(String, Vec<Path>)> = futures::stream::iter(folders)
            .map(|(rel, folder)| async move {
                let mut listing = target.store.list(Some(&folder));
                let mut old = Vec::new();
                while let Some(meta) = listing.next().await {
                    let meta = meta.map_err(|e| store_error(target, "list", &folder, e))?;
                    if !ours.contains(&meta.location) {
                        old.push(meta.location);
                        if !overwrite {
                            // Appending only needs to know whether the folder had data.
                            break;
                        }
                    }
                }
                Ok::<_, SinkError>((rel, old))
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        let mut old = Vec::new();
        for (rel, paths) in found {
            if !paths.is_empty() {
                existed.insert(rel);
            }
            if overwrite {
                dirs.extend(paths.iter().filter_map(parent_dir));
                old.extend(paths);
            }
        }
        delete_all(target, old).await?
    };

    // 3. Drop the staging folder (empty now unless something else wrote into it).
    let staging = parse_path(&target.name, &staging_root(&target.location, run_id))?;
    let leftovers = list(target, &staging).await?;
    delete_all(target, leftovers).await?;
    prune_empty_dirs(target, dirs, &staging).await;

    let partitions_added = staged
        .partitions
        .iter()
        .filter(|p| !existed.contains(&p.path))
        .cloned()
        .collect();
    Ok(SinkOutcome {
        sink: staged.sink,
        write_mode: target.write_mode,
        rows: staged.rows,
        files: staged.files.len() as u64,
        bytes: staged.bytes,
        partitions: staged.partitions,
        partitions_added,
        paths: staged.files.into_iter().map(|f| f.final_path).collect(),
        objects_deleted,
    })
}

#[cfg(test)]
mod tests {
    use super::written_by_run;

    #[test]
    fn a_run_claims_only_its_own_file_names() {
        assert!(written_by_run("part-r1-00000-00003.parquet", "r1"));
        assert!(written_by_run("part-r1-00012-00000.csv.gz", "r1"));
        assert!(
            !written_by_run("part-r1-2-00000-00000.parquet", "r1"),
            "run r1-2's file"
        );
        assert!(!written_by_run("part-r1-00000-00000-00000.parquet", "r1"));
        assert!(!written_by_run("part-r10-00000-00000.parquet", "r1"));
        assert!(!written_by_run("data-r1.parquet", "r1"));
        assert!(written_by_run("part-r1-2-00000-00000.parquet", "r1-2"));
    }
}
