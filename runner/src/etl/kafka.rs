//! A Kafka topic as a streaming job's source: the client (rskafka, pure Rust: no librdkafka to
//! build or ship, TLS through rustls with ring as the rest of kglue, and reads by explicit offset,
//! which is what exactly-once needs — kglue keeps the offsets with its output, never in a consumer
//! group), one micro-batch's records read from committed offsets, and those records decoded into
//! the Table's columns plus Kafka's metadata columns.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, Int32Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use kglue_crds::common::{CsvOptions, KafkaValueFormat};
use kglue_crds::connection::{KafkaConnection, SaslMechanism};
use kglue_crds::job::PartitionOffset;
use kglue_crds::protocol::storage::SecretValues;
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder, Credentials as SaslCredentials, SaslConfig};
use rskafka::record::RecordAndOffset;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Serialize;

/// Kafka's metadata columns, after the Table's own (Spark's names).
pub const METADATA_COLUMNS: [&str; 5] = ["topic", "partition", "offset", "timestamp", "key"];

/// How much one fetch from one partition may return.
const FETCH_BYTES: i32 = 16 << 20;

/// The longest a fetch waits on the broker for records to arrive.
const FETCH_WAIT: Duration = Duration::from_millis(500);

/// What goes wrong reaching or reading a topic.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// The Connection's settings or Secrets are unusable.
    #[error("connection {connection}: {message}")]
    Settings {
        /// The Connection.
        connection: String,
        /// What is wrong.
        message: String,
    },
    /// The brokers could not be reached, or refused the login.
    #[error("connection {connection}: cannot reach Kafka at {servers}: {source}")]
    Connect {
        /// The Connection.
        connection: String,
        /// The bootstrap servers.
        servers: String,
        /// The client's error.
        source: Box<rskafka::client::error::Error>,
    },
    /// The brokers refused the login or their certificate: retrying would not help.
    #[error("connection {connection}: Kafka at {servers} refused the connection: {message}")]
    Refused {
        /// The Connection.
        connection: String,
        /// The bootstrap servers.
        servers: String,
        /// The client's error.
        message: String,
    },
    /// A broker did not answer in time.
    #[error("topic {topic}: no answer from Kafka at {servers} within {seconds}s")]
    NoAnswer {
        /// The topic.
        topic: String,
        /// The bootstrap servers.
        servers: String,
        /// How long it waited.
        seconds: u64,
    },
    /// Records the stream had yet to read are no longer in the topic.
    #[error(
        "topic {topic} partition {partition}: the records from offset {offset} are no longer in the topic (the earliest is {}), so they cannot be read: they were deleted (by retention?) before the stream read them, and the stream stops rather than skip them",
        earliest.map_or("unknown".to_string(), |e| e.to_string())
    )]
    Lost {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The offset the stream was to read.
        offset: i64,
        /// The partition's earliest offset now, if known.
        earliest: Option<i64>,
    },
    /// The topic does not exist.
    #[error("topic {topic} does not exist on {servers}")]
    NoTopic {
        /// The topic.
        topic: String,
        /// The bootstrap servers.
        servers: String,
    },
    /// Reading a partition failed.
    #[error("topic {topic} partition {partition}: {source}")]
    Read {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The client's error.
        source: Box<rskafka::client::error::Error>,
    },
}

/// A `kafka` Connection resolved: where the brokers are and how to log in. Nothing is connected
/// yet.
#[derive(Clone)]
pub struct KafkaEndpoint {
    /// The Connection's name, for messages.
    pub connection: String,
    /// `host:port` of each bootstrap broker.
    pub servers: Vec<String>,
    /// TLS: `None` plaintext; `Some(None)` the public roots; `Some(Some(pem))` this CA.
    tls: Option<Option<String>>,
    sasl: Option<(SaslMechanism, String, String)>,
    connect_timeout: Duration,
}

impl std::fmt::Debug for KafkaEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("KafkaEndpoint")
            .field("connection", &self.connection)
            .field("servers", &self.servers)
            .field("tls", &self.tls.is_some())
            .field("sasl", &self.sasl.as_ref().map(|(m, user, _)| (m, user)))
            .finish()
    }
}

