//! Container logs for the kubelet API (`containerLogs`, which `kubectl logs` reaches through the
//! API server): an index from namespace/pod/container to its log file, and reading that file the
//! way the kubelet reads a container's log (`tailLines`, `limitBytes`, `follow`, `previous`).
//!
//! A container's log file is appended to across restarts, so the index remembers where each run
//! began in the file: the current run is served by default, the one before it with `previous`.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

/// How often a follower looks for new output (the file is polled, which is cheap: one `stat`).
const FOLLOW_POLL: Duration = Duration::from_millis(50);
/// The largest piece of a log sent at once.
const CHUNK: usize = 64 * 1024;

/// One container's runs, as the pod worker reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Runs {
    /// Byte offset in the log file where each run began, oldest first.
    pub starts: Vec<u64>,
    /// Whether the last run is still going.
    pub running: bool,
}

/// One container's log file and its runs.
#[derive(Debug)]
pub struct ContainerLog {
    path: PathBuf,
    runs: watch::Sender<Runs>,
}

impl ContainerLog {
    fn new(path: PathBuf) -> ContainerLog {
        // A log that already exists (the agent restarted) is served as one finished run.
        let starts = if path.exists() { vec![0] } else { Vec::new() };
        ContainerLog {
            path,
            runs: watch::Sender::new(Runs { starts, running: false }),
        }
    }

    /// Called right before a run's process starts: its output begins at the file's current end.
    pub fn started(&self) {
        let offset = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        self.runs.send_modify(|runs| {
            runs.starts.push(offset);
            runs.running = true;
        });
    }

    /// Called once a run's process has exited (and its output is all in the file).
    pub fn exited(&self) {
        self.runs.send_modify(|runs| runs.running = false);
    }
}

#[derive(Debug)]
struct PodLogs {
    uid: String,
    containers: HashMap<String, Arc<ContainerLog>>,
}

/// Every pod of this node whose logs can be read, by namespace and name.
#[derive(Debug, Clone, Default)]
pub struct Index {
    pods: Arc<Mutex<HashMap<(String, String), PodLogs>>>,
}

/// Why a log cannot be served; the messages are the kubelet's.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// No such pod on this node (404).
    #[error("pod \"{0}\" does not exist")]
    NoPod(String),
    /// No such container in the pod (404).
    #[error("container \"{container}\" not found in pod \"{pod}\"")]
    NoContainer {
        /// The pod (`namespace/name`).
        pod: String,
        /// The container asked for.
        container: String,
    },
    /// The container has not started yet (400).
    #[error("container \"{container}\" in pod \"{pod}\" is waiting to start - no logs yet")]
    Waiting {
        /// The pod.
        pod: String,
        /// The container.
        container: String,
    },
    /// `previous` asked for a run before the first one (400).
    #[error("previous terminated container \"{container}\" in pod \"{pod}\" not found")]
    NoPrevious {
        /// The pod.
        pod: String,
        /// The container.
        container: String,
    },
    /// The log file could not be read (500).
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl Index {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<(String, String), PodLogs>) -> T) -> T {
        let mut guard = match self.pods.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// Makes a pod's containers readable; `containers` are (name, log file). A pod recreated under
    /// the same name replaces the old one.
    pub fn add_pod(&self, namespace: &str, name: &str, uid: &str, containers: Vec<(String, PathBuf)>) {
        let containers = containers
            .into_iter()
            .map(|(container, path)| (container, Arc::new(ContainerLog::new(path))))
            .collect();
        let key = (namespace.to_string(), name.to_string());
        let logs = PodLogs {
            uid: uid.to_string(),
            containers,
        };
        self.with(|pods| pods.insert(key, logs));
    }

    /// Forgets a pod once it is gone from the API, unless a newer pod of that name took its place.
    pub fn remove_pod(&self, namespace: &str, name: &str, uid: &str) {
        let key = (namespace.to_string(), name.to_string());
        self.with(|pods| {
            if pods.get(&key).is_some_and(|p| p.uid == uid) {
                pods.remove(&key);
            }
        });
    }

    /// One container of a pod known to the index.
    pub fn container(&self, namespace: &str, name: &str, uid: &str, container: &str) -> Option<Arc<ContainerLog>> {
        let key = (namespace.to_string(), name.to_string());
        self.with(|pods| {
            pods.get(&key)
                .filter(|p| p.uid == uid)
                .and_then(|p| p.containers.get(container).cloned())
        })
    }

    fn lookup(&self, namespace: &str, name: &str, container: &str) -> Result<Arc<ContainerLog>, LogError> {
        let key = (namespace.to_string(), name.to_string());
        let pod = format!("{namespace}/{name}");
        self.with(|pods| {
            let logs = pods.get(&key).ok_or_else(|| LogError::NoPod(pod.clone()))?;
            logs.containers
                .get(container)
                .cloned()
                .ok_or_else(|| LogError::NoContainer {
                    pod,
                    container: container.to_string(),
                })
        })
    }

    /// Opens a container's log as the options say; the stream then yields its content.
    pub fn open(&self, namespace: &str, name: &str, container: &str, options: &Options) -> Result<LogStream, LogError> {
        let log = self.lookup(namespace, name, container)?;
        let pod = format!("{namespace}/{name}");
        let runs = log.runs.subscribe();
        let snapshot = runs.borrow().clone();
        let io = |source| LogError::Io {
            path: log.path.clone(),
            source,
        };
        let length = match std::fs::metadata(&log.path) {
            Ok(metadata) => metadata.len(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => 0,
            Err(error) => return Err(io(error)),
        };
        let count = snapshot.starts.len();
        // The run to read: [start, end), where the end of the current run is wherever the file
        // ends (it may still grow when following).
        let (run, start, end) = if options.previous {
            if count < 2 {
                return Err(LogError::NoPrevious {
                    pod,
                    container: container.to_string(),
                });
            }
            (count - 2, snapshot.starts[count - 2], Some(snapshot.starts[count - 1]))
        } else {
            let Some(&start) = snapshot.starts.last() else {
                return Err(LogError::Waiting {
                    pod,
                    container: container.to_string(),
                });
            };
            (count - 1, start, None)
        };
        let end_now = end.unwrap_or(length).min(length);
        let start = match options.tail_lines {
            Some(lines) => tail_offset(&log.path, start.min(end_now), end_now, lines).map_err(io)?,
            None => start.min(end_now),
        };
        Ok(LogStream {
            path: log.path.clone(),
            offset: start,
            end,
            remaining: options.limit_bytes,
            follow: options.follow && end.is_none(),
            run,
            runs,
            done: false,
        })
    }
}

/// What a `containerLogs` request asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Keep streaming new output until the container's run ends.
    pub follow: bool,
    /// The run before the current one.
    pub previous: bool,
    /// Only the last N lines.
    pub tail_lines: Option<u64>,
    /// At most N bytes in all.
    pub limit_bytes: Option<u64>,
}

