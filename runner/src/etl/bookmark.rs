//! Job bookmarks: which objects of a source a run reads, and where the bookmark moves after it.
//!
//! A source's bookmark is a watermark `W` (the instant the last committed run listed the source)
//! and the keys of objects it processed that were modified within the safety band `B` before `W`.
//! Object stores make an object visible some time after its last-modified instant and record that
//! instant in whole seconds, so an object modified shortly before a listing may only show up in
//! the next one. The band absorbs that: every object modified before `W − B` was in an earlier
//! listing and has been processed; objects modified from `W − B` on are read unless their key is
//! in the bookmark. A run therefore reads every object exactly once as long as objects become
//! visible within `B` of their last-modified time (including clock skew between the store and the
//! runner). An object rewritten under the same key gets a new last-modified time and is read again,
//! as in Glue.
//!
//! The runner only proposes the next bookmark; it is committed (by the operator, or by `kglue run`
//! locally) after the run's outputs are, so a bookmark never passes data whose output was lost.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kglue_crds::job::{JobBookmark, SourceBookmark};
use serde::{Deserialize, Serialize};

/// The safety band when the Job does not set `bookmark.safetyBandSeconds`.
pub const DEFAULT_SAFETY_BAND_SECONDS: i64 = 60;

/// An object as bookmarks see it: its key and last-modified instant in microseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen<'a> {
    /// The object's key (its path in the store).
    pub key: &'a str,
    /// Last modified, microseconds since the Unix epoch.
    pub modified_micros: i64,
}

/// Whether an object must be read, given the source's bookmark (`None`: read everything).
pub fn is_new(object: &Seen<'_>, bookmark: Option<&SourceBookmark>, band_seconds: i64) -> bool {
    let Some(bookmark) = bookmark else { return true };
    let Some(watermark) = bookmark.watermark.as_ref() else {
        return true;
    };
    let band_start = watermark.0.as_microsecond() - band_seconds * 1_000_000;
    object.modified_micros >= band_start && !bookmark.recent_keys.iter().any(|k| k == object.key)
}

/// The most bytes of keys one Job bookmark keeps, its sources together. Status holds the current
/// bookmark and ten replaced ones, and a RunResult two, so this bounds their share of the object
/// (etcd refuses objects over 1.5 MiB): 11 × 8 KiB.
pub const MAX_RECENT_KEY_BYTES: usize = 8 * 1024;

/// Which objects of a source a run reads, and the source's bookmark after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Pick {
    /// Indices of the objects to read.
    pub selected: Vec<usize>,
    /// The bookmark after the run, had it processed the selected objects.
    pub next: SourceBookmark,
    /// New objects left for a later run (see [`pick`]).
    pub deferred: usize,
}

/// Picks what a run reads from `objects` (listed at `listed_at`): every object [`is_new`]
/// selects. The next bookmark keeps the keys of objects inside the safety band; when those keys
/// would pass `key_budget` bytes (many objects landing within the band), the new objects inside
/// the band are deferred instead: this run reads the new objects modified before the band, and
/// the next run, once they are older than the band, reads the deferred ones, which need no keys
/// then. Either way each object is read once. `key_budget` is `None` for a run whose bookmark does
/// not move (option Pause or Disable): it reads every new object.
pub fn pick(
    objects: &[Seen<'_>],
    bookmark: Option<&SourceBookmark>,
    listed_at: Timestamp,
    band_seconds: i64,
    key_budget: Option<usize>,
) -> Pick {
    let band_start = listed_at.as_microsecond() - band_seconds * 1_000_000;
    let new: Vec<bool> = objects.iter().map(|o| is_new(o, bookmark, band_seconds)).collect();
    let in_band = |o: &Seen<'_>| o.modified_micros >= band_start;
    let all_keys: usize = objects.iter().filter(|o| in_band(o)).map(|o| o.key.len()).sum();
    let defer = key_budget.is_some_and(|budget| all_keys > budget);
    let mut selected = Vec::new();
    let mut deferred = 0;
    let mut recent = BTreeSet::new();
    for (index, object) in objects.iter().enumerate() {
        let read = new[index] && !(defer && in_band(object));
        if read {
            selected.push(index);
        } else if new[index] {
            deferred += 1;
        }
        // Inside the band, the keys of what is processed: read now, or read before.
        if in_band(object) && (read || !new[index]) {
            recent.insert(object.key.to_string());
        }
    }
    Pick {
        selected,
        next: SourceBookmark {
            watermark: Some(MicroTime(listed_at)),
            recent_keys: recent.into_iter().collect(),
            offsets: Vec::new(),
            key: Vec::new(),
        },
        deferred,
    }
}

/// Why the bookmark file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BookmarkFileError {
    /// Reading or writing failed.
    #[error("bookmark file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a bookmark file.
    #[error("bookmark file {path} is not valid: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A rewind named a run the history does not have.
    #[error("bookmark file {path} has no run {run_id:?} to rewind to; runs recorded: {known}")]
    UnknownRun {
        /// The file.
        path: PathBuf,
        /// The run asked for.
        run_id: String,
        /// The runs the history has.
        known: String,
    },
}