impl KafkaEndpoint {
    /// The endpoint of Connection `connection` (`spec`), its Secret values read through `secrets`.
    pub fn resolve<S: SecretValues>(
        connection: &str,
        spec: &KafkaConnection,
        secrets: &mut S,
    ) -> Result<Self, S::Error> {
        let mut required = |secret: &str, key: &str| match secrets.value(secret, key)? {
            Some(value) => Ok(value),
            None => Err(secrets.missing(secret, key)),
        };
        let sasl = match &spec.sasl {
            Some(sasl) => {
                let secret = &sasl.credentials_secret_ref;
                let user = required(&secret.name, secret.user_key())?;
                let password = required(&secret.name, secret.password_key())?;
                Some((sasl.mechanism, user.trim_end_matches('\n').to_string(), password))
            }
            None => None,
        };
        let tls = match &spec.tls {
            Some(tls) => Some(match &tls.ca_secret_ref {
                Some(ca) => Some(required(&ca.name, ca.key())?),
                None => None,
            }),
            None => None,
        };
        Ok(KafkaEndpoint {
            connection: connection.to_string(),
            servers: spec.bootstrap_servers.clone(),
            tls,
            sasl,
            connect_timeout: Duration::from_secs(u64::from(spec.connect_timeout_seconds())),
        })
    }

    /// How long the client keeps trying the brokers before a call fails.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    fn settings(&self, message: impl ToString) -> KafkaError {
        KafkaError::Settings {
            connection: self.connection.clone(),
            message: message.to_string(),
        }
    }

    /// A client of the cluster, logged in.
    pub async fn connect(&self) -> Result<Client, KafkaError> {
        let mut builder = ClientBuilder::new(self.servers.clone())
            .client_id("kglue")
            .backoff_config(rskafka::BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(5),
                base: 2.0,
                // A broker that does not answer fails the call after the connect timeout, never
                // hangs: the stream's own retry (with its status) takes over.
                deadline: Some(self.connect_timeout),
            });
        if let Some(ca) = &self.tls {
            builder = builder.tls_config(Arc::new(self.tls_config(ca.as_deref())?));
        }
        if let Some((mechanism, user, password)) = &self.sasl {
            let credentials = SaslCredentials::new(user.clone(), password.clone());
            builder = builder.sasl_config(match mechanism {
                SaslMechanism::Plain => SaslConfig::Plain(credentials),
                SaslMechanism::ScramSha256 => SaslConfig::ScramSha256(credentials),
                SaslMechanism::ScramSha512 => SaslConfig::ScramSha512(credentials),
            });
        }
        builder.build().await.map_err(|source| {
            let message = source.to_string();
            // A wrong password or an untrusted certificate will not fix itself.
            if message.contains("Sasl handshake failed") || message.contains("invalid peer certificate") {
                KafkaError::Refused {
                    connection: self.connection.clone(),
                    servers: self.servers.join(","),
                    message,
                }
            } else {
                KafkaError::Connect {
                    connection: self.connection.clone(),
                    servers: self.servers.join(","),
                    source: Box::new(source),
                }
            }
        })
    }

    fn tls_config(&self, ca: Option<&str>) -> Result<rustls::ClientConfig, KafkaError> {
        let mut roots = rustls::RootCertStore::empty();
        match ca {
            Some(pem) => {
                for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                    let cert =
                        cert.map_err(|e| self.settings(format!("tls.caSecretRef: not a PEM certificate: {e}")))?;
                    roots
                        .add(cert)
                        .map_err(|e| self.settings(format!("tls.caSecretRef: {e}")))?;
                }
                if roots.is_empty() {
                    return Err(self.settings("tls.caSecretRef holds no PEM certificate"));
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| self.settings(e))?
            .with_root_certificates(roots)
            .with_no_client_auth())
    }
}

/// One topic, with a client per partition.
pub struct Topic {
    /// The topic's name.
    pub name: String,
    servers: String,
    partitions: BTreeMap<i32, PartitionClient>,
}

impl Topic {
    /// The topic `name` of the cluster `client` reaches.
    pub async fn open(endpoint: &KafkaEndpoint, client: &Client, name: &str) -> Result<Topic, KafkaError> {
        let servers = endpoint.servers.join(",");
        let topics = client.list_topics().await.map_err(|source| KafkaError::Connect {
            connection: endpoint.connection.clone(),
            servers: servers.clone(),
            source: Box::new(source),
        })?;
        let Some(topic) = topics.into_iter().find(|t| t.name == name) else {
            return Err(KafkaError::NoTopic {
                topic: name.to_string(),
                servers,
            });
        };
        let mut partitions = BTreeMap::new();
        for partition in topic.partitions {
            let client = client
                .partition_client(name, partition, UnknownTopicHandling::Error)
                .await
                .map_err(|source| KafkaError::Read {
                    topic: name.to_string(),
                    partition,
                    source: Box::new(source),
                })?;
            partitions.insert(partition, client);
        }
        Ok(Topic {
            name: name.to_string(),
            servers,
            partitions,
        })
    }

