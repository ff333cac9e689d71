//! What keeps an object from working: a [`Problem`] with its [`Reason`], as the validate step of
//! every kind reports it and the conditions carry it.

/// Why an object is Stalled: CamelCase words, as kstatus and `docs/validation.md` name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A nested column type does not parse.
    InvalidColumnType,
    /// The Database with the named `databaseName` does not exist in the namespace.
    DatabaseNotFound,
    /// A referenced Connection does not exist.
    ConnectionNotFound,
    /// The credentials Secret does not exist.
    SecretNotFound,
    /// The credentials Secret lacks a named key.
    SecretKeyNotFound,
    /// The credentials Secret does not carry the label that lets Connections use it.
    SecretNotOptedIn,
    /// A listed Classifier does not exist.
    ClassifierNotFound,
    /// A referenced Table does not exist.
    TableNotFound,
    /// A referenced Job does not exist.
    JobNotFound,
    /// A referenced Crawler does not exist.
    CrawlerNotFound,
    /// A referenced Workflow does not exist.
    WorkflowNotFound,
    /// The cron expression or time zone does not parse.
    InvalidSchedule,
    /// An exclusion glob does not compile.
    InvalidExclusion,
    /// The grok pattern does not compile.
    InvalidPattern,
    /// Workflow nodes depend on each other in a cycle.
    CycleDetected,
    /// The object cannot be read as its kind (accepted by an older or newer schema).
    InvalidSpec,
    /// A Job's sink shares its location with another sink where either replaces data.
    SinkLocationShared,
    /// The ServiceAccount `spec.serviceAccountName` names does not exist.
    ServiceAccountNotFound,
    /// A `file://` location outside the folders the operator allows.
    LocalPathRefused,
    /// A jdbc Connection's URL does not read as one kglue reaches.
    InvalidUrl,
    /// A field names a Connection of the other type: a jdbc Connection for a storage location,
    /// an s3 one for a database.
    ConnectionTypeMismatch,
}

impl Reason {
    /// The CamelCase word written to conditions and Events.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidColumnType => "InvalidColumnType",
            Reason::DatabaseNotFound => "DatabaseNotFound",
            Reason::ConnectionNotFound => "ConnectionNotFound",
            Reason::SecretNotFound => "SecretNotFound",
            Reason::SecretKeyNotFound => "SecretKeyNotFound",
            Reason::SecretNotOptedIn => "SecretNotOptedIn",
            Reason::ClassifierNotFound => "ClassifierNotFound",
            Reason::TableNotFound => "TableNotFound",
            Reason::JobNotFound => "JobNotFound",
            Reason::CrawlerNotFound => "CrawlerNotFound",
            Reason::WorkflowNotFound => "WorkflowNotFound",
            Reason::InvalidSchedule => "InvalidSchedule",
            Reason::InvalidExclusion => "InvalidExclusion",
            Reason::InvalidPattern => "InvalidPattern",
            Reason::CycleDetected => "CycleDetected",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::InvalidUrl => "InvalidUrl",
            Reason::ConnectionTypeMismatch => "ConnectionTypeMismatch",
            Reason::SinkLocationShared => "SinkLocationShared",
            Reason::ServiceAccountNotFound => "ServiceAccountNotFound",
            Reason::LocalPathRefused => "LocalPathRefused",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that keeps an object from working as specified, with what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The condition reason.
    pub reason: Reason,
    /// What is wrong and what to fix, naming the field.
    pub message: String,
}

impl Problem {
    /// A problem with a reason and a message.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Problem {
            reason,
            message: message.into(),
        }
    }
}

/// One problem per `file://` location of `object` outside `allowed` (the operator's
/// `--allow-local-path` folders): in the cluster a run's local files are its pod's own (its
/// token, mounted Secrets), no data source.
pub fn local_paths_refused<K: kglue_crds::references::References>(
    object: &K,
    allowed: &[std::path::PathBuf],
) -> Vec<Problem> {
    let allowed: Vec<String> = allowed.iter().map(|p| format!("file://{}", p.display())).collect();
    object
        .locations()
        .into_iter()
        .filter(|(_, location)| location.starts_with("file://"))
        .filter(|(_, location)| !allowed.iter().any(|a| kglue_crds::location::contains(a, location)))
        .map(|(field, location)| {
            let within = if allowed.is_empty() {
                "the operator allows no local folder".to_string()
            } else {
                format!("the operator allows only {}", allowed.join(", "))
            };
            Problem::new(
                Reason::LocalPathRefused,
                format!(
                    "{field} is {location}, a local path, and {within}: use an object store, or mount a volume and start the operator with --allow-local-path"
                ),
            )
        })
        .collect()
}