/// The content of one run of a container's log, read in chunks.
#[derive(Debug)]
pub struct LogStream {
    path: PathBuf,
    offset: u64,
    /// Where the run ends, when it is over and a later one began (`previous`).
    end: Option<u64>,
    remaining: Option<u64>,
    follow: bool,
    /// Which run this is (its index in [`Runs::starts`]).
    run: usize,
    runs: watch::Receiver<Runs>,
    done: bool,
}

impl LogStream {
    /// The next chunk, or `None` at the end: the end of the file (or of the run), or, when
    /// following, once the run is over and all its output was sent. A follower whose pod is
    /// forgotten (deleted) also ends, since the pod worker then drops the sender.
    pub async fn next_chunk(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        loop {
            if self.done || self.remaining == Some(0) {
                return None;
            }
            // Seen before reading, so output written before the run ended is never missed.
            let over = {
                let runs = self.runs.borrow_and_update();
                !(runs.running && runs.starts.len() == self.run + 1)
            };
            match self.read_chunk() {
                Err(error) => {
                    self.done = true;
                    return Some(Err(error));
                }
                Ok(Some(chunk)) => return Some(Ok(chunk)),
                Ok(None) if !self.follow || over => return None,
                Ok(None) => {
                    // Wake up on new output (polled) or when the run ends; a dropped sender (the
                    // pod is gone) ends the stream after one last read.
                    tokio::select! {
                        () = tokio::time::sleep(FOLLOW_POLL) => {}
                        changed = self.runs.changed() => if changed.is_err() { self.follow = false },
                    }
                }
            }
        }
    }

