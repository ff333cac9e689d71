//! Looking at a source's objects themselves, for what the engine cannot say: which compression a
//! text object's bytes are in, which line of a JSON object is not JSON, and what a panic in a
//! reader said. Reads happen only where they are needed: compression sniffing reads a few bytes
//! of each object a run reads; locating a bad line happens only after a read failed.

use std::any::Any;
use std::io::{BufRead, BufReader};

use futures::{StreamExt, TryStreamExt};
use kglue_crds::common::Compression;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

use crate::crawl::sniff::{compression_of, decompressing};

/// How many bytes of an object the sniff of its compression reads (xz's magic number is six).
const MAGIC_BYTES: u64 = 6;

/// Sniffs in flight at once.
const CONCURRENCY: usize = 16;

/// The most bytes of an object read to find the line a JSON reader failed on; a larger object is
/// reported with the engine's message alone.
const LOCATE_LIMIT_BYTES: u64 = 256 << 20;

/// The whole-file compression each of `objects` is in, from its first bytes, in order.
pub async fn compressions(
    store: &dyn ObjectStore,
    objects: impl IntoIterator<Item = &ObjectMeta>,
) -> Result<Vec<(ObjectMeta, Compression)>, object_store::Error> {
    futures::stream::iter(objects)
        .map(|meta| async move {
            if meta.size == 0 {
                return Ok((meta.clone(), Compression::None));
            }
            let head = store.get_range(&meta.location, 0..MAGIC_BYTES.min(meta.size)).await?;
            Ok((meta.clone(), compression_of(&head)))
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await
}

/// The first line of a JSON-lines object that is not a JSON value, as `line N: <what is wrong>`
/// (lines count from 1 at the start of the decompressed object). `None` when every line parses,
/// or the object cannot be read here (then the engine's message stands alone).
pub async fn bad_json_line(store: &dyn ObjectStore, meta: &ObjectMeta, compression: Compression) -> Option<String> {
    if meta.size > LOCATE_LIMIT_BYTES {
        return None;
    }
    let bytes = store.get(&meta.location).await.ok()?.bytes().await.ok()?;
    tokio::task::spawn_blocking(move || {
        let reader = BufReader::new(decompressing(compression, &bytes).ok()?);
        for (index, line) in reader.split(b'\n').enumerate() {
            let number = index + 1;
            let line = match line {
                Ok(line) => line,
                Err(error) => return Some(format!("line {number}: {error}")),
            };
            let text = match std::str::from_utf8(&line) {
                Ok(text) => text,
                Err(error) => return Some(format!("line {number}: not UTF-8 text: {error}")),
            };
            if text.trim().is_empty() {
                continue;
            }
            if let Err(error) = serde_json::from_str::<serde_json::Value>(text) {
                // serde_json counts within the line; the line number is the object's.
                let what = error.to_string();
                let what = what.split(" at line ").next().unwrap_or(&what).to_string();
                return Some(format!("line {number}: {what} (column {})", error.column()));
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}

/// What a caught panic said.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::PutPayload;
    use object_store::memory::InMemory;
    use object_store::path::Path;

    use super::*;

    async fn put(store: &InMemory, key: &str, bytes: Vec<u8>) -> ObjectMeta {
        let path = Path::from(key);
        store.put(&path, PutPayload::from(bytes)).await.expect("put");
        store.head(&path).await.expect("head")
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).expect("compress");
        encoder.finish().expect("finish")
    }

    #[tokio::test]
    async fn compression_is_read_from_the_first_bytes() {
        let store = Arc::new(InMemory::new());
        let plain = put(&store, "a.csv", b"id\n1\n".to_vec()).await;
        let zipped = put(&store, "b.csv", gzip(b"id\n2\n")).await;
        let found = compressions(store.as_ref(), [&plain, &zipped]).await.expect("sniffed");
        let kinds: Vec<Compression> = found.into_iter().map(|(_, c)| c).collect();
        assert_eq!(kinds, [Compression::None, Compression::Gzip]);
    }

    #[tokio::test]
    async fn the_bad_json_line_is_counted_from_the_start_of_the_object() {
        let store = InMemory::new();
        let text = b"{\"id\": 1}\n\n{\"id\": 2}\n{\"id\": \n{\"id\": 4}\n".to_vec();
        let plain = put(&store, "a.json", text.clone()).await;
        let found = bad_json_line(&store, &plain, Compression::None)
            .await
            .expect("a bad line");
        assert!(found.starts_with("line 4: EOF while parsing"), "{found}");
        let zipped = put(&store, "b.json.gz", gzip(&text)).await;
        let found = bad_json_line(&store, &zipped, Compression::Gzip)
            .await
            .expect("a bad line");
        assert!(found.starts_with("line 4:"), "{found}");
        let good = put(&store, "c.json", b"{\"id\": 1}\n".to_vec()).await;
        assert_eq!(bad_json_line(&store, &good, Compression::None).await, None);
    }

    #[test]
    fn panic_messages_are_read_from_both_payload_kinds() {
        let caught = std::panic::catch_unwind(|| panic!("attempt to subtract with overflow")).expect_err("panics");
        assert_eq!(panic_message(caught.as_ref()), "attempt to subtract with overflow");
        let caught = std::panic::catch_unwind(|| panic!("{} {}", "formatted", 1)).expect_err("panics");
        assert_eq!(panic_message(caught.as_ref()), "formatted 1");
    }
}