/// How many runs the local bookmark file remembers for rewinds.
pub const BOOKMARK_HISTORY_LIMIT: usize = 20;

/// A committed run in the bookmark history: the bookmark it started from, so it can be rewound.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BookmarkHistoryEntry {
    /// The run.
    pub run_id: String,
    /// The bookmark the run read from (`None`: it read everything).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_from: Option<JobBookmark>,
}

/// The local stand-in for a Job's `status.bookmark`: the committed bookmark and, newest first, the
/// bookmarks recent runs started from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BookmarkFile {
    /// The committed bookmark; `None` after a reset or before the first run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bookmark: Option<JobBookmark>,
    /// Recent committed runs, newest first, at most [`BOOKMARK_HISTORY_LIMIT`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<BookmarkHistoryEntry>,
}

impl BookmarkFile {
    /// Reads the file; a missing file is an empty bookmark (the first run reads everything).
    pub fn load(path: &Path) -> Result<Self, BookmarkFileError> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| BookmarkFileError::Invalid {
                path: path.to_path_buf(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(BookmarkFileError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Writes the file atomically (a temporary file renamed over it), so a crash never leaves a
    /// half-written bookmark.
    pub fn save(&self, path: &Path) -> Result<(), BookmarkFileError> {
        let io = |source| BookmarkFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let text = serde_json::to_string_pretty(self).map_err(|e| BookmarkFileError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, text + "\n").map_err(io)?;
        std::fs::rename(&temporary, path).map_err(io)
    }

    /// Records a committed run: its proposed bookmark becomes the committed one.
    pub fn commit(&mut self, run_id: &str, started_from: Option<JobBookmark>, mut next: JobBookmark, now: Timestamp) {
        next.run_id = Some(run_id.to_string());
        next.committed_at = Some(Time(now));
        self.bookmark = Some(next);
        self.history.retain(|e| e.run_id != run_id);
        self.history.insert(
            0,
            BookmarkHistoryEntry {
                run_id: run_id.to_string(),
                started_from,
            },
        );
        self.history.truncate(BOOKMARK_HISTORY_LIMIT);
    }

    /// Forgets the bookmark: the next run reads everything (Glue's reset).
    pub fn reset(&mut self) {
        self.bookmark = None;
    }

    /// Moves the bookmark back to where run `run_id` started (Glue's rewind): the next run reads
    /// again what that run and later ones read.
    pub fn rewind(&mut self, run_id: &str, path: &Path) -> Result<(), BookmarkFileError> {
        let entry = self
            .history
            .iter()
            .find(|e| e.run_id == run_id)
            .ok_or_else(|| BookmarkFileError::UnknownRun {
                path: path.to_path_buf(),
                run_id: run_id.to_string(),
                known: self
                    .history
                    .iter()
                    .map(|e| e.run_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        self.bookmark = entry.started_from.clone();
        Ok(())
    }
}

/// The bookmark of one source, by the source's name.
pub fn source_bookmark<'a>(bookmark: Option<&'a JobBookmark>, source: &str) -> Option<&'a SourceBookmark> {
    bookmark.and_then(|b| b.sources.get(source))
}

/// A job bookmark from per-source bookmarks.
pub fn job_bookmark(sources: BTreeMap<String, SourceBookmark>) -> JobBookmark {
    JobBookmark {
        run_id: None,
        committed_at: None,
        sources,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).expect("valid instant")
    }

    fn seen(key: &str, seconds: i64) -> Seen<'_> {
        Seen {
            key,
            modified_micros: seconds * SECOND,
        }
    }

    /// The bookmark after a first run that read all of `objects`.
    fn advance<'a>(objects: impl IntoIterator<Item = Seen<'a>>, listed_at: Timestamp, band: i64) -> SourceBookmark {
        let objects: Vec<Seen<'a>> = objects.into_iter().collect();
        let picked = pick(&objects, None, listed_at, band, Some(MAX_RECENT_KEY_BYTES));
        assert_eq!(picked.selected.len(), objects.len());
        picked.next
    }

    #[test]
    fn many_objects_inside_the_band_are_deferred_then_read_once_with_a_bounded_bookmark() {
        // 5,000 objects land within a second, inside the band of the run at 110; more land later.
        let keys: Vec<String> = (0..5000)
            .map(|i| format!("landing/orders/2024/05/01/part-{i:05}.json"))
            .collect();
        let mut objects: Vec<(&str, i64, i64)> = keys.iter().map(|k| (k.as_str(), 100, 100)).collect();
        objects.push(("landing/orders/early.json", 20, 20));
        objects.push(("landing/orders/later.json", 150, 150));
        let band = 60;
        let visible = |now: i64| -> Vec<Seen<'_>> {
            objects
                .iter()
                .filter(|(_, _, v)| *v <= now)
                .map(|(key, modified, _)| seen(key, *modified))
                .collect()
        };
        let budget = Some(MAX_RECENT_KEY_BYTES);

        // Run at 110: the 5,000 are inside its band and their keys would pass the budget, so they
        // wait; the early object is read.
        let first = pick(&visible(110), None, at(110), band, budget);
        assert_eq!(first.selected.len(), 1);
        assert_eq!(first.deferred, 5000);
        assert!(first.next.recent_keys.is_empty());
        // Run at 130: still inside the band; the budget still holds them back; nothing read twice.
        let second = pick(&visible(130), Some(&first.next), at(130), band, budget);
        assert_eq!((second.selected.len(), second.deferred), (0, 5000));
        // Run at 170: they are older than the band: all read, with no keys to keep for them; the
        // later object inside the band is read and kept.
        let third = pick(&visible(170), Some(&second.next), at(170), band, budget);
        assert_eq!((third.selected.len(), third.deferred), (5001, 0));
        assert_eq!(third.next.recent_keys, ["landing/orders/later.json"]);
        let bytes: usize = [&first.next, &second.next, &third.next]
            .iter()
            .map(|b| b.recent_keys.iter().map(String::len).sum::<usize>())
            .max()
            .unwrap_or_default();
        assert!(bytes <= MAX_RECENT_KEY_BYTES);

        // The same with the simulation's late arrivals: every object read exactly once.
        let reads = simulate_within(&objects, &[110, 130, 170, 240], band, budget);
        assert_eq!(reads.len(), objects.len());
        assert!(reads.values().all(|n| *n == 1));

        // A run whose bookmark does not move (Pause) reads them at once.
        let paused = pick(&visible(110), None, at(110), band, None);
        assert_eq!((paused.selected.len(), paused.deferred), (5001, 0));
    }