    /// Reads what is there from the current offset, up to the run's end, the byte limit and
    /// [`CHUNK`]; `None` when there is nothing new.
    fn read_chunk(&mut self) -> Result<Option<Bytes>, std::io::Error> {
        let mut file = match std::fs::File::open(&self.path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        let length = file.metadata()?.len();
        let end = self.end.map_or(length, |end| end.min(length));
        let mut want = end.saturating_sub(self.offset).min(CHUNK as u64);
        if let Some(remaining) = self.remaining {
            want = want.min(remaining);
        }
        if want == 0 {
            return Ok(None);
        }
        file.seek(SeekFrom::Start(self.offset))?;
        let mut buffer = Vec::with_capacity(usize::try_from(want).unwrap_or(CHUNK));
        file.take(want).read_to_end(&mut buffer)?;
        if buffer.is_empty() {
            return Ok(None);
        }
        let read = buffer.len() as u64;
        self.offset += read;
        if let Some(remaining) = self.remaining.as_mut() {
            *remaining = remaining.saturating_sub(read);
        }
        Ok(Some(Bytes::from(buffer)))
    }
}

/// Where the last `lines` lines of `[start, end)` of a file begin. A last line without a newline
/// counts as a line. Reads backwards in chunks, so a large log costs only its tail.
pub fn tail_offset(path: &Path, start: u64, end: u64, lines: u64) -> Result<u64, std::io::Error> {
    if lines == 0 {
        return Ok(end);
    }
    if end <= start {
        return Ok(start);
    }
    let mut file = std::fs::File::open(path)?;
    let mut buffer = vec![0u8; CHUNK];
    // The newline that ends the last line does not start a new one.
    let mut position = end;
    let mut skip_final = true;
    let mut found = 0u64;
    while position > start {
        let size = (position - start).min(CHUNK as u64);
        let chunk_start = position - size;
        let chunk = &mut buffer[..usize::try_from(size).unwrap_or(CHUNK)];
        file.seek(SeekFrom::Start(chunk_start))?;
        file.read_exact(chunk)?;
        for (i, byte) in chunk.iter().enumerate().rev() {
            let at = chunk_start + i as u64;
            if *byte != b'\n' {
                skip_final = false;
                continue;
            }
            if skip_final && at + 1 == end {
                skip_final = false;
                continue;
            }
            found += 1;
            if found == lines {
                return Ok(at + 1);
            }
        }
        position = chunk_start;
    }
    Ok(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(contents: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.log");
        std::fs::write(&path, contents).expect("write");
        (dir, path)
    }

    #[test]
    fn tail_counts_lines_from_the_end() {
        let (_dir, path) = write("one\ntwo\nthree\n");
        let at = |n| tail_offset(&path, 0, 14, n).expect("tail");
        assert_eq!(at(0), 14);
        assert_eq!(at(1), 8);
        assert_eq!(at(2), 4);
        assert_eq!(at(3), 0);
        assert_eq!(at(10), 0);
        let (_dir, path) = write("one\ntwo");
        assert_eq!(tail_offset(&path, 0, 7, 1).expect("tail"), 4);
        // Only within the run: the run starts at "two".
        let (_dir, path) = write("one\ntwo\nthree\n");
        assert_eq!(tail_offset(&path, 4, 14, 5).expect("tail"), 4);
    }

    async fn read_all(mut stream: LogStream) -> String {
        let mut out = Vec::new();
        while let Some(chunk) = stream.next_chunk().await {
            out.extend_from_slice(&chunk.expect("chunk"));
        }
        String::from_utf8(out).expect("utf-8")
    }

    #[tokio::test]
    async fn runs_previous_limit_and_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.log");
        let index = Index::default();
        index.add_pod("ns", "p", "u1", vec![("c".into(), path.clone())]);
        let log = index.container("ns", "p", "u1", "c").expect("container");
        let options = Options::default();
        assert!(matches!(
            index.open("ns", "p", "c", &options),
            Err(LogError::Waiting { .. })
        ));
        assert!(matches!(index.open("ns", "q", "c", &options), Err(LogError::NoPod(_))));
        let error = index.open("ns", "p", "nope", &options).expect_err("no container");
        assert_eq!(error.to_string(), "container \"nope\" not found in pod \"ns/p\"");
        log.started();
        std::fs::write(&path, "first\n").expect("write");
        log.exited();
        log.started();
        std::fs::write(&path, "first\nsecond\nthird\n").expect("write");
        log.exited();
        let read = |options: Options| index.open("ns", "p", "c", &options).expect("open");
        assert_eq!(read_all(read(Options::default())).await, "second\nthird\n");
        let previous = Options {
            previous: true,
            ..Default::default()
        };
        assert_eq!(read_all(read(previous)).await, "first\n");
        let limited = Options {
            limit_bytes: Some(3),
            ..Default::default()
        };
        assert_eq!(read_all(read(limited)).await, "sec");
        let tail = Options {
            tail_lines: Some(1),
            follow: true,
            ..Default::default()
        };
        assert_eq!(read_all(read(tail)).await, "third\n");
        index.remove_pod("ns", "p", "other-uid");
        assert!(index.open("ns", "p", "c", &Options::default()).is_ok());
        index.remove_pod("ns", "p", "u1");
        assert!(matches!(
            index.open("ns", "p", "c", &Options::default()),
            Err(LogError::NoPod(_))
        ));
    }

    #[tokio::test]
    async fn follow_streams_until_the_run_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.log");
        let index = Index::default();
        index.add_pod("ns", "p", "u", vec![("c".into(), path.clone())]);
        let log = index.container("ns", "p", "u", "c").expect("container");
        log.started();
        std::fs::write(&path, "a\n").expect("write");
        let options = Options {
            follow: true,
            ..Default::default()
        };
        let mut stream = index.open("ns", "p", "c", &options).expect("open");
        let first = stream.next_chunk().await.expect("chunk").expect("read");
        assert_eq!(&first[..], b"a\n");
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            std::fs::write(&path, "a\nb\n").expect("write");
            tokio::time::sleep(Duration::from_millis(100)).await;
            log.exited();
        });
        let rest = tokio::time::timeout(Duration::from_secs(5), read_all(stream))
            .await
            .expect("follow ended");
        assert_eq!(rest, "b\n");
        writer.await.expect("writer");
    }
}
