use std::sync::Mutex;

use object_store::client::{HttpError, HttpResponse, HttpService};

use super::*;

#[test]
fn copy_parts_cover_every_byte_once_in_order() {
    let size = 11 * COPY_PART_BYTES + 7;
    let parts = copy_parts(size, COPY_PART_BYTES);
    assert_eq!(parts.len(), 12);
    assert_eq!(parts[0], (1, 0, COPY_PART_BYTES - 1));
    assert_eq!(parts[11], (12, 11 * COPY_PART_BYTES, size - 1));
    for pair in parts.windows(2) {
        assert_eq!(pair[1].1, pair[0].2 + 1, "contiguous");
        assert_eq!(pair[1].0, pair[0].0 + 1, "numbered from 1");
    }
    assert!(copy_parts(0, COPY_PART_BYTES).is_empty());
    // Parts are never below S3's minimum, whatever is asked.
    assert_eq!(copy_parts(12 << 20, 1).len(), 3);
}

/// A request as the server got it: method, path, query and the copy headers.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: String,
    path: String,
    query: String,
    range: Option<String>,
    source: Option<String>,
    body: String,
}

/// An S3 server that answers from a script and records what it was asked.
#[derive(Debug)]
struct Scripted {
    answers: Mutex<Vec<(u16, String)>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

#[async_trait::async_trait]
impl HttpService for Scripted {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        assert!(
            header("authorization").is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256")),
            "signed"
        );
        let body = request
            .body()
            .as_bytes()
            .map(|b| String::from_utf8_lossy(b).to_string())
            .unwrap_or_default();
        self.seen.lock().expect("lock").push(Seen {
            method: request.method().to_string(),
            path: request.uri().path().to_string(),
            query: request.uri().query().unwrap_or_default().to_string(),
            range: header("x-amz-copy-source-range"),
            source: header("x-amz-copy-source"),
            body,
        });
        let (status, text) = {
            let mut answers = self.answers.lock().expect("lock");
            if answers.is_empty() {
                (500, "no answer scripted".to_string())
            } else {
                answers.remove(0)
            }
        };
        Ok(http::Response::builder()
            .status(status)
            .body(text.into())
            .expect("response"))
    }
}