    /// Simulates runs over a store where objects become visible some time after their
    /// last-modified instant; returns how often each object was read.
    fn simulate(objects: &[(&str, i64, i64)], run_times: &[i64], band: i64) -> BTreeMap<String, usize> {
        simulate_within(objects, run_times, band, Some(MAX_RECENT_KEY_BYTES))
    }

    fn simulate_within(
        objects: &[(&str, i64, i64)],
        run_times: &[i64],
        band: i64,
        budget: Option<usize>,
    ) -> BTreeMap<String, usize> {
        let mut reads: BTreeMap<String, usize> = BTreeMap::new();
        let mut bookmark: Option<SourceBookmark> = None;
        for &now in run_times {
            let visible: Vec<Seen<'_>> = objects
                .iter()
                .filter(|(_, _, visible_at)| *visible_at <= now)
                .map(|(key, modified, _)| seen(key, *modified))
                .collect();
            let picked = pick(&visible, bookmark.as_ref(), at(now), band, budget);
            for &index in &picked.selected {
                *reads.entry(visible[index].key.to_string()).or_default() += 1;
            }
            bookmark = Some(picked.next);
        }
        reads
    }

    #[test]
    fn three_runs_read_every_object_exactly_once_with_late_and_same_second_arrivals() {
        // (key, last modified, visible from): `late` was modified before the second run listed
        // but became visible only after; `same-second` shares its second with the listing.
        let objects = [
            ("a", 100, 100),
            ("b", 150, 150),
            ("late", 195, 230),
            ("same-second", 200, 200),
            ("c", 250, 250),
            ("d", 299, 299),
        ];
        let reads = simulate(&objects, &[120, 200, 300], 60);
        for (key, _, _) in objects {
            assert_eq!(reads.get(key), Some(&1), "{key} read {:?} times", reads.get(key));
        }
    }

