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

/// Removes what an earlier attempt of `run_id` that did not decide to commit left: its staging
/// folder and, on S3, its incomplete multipart uploads. Call it before an attempt stages, and
/// after one fails. Nothing outside the run's staging folder is touched: files reach their final
/// folders only after a run decided to commit, and a decided run is finished ([`settle`]), never
/// cleaned.
pub async fn clean_attempt(target: &SinkTarget, run_id: &str) -> Result<CleanOutcome, SinkError> {
    check_run_id(&target.name, run_id)?;
    let staging = parse_path(&target.name, &staging_root(&target.location, run_id))?;
    let staged = list(target, &staging).await?;
    let dirs: BTreeSet<String> = staged.iter().filter_map(parent_dir).collect();
    let staging_objects = delete_all(target, staged).await?;
    let uploads_aborted = abort_uploads(target, &staging).await?;
    remove_interrupted_uploads(target, &staging).await?;
    prune_empty_dirs(target, dirs, &staging).await;
    Ok(CleanOutcome {
        staging_objects,
        uploads_aborted,
    })
}

/// Aborts the incomplete multipart uploads under `prefix` (S3; a local folder has none that
/// outlive its process but the `#<n>` files [`remove_interrupted_uploads`] removes).
async fn abort_uploads(target: &SinkTarget, prefix: &Path) -> Result<u64, SinkError> {
    let Some(s3) = &target.s3 else {
        return Ok(0);
    };
    let folder = format!("{prefix}/");
    let uploads = s3
        .incomplete_uploads(&folder)
        .await
        .map_err(|e| multipart_error(target, e))?;
    for upload in &uploads {
        s3.abort(upload).await.map_err(|e| multipart_error(target, e))?;
    }
    Ok(uploads.len() as u64)
}

fn multipart_error(target: &SinkTarget, error: crate::multipart::S3Error) -> SinkError {
    SinkError::Multipart {
        sink: target.name.clone(),
        source: Box::new(error),
    }
}

/// One staged file's move into place.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Move {
    from: Path,
    to: Path,
    bytes: u64,
}

/// What committing a sink does, worked out before the run decides to commit (so the decision
/// carries the figures) and carried out after ([`apply`]): the moves, the objects the write mode
/// replaces, and the figures.
#[derive(Debug, Clone)]
pub struct CommitPlan {
    moves: Vec<Move>,
    deletes: Vec<Path>,
    dirs: BTreeSet<String>,
    staging: Path,
    /// What the commit will have done.
    pub outcome: SinkOutcome,
}

/// Plans the commit of what [`stage`](super::stage) wrote: lists what the write mode replaces
/// and which partitions held data before. Changes nothing.
///
/// Append keeps every other file. Overwrite replaces every object under the location that is not
/// one of this run's files (other runs' staging folders excepted); with an empty result it empties
/// the location, as Spark does. OverwritePartitions replaces the other files of the partition
/// folders this run wrote, and nothing else.
pub async fn plan(target: &SinkTarget, staged: Staged, run_id: &str) -> Result<CommitPlan, SinkError> {
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
        moves.push(Move {
            from: parse_path(&target.name, &file.staging_path)?,
            to: parse_path(&target.name, &file.final_path)?,
            bytes: file.bytes,
        });
    }
    let ours: HashSet<Path> = moves.iter().map(|m| m.to.clone()).collect();

    // Which partitions held data before this run, and what the write mode replaces.
    let depth = staged.partitions.first().map(|p| p.values.len()).unwrap_or_default();
    let mut existed: HashSet<String> = HashSet::new();
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    let deletes = if replaces_location(target) {
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
        old
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
        old
    };
    let partitions_added = staged
        .partitions
        .iter()
        .filter(|p| !existed.contains(&p.path))
        .cloned()
        .collect();
    let outcome = SinkOutcome {
        sink: staged.sink,
        write_mode: target.write_mode,
        rows: staged.rows,
        files: staged.files.len() as u64,
        bytes: staged.bytes,
        partitions: staged.partitions,
        partitions_added,
        paths: staged.files.into_iter().map(|f| f.final_path).collect(),
        objects_deleted: deletes.len() as u64,
    };
    Ok(CommitPlan {
        moves,
        deletes,
        dirs,
        staging: parse_path(&target.name, &staging_root(&target.location, run_id))?,
        outcome,
    })
}

/// Whether the write mode replaces everything under the location (Overwrite, or
/// OverwritePartitions without partition columns).
fn replaces_location(target: &SinkTarget) -> bool {
    target.write_mode == WriteMode::Overwrite
        || (target.write_mode == WriteMode::OverwritePartitions && target.partition_by.is_empty())
}

