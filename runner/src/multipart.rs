//! The S3 requests object_store does not make: listing and aborting the incomplete multipart
//! uploads a killed attempt left, and copying an object of more than 5 GiB (the limit of one
//! CopyObject, which `ObjectStore::rename` uses) in parts with UploadPartCopy.
//!
//! Requests are signed with object_store's own SigV4 signer ([`AwsAuthorizer`]) and credentials,
//! and sent with its HTTP client, so the endpoint, region, path style, TLS and credentials are
//! exactly the ones the store uses. No Rust S3 client short of the full AWS SDK covers these
//! three calls; the SDK would be a second HTTP and TLS stack for them.

use std::sync::Arc;

use bytes::Bytes;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, AwsAuthorizer};
use object_store::client::{ClientConfigKey, ClientOptions, HttpClient, HttpConnector, HttpRequest, ReqwestConnector};
use serde::Deserialize;

/// The largest object one CopyObject copies (S3's limit).
pub const COPY_OBJECT_LIMIT: u64 = 5 * 1024 * 1024 * 1024;

/// The part size of a multipart copy: 1 GiB parts keep a 10 GiB file (the largest
/// `targetFileSizeMb` allows) at ten requests, far below S3's 10,000 parts.
pub const COPY_PART_BYTES: u64 = 1024 * 1024 * 1024;

/// The smallest part S3 accepts (all but the last).
const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;

/// A request to S3 failed.
#[derive(Debug, thiserror::Error)]
#[error("{action} s3://{bucket}/{key}: {message}")]
pub struct S3Error {
    /// What was being done.
    pub action: &'static str,
    /// The bucket.
    pub bucket: String,
    /// The key (or prefix).
    pub key: String,
    /// The cause: the transport's error or the server's answer.
    pub message: String,
}

/// One incomplete multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The object it would create.
    pub key: String,
    /// Its id.
    pub upload_id: String,
}

/// The byte ranges of a multipart copy of `size` bytes in parts of `part` bytes: (part number,
/// first byte, last byte), the last byte inclusive as `x-amz-copy-source-range` wants.
pub fn copy_parts(size: u64, part: u64) -> Vec<(u32, u64, u64)> {
    let part = part.max(MIN_PART_BYTES);
    let mut parts = Vec::new();
    let mut start = 0;
    while start < size {
        let end = (start + part).min(size) - 1;
        parts.push((parts.len() as u32 + 1, start, end));
        start = end + 1;
    }
    parts
}

/// Signed requests to one bucket, with the store's endpoint, region, credentials and client.
#[derive(Debug, Clone)]
pub struct S3Requests {
    client: HttpClient,
    store: Arc<AmazonS3>,
    /// `scheme://host[:port]` of the endpoint, or of AWS's regional endpoint.
    endpoint: String,
    bucket: String,
    region: String,
    virtual_hosted: bool,
    /// Objects larger than this are copied in parts (S3's limit; smaller in tests).
    copy_limit: u64,
    /// The size of a copied part.
    copy_part: u64,
}