    fn read_error(&self, partition: i32) -> impl Fn(rskafka::client::error::Error) -> KafkaError + '_ {
        move |source| KafkaError::Read {
            topic: self.name.clone(),
            partition,
            source: Box::new(source),
        }
    }

    /// Each partition's earliest or latest offset.
    pub async fn offsets(&self, at: OffsetAt) -> Result<BTreeMap<i32, i64>, KafkaError> {
        let mut offsets = BTreeMap::new();
        for (&partition, client) in &self.partitions {
            let offset = client.get_offset(at).await.map_err(self.read_error(partition))?;
            offsets.insert(partition, offset);
        }
        Ok(offsets)
    }

    /// The bootstrap servers, for messages.
    pub fn servers(&self) -> &str {
        &self.servers
    }

    /// Reads one micro-batch from `from` (the next offset of each partition; a partition missing
    /// from it starts at `start`): records that are there now or arrive before `deadline`, at
    /// most `max_records` of them, shared fairly between the partitions that have records. With
    /// `until`, reads no partition past its offset there (the ends a stream started with).
    pub async fn fetch(
        &self,
        stop: &tokio::sync::watch::Receiver<bool>,
        from: &BTreeMap<i32, i64>,
        start: &BTreeMap<i32, i64>,
        deadline: Instant,
        max_records: Option<u64>,
        until: Option<&BTreeMap<i32, i64>>,
    ) -> Result<Fetched, KafkaError> {
        let mut next: BTreeMap<i32, i64> = self
            .partitions
            .keys()
            .map(|p| (*p, from.get(p).or(start.get(p)).copied().unwrap_or(0)))
            .collect();
        let begin = next.clone();
        // Each partition's end as the batch begins: the lag of a partition this batch does not
        // reach.
        let mut high = self.offsets(OffsetAt::Latest).await?;
        let limit = |p: &i32| until.map_or(i64::MAX, |u| u.get(p).copied().unwrap_or(0));
        let mut records: Vec<(i32, RecordAndOffset)> = Vec::new();
        let budget = max_records.unwrap_or(u64::MAX);
        let partitions: Vec<i32> = self.partitions.keys().copied().collect();
        let mut round = 0usize;
        loop {
            let active: Vec<i32> = partitions.iter().copied().filter(|p| next[p] < limit(p)).collect();
            let taken = records.len() as u64;
            // A stop ends the window early: what is fetched is the last batch.
            if active.is_empty() || taken >= budget || Instant::now() >= deadline || *stop.borrow() {
                break;
            }
            // Partitions known to hold records first; when none does, wait on all for new ones.
            let available: Vec<i32> = active.iter().copied().filter(|p| next[p] < high[p]).collect();
            let waiting = available.is_empty();
            let mut candidates = if waiting { active } else { available };
            // Fair shares, and a rotating first partition, so no partition starves another.
            let count = candidates.len();
            candidates.rotate_left(round % count);
            let share = ((budget - taken) / count as u64).max(1);
            let mut waited = false;
            for partition in candidates {
                let room = share
                    .min(budget - records.len() as u64)
                    .min((limit(&partition) - next[&partition]).max(0) as u64);
                if room == 0 {
                    break;
                }
                let offset = next[&partition];
                let left = deadline.saturating_duration_since(Instant::now());
                // One long poll per round at most: an idle partition must not hold up the others.
                let wait = if waiting && !waited {
                    left.min(FETCH_WAIT)
                } else {
                    Duration::ZERO
                };
                waited |= waiting;
                let client = &self.partitions[&partition];
                let (batch, watermark) = match client
                    .fetch_records(offset, 1..FETCH_BYTES, wait.as_millis() as i32)
                    .await
                {
                    Ok(fetched) => fetched,
                    Err(rskafka::client::error::Error::ServerError {
                        protocol_error: rskafka::client::error::ProtocolError::OffsetOutOfRange,
                        ..
                    }) => {
                        // The records the checkpoint reads on from are gone (retention, or
                        // deleted): reading on from the earliest would skip them silently.
                        let earliest = client.get_offset(OffsetAt::Earliest).await.ok();
                        return Err(KafkaError::Lost {
                            topic: self.name.clone(),
                            partition,
                            offset,
                            earliest,
                        });
                    }
                    Err(error) => return Err(self.read_error(partition)(error)),
                };
                let known = high.entry(partition).or_insert(watermark);
                *known = (*known).max(watermark);
                for record in batch.into_iter().filter(|r| r.offset >= offset).take(room as usize) {
                    next.insert(partition, record.offset + 1);
                    records.push((partition, record));
                }
            }
            round += 1;
        }
        let lag = partitions.iter().map(|p| (*p, (high[p] - next[p]).max(0))).collect();
        Ok(Fetched {
            begin,
            next,
            lag,
            records,
        })
    }
}