/// Carries out a commit plan: moves the staged files into place, then deletes what the write mode
/// replaces, then removes the staging folder. Moving before deleting means a commit cut short
/// shows old and new data side by side, never neither; every step is idempotent, so [`settle`]
/// finishes it from wherever it stopped.
pub async fn apply(target: &SinkTarget, plan: CommitPlan) -> Result<SinkOutcome, SinkError> {
    // 1. Move. Rename is cheap on a filesystem and a copy plus delete on S3; objects over S3's
    // single-copy limit are copied in parts.
    let store = &target.store;
    futures::stream::iter(&plan.moves)
        .map(|step| async move {
            let moved = match &target.s3 {
                Some(s3) if s3.needs_part_copy(step.bytes) => {
                    match s3.copy_in_parts(step.from.as_ref(), step.to.as_ref(), step.bytes).await {
                        Ok(()) => store.delete(&step.from).await,
                        Err(error) if store.head(&step.from).await.is_err() => Err(object_store::Error::NotFound {
                            path: step.from.to_string(),
                            source: Box::new(error),
                        }),
                        Err(error) => return Err(multipart_error(target, error)),
                    }
                }
                _ => store.rename(&step.from, &step.to).await,
            };
            match moved {
                Ok(()) => Ok(()),
                // A commit finished after it was cut short: the file is already in place.
                Err(object_store::Error::NotFound { .. }) if store.head(&step.to).await.is_ok() => Ok(()),
                Err(e) => Err(store_error(target, "move", &step.from, e)),
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<()>()
        .await?;

    // 2. Apply the write mode.
    delete_all(target, plan.deletes).await?;

    // 3. Drop the staging folder (empty now unless something else wrote into it).
    let leftovers = list(target, &plan.staging).await?;
    delete_all(target, leftovers).await?;
    abort_uploads(target, &plan.staging).await?;
    prune_empty_dirs(target, plan.dirs, &plan.staging).await;
    Ok(plan.outcome)
}

/// Moves the staged files into place, then applies the write mode, then removes the staging
/// folder ([`plan`] then [`apply`]).
pub async fn commit(target: &SinkTarget, staged: Staged, run_id: &str) -> Result<SinkOutcome, SinkError> {
    let plan = plan(target, staged, run_id).await?;
    apply(target, plan).await
}

/// Finishes the commit of a run that decided to commit and was cut short (killed, stopped, timed
/// out, or failed after the decision), from what the location holds: the files still in the
/// run's staging folder move into place, and the write mode replaces what is not the run's (its
/// files are those named after it, moved or still staged). Idempotent: on a finished commit it
/// changes nothing. The figures are the files found; the run's own report has the real ones.
pub async fn settle(target: &SinkTarget, run_id: &str) -> Result<SinkOutcome, SinkError> {
    check_run_id(&target.name, run_id)?;
    let staging = parse_path(&target.name, &staging_root(&target.location, run_id))?;
    let listing: Vec<object_store::ObjectMeta> =
        target
            .store
            .list(Some(&target.location.prefix))
            .try_collect()
            .await
            .map_err(|e| store_error(target, "list", &target.location.prefix, e))?;
    let staging_prefix = format!("{staging}/");
    let prefix = target.location.prefix.as_ref();
    let mut moves = Vec::new();
    let mut ours: HashSet<Path> = HashSet::new();
    for meta in &listing {
        if let Some(rel) = meta.location.as_ref().strip_prefix(&staging_prefix) {
            let to = parse_path(&target.name, &join_path(prefix, rel))?;
            ours.insert(to.clone());
            moves.push(Move {
                from: meta.location.clone(),
                to,
                bytes: meta.size,
            });
        } else if !in_staging(target, &meta.location)
            && meta
                .location
                .filename()
                .is_some_and(|name| written_by_run(name, run_id))
        {
            ours.insert(meta.location.clone());
        }
    }
    let our_folders: HashSet<String> = ours.iter().filter_map(parent_dir).collect();
    let mut dirs = BTreeSet::new();
    let mut deletes = Vec::new();
    for meta in &listing {
        let path = &meta.location;
        if ours.contains(path) || in_staging(target, path) {
            continue;
        }
        let replaced = match target.write_mode {
            WriteMode::Append => false,
            _ if replaces_location(target) => true,
            // OverwritePartitions: the other files of the folders this run wrote.
            _ => parent_dir(path).is_some_and(|dir| our_folders.contains(&dir)),
        };
        if replaced {
            dirs.extend(parent_dir(path));
            deletes.push(path.clone());
        }
    }
    let outcome = SinkOutcome {
        sink: target.name.clone(),
        write_mode: target.write_mode,
        rows: 0,
        files: ours.len() as u64,
        bytes: 0,
        partitions: Vec::new(),
        partitions_added: Vec::new(),
        paths: ours.iter().map(ToString::to_string).collect(),
        objects_deleted: deletes.len() as u64,
    };
    let plan = CommitPlan {
        moves,
        deletes,
        dirs,
        staging,
        outcome,
    };
    apply(target, plan).await
}

/// The run ids with a staging folder at the location.
pub async fn staged_runs(target: &SinkTarget) -> Result<Vec<String>, SinkError> {
    let root = parse_path(
        &target.name,
        &join_path(target.location.prefix.as_ref(), STAGING_FOLDER),
    )?;
    let listed = target
        .store
        .list_with_delimiter(Some(&root))
        .await
        .map_err(|e| store_error(target, "list", &root, e))?;
    Ok(listed
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(str::to_string))
        .collect())
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