impl S3Requests {
    /// Requests to the bucket `builder` is configured for, signed with the credentials of `store`
    /// (built from the same builder).
    pub fn new(builder: &AmazonS3Builder, store: Arc<AmazonS3>) -> Result<Self, object_store::Error> {
        let value = |key: AmazonS3ConfigKey| builder.get_config_value(&key);
        let bucket = value(AmazonS3ConfigKey::Bucket).unwrap_or_default();
        let region = value(AmazonS3ConfigKey::Region).unwrap_or_else(|| "us-east-1".into());
        let virtual_hosted = value(AmazonS3ConfigKey::VirtualHostedStyleRequest).is_some_and(|v| v == "true");
        let endpoint = match value(AmazonS3ConfigKey::Endpoint) {
            Some(endpoint) => endpoint.trim_end_matches('/').to_string(),
            None => format!("https://s3.{region}.amazonaws.com"),
        };
        let allow_http = value(AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp)).is_some_and(|v| v == "true");
        let client = ReqwestConnector::default().connect(&ClientOptions::new().with_allow_http(allow_http))?;
        Ok(S3Requests {
            client,
            store,
            endpoint,
            bucket,
            region,
            // With a custom endpoint, virtual-hosted style means the endpoint already names the
            // bucket (object_store's reading of the flag); AWS's regional endpoint gets it prefixed.
            virtual_hosted,
            copy_limit: COPY_OBJECT_LIMIT,
            copy_part: COPY_PART_BYTES,
        })
    }

    /// The same requests with a smaller copy limit and part size (tests).
    pub fn with_copy_sizes(mut self, limit: u64, part: u64) -> Self {
        self.copy_limit = limit;
        self.copy_part = part;
        self
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Whether an object of `size` bytes needs [`S3Requests::copy_in_parts`].
    pub fn needs_part_copy(&self, size: u64) -> bool {
        size > self.copy_limit
    }

    fn error(&self, action: &'static str, key: &str, message: impl ToString) -> S3Error {
        S3Error {
            action,
            bucket: self.bucket.clone(),
            key: key.to_string(),
            message: message.to_string(),
        }
    }

    /// The URL of `key` (empty: the bucket) with `query` (already encoded).
    fn url(&self, key: &str, query: &str) -> String {
        let key = encode_path(key);
        let base = if self.virtual_hosted {
            self.endpoint.clone()
        } else {
            format!("{}/{}", self.endpoint, self.bucket)
        };
        let mut url = if key.is_empty() {
            format!("{base}/")
        } else {
            format!("{base}/{key}")
        };
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        url
    }

    /// Sends one signed request; returns the body of a 2xx answer.
    async fn send(
        &self,
        action: &'static str,
        method: http::Method,
        key: &str,
        query: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<Bytes, S3Error> {
        let mut builder = http::Request::builder().method(method).uri(self.url(key, query));
        for (name, value) in headers {
            builder = builder.header(*name, value);
        }
        let mut request: HttpRequest = builder.body(body.into()).map_err(|e| self.error(action, key, e))?;
        let credential = self
            .store
            .credentials()
            .get_credential()
            .await
            .map_err(|e| self.error(action, key, e))?;
        AwsAuthorizer::new(&credential, "s3", &self.region).authorize(&mut request, None);
        let response = self
            .client
            .execute(request)
            .await
            .map_err(|e| self.error(action, key, e))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .bytes()
            .await
            .map_err(|e| self.error(action, key, e))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            return Err(self.error(action, key, format!("{status}: {}", text.trim())));
        }
        Ok(bytes)
    }

    /// The incomplete multipart uploads of keys under `prefix`, every page.
    pub async fn incomplete_uploads(&self, prefix: &str) -> Result<Vec<Upload>, S3Error> {
        let action = "listing the incomplete uploads under";
        let mut uploads = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut query = format!("prefix={}&uploads=", encode_query(prefix));
            if let Some((key, id)) = &markers {
                query = format!(
                    "key-marker={}&prefix={}&upload-id-marker={}&uploads=",
                    encode_query(key),
                    encode_query(prefix),
                    encode_query(id)
                );
            }
            let body = self
                .send(action, http::Method::GET, "", &query, &[], Bytes::new())
                .await?;
            let page: ListUploads =
                quick_xml::de::from_reader(body.as_ref()).map_err(|e| self.error(action, prefix, e))?;
            uploads.extend(page.uploads.into_iter().map(|u| Upload {
                key: u.key,
                upload_id: u.upload_id,
            }));
            match (page.is_truncated, page.next_key_marker, page.next_upload_id_marker) {
                (true, Some(key), Some(id)) if !key.is_empty() => markers = Some((key, id)),
                _ => return Ok(uploads),
            }
        }
    }

    /// Aborts one upload; one already gone is fine.
    pub async fn abort(&self, upload: &Upload) -> Result<(), S3Error> {
        let query = format!("uploadId={}", encode_query(&upload.upload_id));
        match self
            .send(
                "aborting the upload of",
                http::Method::DELETE,
                &upload.key,
                &query,
                &[],
                Bytes::new(),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if error.message.starts_with("404") => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Copies `from` (of `size` bytes) to `to` in the same bucket with UploadPartCopy, in parts of
    /// at most the copy part size; aborts the upload if a part fails.
    pub async fn copy_in_parts(&self, from: &str, to: &str, size: u64) -> Result<(), S3Error> {
        let action = "copying in parts to";
        let created = self
            .send(action, http::Method::POST, to, "uploads=", &[], Bytes::new())
            .await?;
        let created: CreatedUpload =
            quick_xml::de::from_reader(created.as_ref()).map_err(|e| self.error(action, to, e))?;
        let upload = Upload {
            key: to.to_string(),
            upload_id: created.upload_id,
        };
        let source = format!("/{}/{}", self.bucket, encode_path(from));
        let mut etags = Vec::new();
        for (number, first, last) in copy_parts(size, self.copy_part) {
            let query = format!("partNumber={number}&uploadId={}", encode_query(&upload.upload_id));
            let headers = [
                ("x-amz-copy-source", source.clone()),
                ("x-amz-copy-source-range", format!("bytes={first}-{last}")),
            ];
            let part = match self
                .send(action, http::Method::PUT, to, &query, &headers, Bytes::new())
                .await
                .and_then(|body| {
                    quick_xml::de::from_reader::<_, CopiedPart>(body.as_ref()).map_err(|e| self.error(action, to, e))
                }) {
                Ok(part) => part,
                Err(error) => {
                    let _ = self.abort(&upload).await;
                    return Err(error);
                }
            };
            etags.push((number, part.etag));
        }
        let mut xml = String::from("<CompleteMultipartUpload>");
        for (number, etag) in &etags {
            xml.push_str(&format!(
                "<Part><PartNumber>{number}</PartNumber><ETag>{}</ETag></Part>",
                escape_xml(etag)
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        let query = format!("uploadId={}", encode_query(&upload.upload_id));
        let completed = self
            .send(action, http::Method::POST, to, &query, &[], Bytes::from(xml))
            .await;
        // CompleteMultipartUpload can answer 200 with an error in the body.
        match completed {
            Ok(body) if String::from_utf8_lossy(&body).contains("<Error>") => {
                let _ = self.abort(&upload).await;
                Err(self.error(action, to, String::from_utf8_lossy(&body).trim().to_string()))
            }
            Ok(_) => Ok(()),
            Err(error) => {
                let _ = self.abort(&upload).await;
                Err(error)
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListUploads {
    #[serde(default)]
    is_truncated: bool,
    next_key_marker: Option<String>,
    next_upload_id_marker: Option<String>,
    #[serde(default, rename = "Upload")]
    uploads: Vec<ListedUpload>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListedUpload {
    key: String,
    upload_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreatedUpload {
    upload_id: String,
}

#[derive(Deserialize)]
struct CopiedPart {
    #[serde(rename = "ETag")]
    etag: String,
}

/// Percent-encodes a key for a URL path (SigV4's canonical form: every byte but unreserved ones
/// and `/`).
fn encode_path(key: &str) -> String {
    encode(key, true)
}

/// Percent-encodes a query value.
fn encode_query(value: &str) -> String {
    encode(value, false)
}

fn encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        let unreserved = byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~');
        if unreserved || (keep_slash && byte == b'/') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn escape_xml(text: &str) -> String {
    // Text content: quotes stay as they are (S3's own examples send `<ETag>"…"</ETag>`).
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests;