fn requests(answers: Vec<(u16, &str)>) -> (S3Requests, Arc<Mutex<Vec<Seen>>>) {
    let builder = AmazonS3Builder::new()
        .with_bucket_name("lake")
        .with_region("eu-west-1")
        .with_endpoint("http://127.0.0.1:1")
        .with_allow_http(true)
        .with_access_key_id("key")
        .with_secret_access_key("secret");
    let store = Arc::new(builder.clone().build().expect("store"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut s3 = S3Requests::new(&builder, store).expect("requests");
    s3.client = HttpClient::new(Scripted {
        answers: Mutex::new(answers.into_iter().map(|(s, t)| (s, t.to_string())).collect()),
        seen: seen.clone(),
    });
    (s3, seen)
}

#[tokio::test]
async fn an_object_over_the_limit_is_copied_part_by_part_then_completed() {
    let size = 2 * COPY_PART_BYTES + 100;
    let (s3, seen) = requests(vec![
        (
            200,
            "<InitiateMultipartUploadResult><Bucket>lake</Bucket><Key>t/a.parquet</Key><UploadId>u-1</UploadId></InitiateMultipartUploadResult>",
        ),
        (200, "<CopyPartResult><ETag>\"e1\"</ETag></CopyPartResult>"),
        (200, "<CopyPartResult><ETag>\"e2\"</ETag></CopyPartResult>"),
        (200, "<CopyPartResult><ETag>\"e3\"</ETag></CopyPartResult>"),
        (
            200,
            "<CompleteMultipartUploadResult><ETag>\"x\"</ETag></CompleteMultipartUploadResult>",
        ),
    ]);
    assert!(s3.needs_part_copy(COPY_OBJECT_LIMIT + 1));
    assert!(!s3.needs_part_copy(COPY_OBJECT_LIMIT));
    s3.copy_in_parts("t/_kglue_staging/jr-1/a.parquet", "t/a.parquet", size)
        .await
        .expect("copied");
    let seen = seen.lock().expect("lock").clone();
    let summary: Vec<(String, String, String)> = seen
        .iter()
        .map(|s| (s.method.clone(), s.path.clone(), s.query.clone()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("POST".into(), "/lake/t/a.parquet".into(), "uploads=".into()),
            (
                "PUT".into(),
                "/lake/t/a.parquet".into(),
                "partNumber=1&uploadId=u-1".into()
            ),
            (
                "PUT".into(),
                "/lake/t/a.parquet".into(),
                "partNumber=2&uploadId=u-1".into()
            ),
            (
                "PUT".into(),
                "/lake/t/a.parquet".into(),
                "partNumber=3&uploadId=u-1".into()
            ),
            ("POST".into(), "/lake/t/a.parquet".into(), "uploadId=u-1".into()),
        ]
    );
    let ranges: Vec<Option<String>> = seen[1..4].iter().map(|s| s.range.clone()).collect();
    assert_eq!(
        ranges,
        vec![
            Some(format!("bytes=0-{}", COPY_PART_BYTES - 1)),
            Some(format!("bytes={}-{}", COPY_PART_BYTES, 2 * COPY_PART_BYTES - 1)),
            Some(format!("bytes={}-{}", 2 * COPY_PART_BYTES, size - 1)),
        ]
    );
    assert!(
        seen[1..4]
            .iter()
            .all(|s| s.source.as_deref() == Some("/lake/t/_kglue_staging/jr-1/a.parquet"))
    );
    assert_eq!(
        seen[4].body,
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"e1\"</ETag></Part><Part><PartNumber>2</PartNumber><ETag>\"e2\"</ETag></Part><Part><PartNumber>3</PartNumber><ETag>\"e3\"</ETag></Part></CompleteMultipartUpload>"
    );
}

#[tokio::test]
async fn a_failed_part_aborts_the_upload_and_names_the_object() {
    let (s3, seen) = requests(vec![
        (
            200,
            "<InitiateMultipartUploadResult><UploadId>u-2</UploadId></InitiateMultipartUploadResult>",
        ),
        (403, "<Error><Code>AccessDenied</Code></Error>"),
        (204, ""),
    ]);
    let error = s3
        .copy_in_parts("t/s/a.parquet", "t/a.parquet", 3 * COPY_PART_BYTES)
        .await
        .expect_err("the part fails");
    assert!(
        error.to_string().contains("s3://lake/t/a.parquet") && error.to_string().contains("AccessDenied"),
        "{error}"
    );
    let last = seen.lock().expect("lock").last().cloned().expect("requests");
    assert_eq!((last.method.as_str(), last.query.as_str()), ("DELETE", "uploadId=u-2"));
}

#[tokio::test]
async fn incomplete_uploads_are_listed_across_pages() {
    let (s3, seen) = requests(vec![
        (
            200,
            "<ListMultipartUploadsResult><IsTruncated>true</IsTruncated><NextKeyMarker>t/_kglue_staging/jr-1/b</NextKeyMarker><NextUploadIdMarker>u-b</NextUploadIdMarker><Upload><Key>t/_kglue_staging/jr-1/a</Key><UploadId>u-a</UploadId></Upload><Upload><Key>t/_kglue_staging/jr-1/b</Key><UploadId>u-b</UploadId></Upload></ListMultipartUploadsResult>",
        ),
        (
            200,
            "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated><Upload><Key>t/_kglue_staging/jr-1/c</Key><UploadId>u-c</UploadId></Upload></ListMultipartUploadsResult>",
        ),
    ]);
    let uploads = s3.incomplete_uploads("t/_kglue_staging/jr-1/").await.expect("listed");
    let ids: Vec<&str> = uploads.iter().map(|u| u.upload_id.as_str()).collect();
    assert_eq!(ids, ["u-a", "u-b", "u-c"]);
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen[0].query, "prefix=t%2F_kglue_staging%2Fjr-1%2F&uploads=");
    assert!(
        seen[1].query.contains("key-marker=t%2F_kglue_staging%2Fjr-1%2Fb")
            && seen[1].query.contains("upload-id-marker=u-b")
    );
}