    #[test]
    fn without_a_band_a_late_object_is_skipped() {
        // Shows why the band exists: with band 0, an object visible after the listing that
        // followed its modification is never read.
        let reads = simulate(&[("late", 195, 230)], &[200, 300], 0);
        assert_eq!(reads.get("late"), None);
    }

    #[test]
    fn the_bookmark_keeps_only_keys_inside_the_band() {
        let bookmark = advance([seen("old", 10), seen("edge", 240), seen("new", 299)], at(300), 60);
        assert_eq!(bookmark.recent_keys, ["edge", "new"]);
        assert_eq!(bookmark.watermark, Some(MicroTime(at(300))));
    }

    #[test]
    fn a_rewritten_object_is_read_again() {
        let bookmark = advance([seen("a", 100)], at(200), 60);
        assert!(!is_new(&seen("a", 100), Some(&bookmark), 60));
        assert!(is_new(&seen("a", 250), Some(&bookmark), 60));
    }

    #[test]
    fn reset_and_rewind_restore_earlier_bookmarks() {
        let path = Path::new("bookmarks.json");
        let mut file = BookmarkFile::default();
        let first = job_bookmark(BTreeMap::from([("orders".to_string(), advance([], at(100), 60))]));
        file.commit("run-1", None, first.clone(), at(101));
        let second = job_bookmark(BTreeMap::from([("orders".to_string(), advance([], at(200), 60))]));
        file.commit("run-2", file.bookmark.clone(), second, at(201));
        assert_eq!(file.history.len(), 2);

        file.rewind("run-2", path).expect("known run");
        let rewound = file.bookmark.clone().expect("run-2 started from run-1's bookmark");
        assert_eq!(rewound.sources, first.sources);
        assert_eq!(rewound.run_id.as_deref(), Some("run-1"));

        file.rewind("run-1", path).expect("known run");
        assert_eq!(file.bookmark, None, "run-1 started from nothing");

        let error = file.rewind("run-9", path).expect_err("unknown");
        assert!(error.to_string().contains("runs recorded: run-2, run-1"), "{error}");

        file.commit("run-3", None, first, at(301));
        file.reset();
        assert_eq!(file.bookmark, None);
    }

    #[test]
    fn the_file_round_trips_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bookmarks.json");
        assert_eq!(
            BookmarkFile::load(&path).expect("missing is empty"),
            BookmarkFile::default()
        );
        let mut file = BookmarkFile::default();
        file.commit(
            "run-1",
            None,
            job_bookmark(BTreeMap::from([(
                "orders".to_string(),
                advance([seen("k", 99)], at(100), 60),
            )])),
            at(101),
        );
        file.save(&path).expect("saved");
        assert_eq!(BookmarkFile::load(&path).expect("loads"), file);
        std::fs::write(&path, "{not json").expect("write");
        let error = BookmarkFile::load(&path).expect_err("invalid");
        assert!(error.to_string().contains("is not valid"), "{error}");
    }
}