/// The records of one micro-batch, in partition and offset order of arrival.
pub struct Fetched {
    /// Where each partition started.
    pub begin: BTreeMap<i32, i64>,
    /// Each partition's next offset after the batch.
    pub next: BTreeMap<i32, i64>,
    /// Each partition's records left after the batch (as the last fetch saw the partition's end).
    pub lag: BTreeMap<i32, i64>,
    /// The records, with their partition.
    pub records: Vec<(i32, RecordAndOffset)>,
}

/// Offsets as a bookmark holds them.
pub fn bookmark_offsets(offsets: &BTreeMap<i32, i64>) -> Vec<PartitionOffset> {
    offsets
        .iter()
        .map(|(&partition, &offset)| PartitionOffset { partition, offset })
        .collect()
}

/// A bookmark's offsets as a map.
pub fn offsets_of(bookmark: &[PartitionOffset]) -> BTreeMap<i32, i64> {
    bookmark.iter().map(|p| (p.partition, p.offset)).collect()
}

/// A record that does not parse, as the dead-letter location holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BadRecord {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
    /// When Kafka stamped it.
    pub timestamp: String,
    /// Why it does not parse.
    pub reason: String,
    /// The key, as text where it is UTF-8 (else lossy).
    pub key: Option<String>,
    /// The value, as text where it is UTF-8 (else lossy).
    pub value: Option<String>,
}

/// The schema of a topic's records: the Table's columns, then Kafka's metadata columns.
pub fn record_schema(columns: &[Field]) -> SchemaRef {
    let mut fields: Vec<Field> = columns.to_vec();
    fields.push(Field::new("topic", DataType::Utf8, false));
    fields.push(Field::new("partition", DataType::Int32, false));
    fields.push(Field::new("offset", DataType::Int64, false));
    fields.push(Field::new(
        "timestamp",
        DataType::Timestamp(TimeUnit::Microsecond, None),
        false,
    ));
    fields.push(Field::new("key", DataType::Binary, true));
    Arc::new(Schema::new(fields))
}

/// How values are decoded.
#[derive(Debug, Clone)]
pub struct ValueDecoder {
    columns: SchemaRef,
    format: KafkaValueFormat,
    csv: Option<CsvOptions>,
}

impl ValueDecoder {
    /// A decoder of values into `columns`.
    pub fn new(columns: Vec<Field>, format: KafkaValueFormat, csv: Option<CsvOptions>) -> Self {
        ValueDecoder {
            columns: Arc::new(Schema::new(columns)),
            format,
            csv,
        }
    }

    /// Decodes `records` of `topic`: the rows of those that parse, and those that do not, each
    /// with its reason. A batch that decodes as a whole costs one pass; only a batch with a bad
    /// record is decoded again one record at a time to find it.
    pub fn decode(&self, topic: &str, records: &[(i32, RecordAndOffset)]) -> (RecordBatch, Vec<BadRecord>) {
        let mut bad = Vec::new();
        let mut good: Vec<usize> = Vec::with_capacity(records.len());
        for (index, (partition, record)) in records.iter().enumerate() {
            if record.record.value.is_none() {
                bad.push(bad_record(
                    topic,
                    *partition,
                    record,
                    "the record has no value (a tombstone)".into(),
                ));
            } else {
                good.push(index);
            }
        }
        let values = |indices: &[usize]| -> Vec<&[u8]> {
            indices
                .iter()
                .map(|&i| records[i].1.record.value.as_deref().unwrap_or_default())
                .collect()
        };
        let (columns, kept) = match self.parse(&values(&good)).ok() {
            Some(batch) => (batch, good),
            None => {
                // One at a time: keep what parses, name what does not.
                let mut kept = Vec::new();
                let mut batches = Vec::new();
                for index in good {
                    match self.parse(&values(&[index])) {
                        Ok(batch) => {
                            batches.push(batch);
                            kept.push(index);
                        }
                        Err(reason) => {
                            let (partition, record) = &records[index];
                            bad.push(bad_record(topic, *partition, record, reason));
                        }
                    }
                }
                let batch = datafusion::arrow::compute::concat_batches(&self.columns, &batches)
                    .unwrap_or_else(|_| RecordBatch::new_empty(self.columns.clone()));
                (batch, kept)
            }
        };
        bad.sort_by_key(|b| (b.partition, b.offset));
        (self.with_metadata(topic, columns, &kept, records), bad)
    }

