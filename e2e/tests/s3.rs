//! The local S3 server (`e2e/kglue-s3`, versitygw) through `object_store`, configured the way kglue
//! configures it: explicit endpoint, path-style requests, plain http, static keys, a region.
//! Each test starts its own server (about 0.1 s) on its own port.

use std::time::{Duration, SystemTime};

use futures::TryStreamExt;
use kglue_e2e::S3Server;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

fn start() -> S3Server {
    match S3Server::start() {
        Ok(server) => server,
        Err(error) => panic!("starting the S3 server failed: {error}"),
    }
}

#[tokio::test]
async fn write_list_read_and_delete_objects() -> Result<(), Box<dyn std::error::Error>> {
    let server = start();
    server.create_bucket("kglue-data")?;
    server.create_bucket("kglue-data")?; // exists already: still fine
    let store = server.store("kglue-data")?;
    let before = SystemTime::now() - Duration::from_secs(2);

    let csv = "id,name\n1,a\n2,b\n";
    for key in [
        "raw/year=2024/part-0.csv",
        "raw/year=2025/part-0.csv",
        "raw/top.csv",
        "other/x.csv",
    ] {
        store.put(&Path::from(key), PutPayload::from(csv)).await?;
    }

    // A recursive listing under a prefix: every object below it, with size and modification time.
    let mut listed: Vec<_> = store.list(Some(&Path::from("raw"))).try_collect().await?;
    listed.sort_by(|a, b| a.location.cmp(&b.location));
    let keys: Vec<_> = listed.iter().map(|meta| meta.location.as_ref()).collect();
    assert_eq!(
        keys,
        ["raw/top.csv", "raw/year=2024/part-0.csv", "raw/year=2025/part-0.csv"]
    );
    for meta in &listed {
        assert_eq!(meta.size, csv.len() as u64, "{}", meta.location);
        let modified = SystemTime::from(meta.last_modified);
        assert!(
            modified >= before,
            "{}: modified {:?}",
            meta.location,
            meta.last_modified
        );
        assert!(modified <= SystemTime::now() + Duration::from_secs(2));
        assert!(meta.e_tag.is_some(), "{}: no ETag", meta.location);
    }

    // One level with a delimiter: the partition directories as common prefixes.
    let level = store.list_with_delimiter(Some(&Path::from("raw"))).await?;
    let prefixes: Vec<_> = level.common_prefixes.iter().map(|p| p.as_ref()).collect();
    assert_eq!(prefixes, ["raw/year=2024", "raw/year=2025"]);
    let objects: Vec<_> = level.objects.iter().map(|meta| meta.location.as_ref()).collect();
    assert_eq!(objects, ["raw/top.csv"]);

    // Whole and ranged reads, and HEAD.
    let key = Path::from("raw/year=2024/part-0.csv");
    let bytes = store.get(&key).await?.bytes().await?;
    assert_eq!(bytes.as_ref(), csv.as_bytes());
    let range = store.get_range(&key, 8..11).await?;
    assert_eq!(range.as_ref(), b"1,a");
    let head = store.head(&key).await?;
    assert_eq!(head.size, csv.len() as u64);
    assert_eq!(head.last_modified, listed[1].last_modified);

    // Delete: gone from reads and listings; a missing key reads as NotFound.
    store.delete(&key).await?;
    match store.get(&key).await {
        Err(object_store::Error::NotFound { .. }) => {}
        other => panic!("expected NotFound after delete, got {other:?}"),
    }
    let left: Vec<_> = store.list(Some(&Path::from("raw"))).try_collect().await?;
    assert_eq!(left.len(), 2);
    Ok(())
}

#[tokio::test]
async fn a_wrong_secret_key_is_an_error() -> Result<(), Box<dyn std::error::Error>> {
    let server = start();
    server.create_bucket("kglue-secret")?;
    let store = server
        .store_builder("kglue-secret")
        .with_secret_access_key("not-the-secret")
        .build()?;
    let listing: Result<Vec<_>, _> = store.list(None).try_collect().await;
    let error = listing.expect_err("listing with a wrong secret key succeeded");
    eprintln!("wrong secret key: {error:?}");
    assert!(error.to_string().contains("SignatureDoesNotMatch"), "{error}");
    let put = store.put(&Path::from("x.csv"), PutPayload::from("x")).await;
    assert!(put.is_err(), "a write with a wrong secret key succeeded");
    Ok(())
}

#[tokio::test]
async fn a_missing_bucket_is_an_error() -> Result<(), Box<dyn std::error::Error>> {
    let server = start();
    let store = server.store("no-such-bucket")?;
    let listing: Result<Vec<_>, _> = store.list(None).try_collect().await;
    let error = listing.expect_err("listing a missing bucket succeeded");
    eprintln!("missing bucket: {error:?}");
    assert!(error.to_string().contains("NoSuchBucket"), "{error}");
    match store.get(&Path::from("x.csv")).await {
        Err(error @ object_store::Error::NotFound { .. }) => {
            assert!(error.to_string().contains("NoSuchBucket"), "{error}");
        }
        other => panic!("expected NotFound for a missing bucket, got {other:?}"),
    }
    Ok(())
}

/// A streaming job's batch record is created only where none exists (docs/streaming.md): the
/// server honours `If-None-Match: *`, so a second create of the same key is refused and the first
/// one's content stays.
#[tokio::test]
async fn a_create_only_put_is_refused_when_the_object_exists() -> Result<(), Box<dyn std::error::Error>> {
    let server = start();
    server.create_bucket("kglue-data")?;
    let store = server.store("kglue-data")?;
    let key = Path::from("checkpoint/batches/00000000000000000001.json");
    let create = object_store::PutOptions {
        mode: object_store::PutMode::Create,
        ..Default::default()
    };
    store.put_opts(&key, PutPayload::from("first"), create.clone()).await?;
    match store.put_opts(&key, PutPayload::from("second"), create).await {
        Err(object_store::Error::AlreadyExists { .. }) => {}
        other => panic!("a second create of {key} was not refused as existing: {other:?}"),
    }
    let kept = store.get(&key).await?.bytes().await?;
    assert_eq!(&kept[..], b"first");
    Ok(())
}