    /// Values → the Table's columns, or why they do not parse.
    fn parse(&self, values: &[&[u8]]) -> Result<RecordBatch, String> {
        if values.is_empty() {
            return Ok(RecordBatch::new_empty(self.columns.clone()));
        }
        let mut text = Vec::with_capacity(values.iter().map(|v| v.len() + 1).sum());
        for value in values {
            // A record's value is one line: a newline inside it would split it in two rows.
            let value = value.strip_suffix(b"\n").unwrap_or(value);
            if value.contains(&b'\n') {
                return Err("the value holds more than one line".into());
            }
            text.extend_from_slice(value);
            text.push(b'\n');
        }
        let batches: Result<Vec<RecordBatch>, _> = match self.format {
            KafkaValueFormat::Json => {
                let reader = datafusion::arrow::json::ReaderBuilder::new(self.columns.clone())
                    .with_batch_size(values.len().max(1))
                    .with_strict_mode(false)
                    .build(std::io::Cursor::new(text))
                    .map_err(|e| e.to_string())?;
                reader.collect()
            }
            KafkaValueFormat::Csv => {
                let options = self.csv.clone().unwrap_or_default();
                let mut builder = datafusion::arrow::csv::ReaderBuilder::new(self.columns.clone())
                    .with_header(false)
                    .with_batch_size(values.len().max(1));
                if let Some(delimiter) = options.delimiter.as_deref().and_then(|d| d.bytes().next()) {
                    builder = builder.with_delimiter(delimiter);
                }
                if let Some(quote) = options.quote.as_deref().and_then(|q| q.bytes().next()) {
                    builder = builder.with_quote(quote);
                }
                builder
                    .build(std::io::Cursor::new(text))
                    .map_err(|e| e.to_string())?
                    .collect()
            }
        };
        let batches = batches.map_err(|e| e.to_string())?;
        let batch = datafusion::arrow::compute::concat_batches(&self.columns, &batches).map_err(|e| e.to_string())?;
        if batch.num_rows() != values.len() {
            return Err(format!("{} values gave {} rows", values.len(), batch.num_rows()));
        }
        Ok(batch)
    }

    /// The decoded columns with the metadata of records `kept`.
    fn with_metadata(
        &self,
        topic: &str,
        columns: RecordBatch,
        kept: &[usize],
        records: &[(i32, RecordAndOffset)],
    ) -> RecordBatch {
        let mut fields: Vec<Field> = self.columns.fields().iter().map(|f| f.as_ref().clone()).collect();
        let schema = record_schema(&fields);
        fields.clear();
        let mut topics = StringBuilder::new();
        let mut partitions = Int32Builder::new();
        let mut offsets = Int64Builder::new();
        let mut timestamps = TimestampMicrosecondBuilder::new();
        let mut keys = BinaryBuilder::new();
        for &index in kept {
            let (partition, record) = &records[index];
            topics.append_value(topic);
            partitions.append_value(*partition);
            offsets.append_value(record.offset);
            timestamps.append_value(record.record.timestamp.timestamp_micros());
            keys.append_option(record.record.key.as_deref());
        }
        let mut arrays: Vec<ArrayRef> = columns.columns().to_vec();
        arrays.push(Arc::new(topics.finish()));
        arrays.push(Arc::new(partitions.finish()));
        arrays.push(Arc::new(offsets.finish()));
        arrays.push(Arc::new(timestamps.finish()));
        arrays.push(Arc::new(keys.finish()));
        // The arrays match the schema by construction: the same count of rows, the declared types.
        RecordBatch::try_new(schema.clone(), arrays).unwrap_or_else(|_| RecordBatch::new_empty(schema))
    }
}

fn bad_record(topic: &str, partition: i32, record: &RecordAndOffset, reason: String) -> BadRecord {
    let text = |bytes: &Option<Vec<u8>>| bytes.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
    BadRecord {
        topic: topic.to_string(),
        partition,
        offset: record.offset,
        timestamp: record.record.timestamp.to_rfc3339(),
        reason,
        key: text(&record.record.key),
        value: text(&record.record.value),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::Int64Type;
    use rskafka::chrono::{TimeZone, Utc};
    use rskafka::record::Record;

    use super::*;

    fn record(partition: i32, offset: i64, value: Option<&str>) -> (i32, RecordAndOffset) {
        (
            partition,
            RecordAndOffset {
                record: Record {
                    key: Some(format!("k{offset}").into_bytes()),
                    value: value.map(|v| v.as_bytes().to_vec()),
                    headers: BTreeMap::new(),
                    timestamp: Utc.timestamp_millis_opt(1_700_000_000_000 + offset).unwrap(),
                },
                offset,
            },
        )
    }

    fn columns() -> Vec<Field> {
        vec![
            Field::new("id", DataType::Int64, true),
            Field::new("page", DataType::Utf8, true),
        ]
    }

    #[test]
    fn good_records_decode_with_their_metadata_and_bad_ones_are_named() {
        let decoder = ValueDecoder::new(columns(), KafkaValueFormat::Json, None);
        let records = vec![
            record(0, 10, Some(r#"{"id": 1, "page": "/a"}"#)),
            record(0, 11, Some("not json")),
            record(1, 5, Some(r#"{"id": 2}"#)),
            record(1, 6, None),
            record(2, 7, Some(r#"{"id": "three", "page": "/c"}"#)),
            record(2, 8, Some("{\"id\": 4,\n\"page\": \"/d\"}")),
            record(2, 9, Some(r#"{"id": 5, "page": "/e", "extra": true}"#)),
        ];
        let (batch, bad) = decoder.decode("clicks", &records);
        let ids: Vec<i64> = batch.column(0).as_primitive::<Int64Type>().values().to_vec();
        assert_eq!(ids, vec![1, 2, 5]);
        assert_eq!(batch.schema().field(2).name(), "topic");
        let offsets: Vec<i64> = batch
            .column_by_name("offset")
            .map(|c| c.as_primitive::<Int64Type>().values().to_vec())
            .unwrap_or_default();
        assert_eq!(offsets, vec![10, 5, 9]);
        let keys = batch
            .column_by_name("key")
            .map(|c| c.as_binary::<i32>().value(1).to_vec());
        assert_eq!(keys, Some(b"k5".to_vec()));
        assert!(batch.column(1).is_null(1), "a missing field is null");
        let named: Vec<(i32, i64, &str)> = bad.iter().map(|b| (b.partition, b.offset, b.reason.as_str())).collect();
        assert_eq!(named.len(), 4, "{named:?}");
        assert_eq!((named[0].0, named[0].1), (0, 11));
        assert!(named[0].2.contains("Json error"), "{named:?}");
        assert_eq!(
            (named[1].0, named[1].1, named[1].2),
            (1, 6, "the record has no value (a tombstone)")
        );
        assert_eq!((named[2].0, named[2].1), (2, 7));
        assert!(named[2].2.contains("three"), "{named:?}");
        assert_eq!(
            (named[3].0, named[3].1, named[3].2),
            (2, 8, "the value holds more than one line")
        );
        assert_eq!(bad[0].value.as_deref(), Some("not json"));
        assert_eq!(bad[0].topic, "clicks");
    }

    #[test]
    fn csv_values_decode_with_the_tables_delimiter() {
        let options = CsvOptions {
            delimiter: Some("|".into()),
            ..CsvOptions::default()
        };
        let decoder = ValueDecoder::new(columns(), KafkaValueFormat::Csv, Some(options));
        let records = vec![
            record(0, 0, Some("1|/a")),
            record(0, 1, Some("x|/b")),
            record(0, 2, Some("3|/c\n")),
        ];
        let (batch, bad) = decoder.decode("t", &records);
        let ids: Vec<i64> = batch.column(0).as_primitive::<Int64Type>().values().to_vec();
        assert_eq!(ids, vec![1, 3]);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].offset, 1);
    }
}
