//! Everything a container needs from the API before it starts: Secret and ConfigMap values, the
//! downward API, service-account tokens, and the pod's volumes written to disk.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, ObjectFieldSelector, Pod, ResourceFieldSelector, Secret,
    ServiceAccount, Volume,
};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client, ResourceExt};

use super::registration::Capacity;
use super::spec::{Quantity, expand};

/// Why a pod's containers cannot be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// Something the pod refers to does not exist (yet): retried, as the kubelet does.
    #[error("{0}")]
    Missing(String),
    /// The API server could not be asked: retried.
    #[error("{what}: {source}")]
    Api {
        /// What was being read.
        what: String,
        /// The cause.
        source: kube::Error,
    },
    /// The pod asks for something this agent cannot do: the pod fails.
    #[error("{0}")]
    Unsupported(String),
    /// The image could not be pulled (container mode): retried, as `ErrImagePull`.
    #[error("{0}")]
    ImagePull(String),
    /// A file under the pod directory could not be written: the pod fails.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl PrepareError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            PrepareError::Missing(_) | PrepareError::Api { .. } | PrepareError::ImagePull(_)
        )
    }

    /// The container status's waiting reason while this lasts.
    pub fn reason(&self) -> &'static str {
        match self {
            PrepareError::ImagePull(_) => "ErrImagePull",
            _ => "CreateContainerConfigError",
        }
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> PrepareError + '_ {
    move |source| PrepareError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads Secrets and ConfigMaps of one namespace, each at most once per preparation.
pub struct Sources {
    client: Client,
    namespace: String,
    secrets: HashMap<String, Option<Secret>>,
    config_maps: HashMap<String, Option<ConfigMap>>,
}

impl Sources {
    /// A reader for `namespace`.
    pub fn new(client: Client, namespace: &str) -> Sources {
        Sources {
            client,
            namespace: namespace.into(),
            secrets: HashMap::new(),
            config_maps: HashMap::new(),
        }
    }

    /// The data of a Secret (`None` if it does not exist).
    pub async fn secret(&mut self, name: &str) -> Result<Option<BTreeMap<String, Vec<u8>>>, PrepareError> {
        let secret = read_once(&self.client, &self.namespace, &mut self.secrets, "Secret", name).await?;
        Ok(secret.map(|secret| {
            let data = secret.data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone()));
            let text = secret
                .string_data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone().into_bytes()));
            data.chain(text).collect()
        }))
    }

    /// The data (and binary data) of a ConfigMap (`None` if it does not exist).
    pub async fn config_map(&mut self, name: &str) -> Result<Option<BTreeMap<String, Vec<u8>>>, PrepareError> {
        let config_map = read_once(&self.client, &self.namespace, &mut self.config_maps, "ConfigMap", name).await?;
        Ok(config_map.map(|config_map| {
            let text = config_map
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone().into_bytes()));
            let binary = config_map
                .binary_data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.0.clone()));
            text.chain(binary).collect()
        }))
    }

    async fn key(
        &mut self,
        kind: Kind,
        name: &str,
        key: &str,
        optional: bool,
    ) -> Result<Option<Vec<u8>>, PrepareError> {
        let data = match kind {
            Kind::Secret => self.secret(name).await?,
            Kind::ConfigMap => self.config_map(name).await?,
        };
        match data {
            None if optional => Ok(None),
            None => Err(PrepareError::Missing(format!("{} \"{name}\" not found", kind.name()))),
            Some(data) => match data.get(key) {
                Some(value) => Ok(Some(value.clone())),
                None if optional => Ok(None),
                None => Err(PrepareError::Missing(format!(
                    "couldn't find key {key} in {} {}/{name}",
                    kind.name(),
                    self.namespace
                ))),
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Secret,
    ConfigMap,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Secret => "Secret",
            Kind::ConfigMap => "ConfigMap",
        }
    }
}

/// The address every pod and the node have: processes share the host's network.
pub const LOCAL_IP: &str = "127.0.0.1";

/// A `fieldRef` value (env or downward API volume).
pub fn field_value(pod: &Pod, selector: &ObjectFieldSelector) -> Result<String, PrepareError> {
    let path = selector.field_path.as_str();
    let spec = pod.spec.as_ref();
    let indexed = |prefix: &str, map: &BTreeMap<String, String>| -> Option<String> {
        let key = path.strip_prefix(prefix)?.strip_prefix("['")?.strip_suffix("']")?;
        Some(map.get(key).cloned().unwrap_or_default())
    };
    let as_lines = |map: &BTreeMap<String, String>| -> String {
        map.iter()
            .map(|(k, v)| format!("{k}={}\n", serde_json::Value::String(v.clone())))
            .collect()
    };
    let labels = pod.labels();
    let annotations = pod.annotations();
    Ok(match path {
        "metadata.name" => pod.name_any(),
        "metadata.namespace" => pod.namespace().unwrap_or_default(),
        "metadata.uid" => pod.metadata.uid.clone().unwrap_or_default(),
        "metadata.labels" => as_lines(labels),
        "metadata.annotations" => as_lines(annotations),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into()),
        "status.hostIP" | "status.hostIPs" | "status.podIP" | "status.podIPs" => LOCAL_IP.into(),
        _ => {
            if let Some(value) =
                indexed("metadata.labels", labels).or_else(|| indexed("metadata.annotations", annotations))
            {
                value
            } else {
                return Err(PrepareError::Unsupported(format!("unsupported fieldRef {path}")));
            }
        }
    })
}

/// A `resourceFieldRef` value: the container's limit or request divided by `divisor`, rounded up;
/// a limit that is not set reports the node's allocatable amount, as the kubelet does.
pub fn resource_value(
    pod: &Pod,
    default_container: Option<&str>,
    selector: &ResourceFieldSelector,
    capacity: &Capacity,
) -> Result<String, PrepareError> {
    let container_name = selector.container_name.as_deref().or(default_container);
    let spec = pod.spec.as_ref();
    let container = spec
        .into_iter()
        .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
        .find(|c| Some(c.name.as_str()) == container_name)
        .ok_or_else(|| PrepareError::Unsupported(format!("resourceFieldRef: no container {container_name:?}")))?;
    let resources = container.resources.as_ref();
    let (kind, resource) = selector
        .resource
        .split_once('.')
        .ok_or_else(|| PrepareError::Unsupported(format!("unsupported resourceFieldRef {}", selector.resource)))?;
    let limits = resources.and_then(|r| r.limits.as_ref()).and_then(|l| l.get(resource));
    let requests = resources
        .and_then(|r| r.requests.as_ref())
        .and_then(|l| l.get(resource));
    let node_amount = match resource {
        "cpu" => capacity.cpus.to_string(),
        "memory" => capacity.memory_bytes.to_string(),
        "ephemeral-storage" => "100Gi".to_string(),
        other => {
            return Err(PrepareError::Unsupported(format!(
                "unsupported resourceFieldRef resource {other}"
            )));
        }
    };
    let amount = match kind {
        "limits" => limits.map_or(node_amount, |q| q.0.clone()),
        "requests" => requests.or(limits).map_or_else(|| "0".to_string(), |q| q.0.clone()),
        other => {
            return Err(PrepareError::Unsupported(format!(
                "unsupported resourceFieldRef {other}.{resource}"
            )));
        }
    };
    let divisor = selector.divisor.as_ref().map_or("1", |q| q.0.as_str());
    let value = Quantity::parse(&amount)
        .zip(Quantity::parse(divisor))
        .and_then(|(amount, divisor)| amount.divide_ceil(divisor))
        .ok_or_else(|| PrepareError::Unsupported(format!("cannot divide {amount} by {divisor}")))?;
    Ok(value.to_string())
}

/// A container's environment from `envFrom` then `env`, in order, with `$(VAR)` references to
/// variables defined earlier (and to `base`) expanded. `base` comes first and may be overridden.
pub async fn container_env(
    sources: &mut Sources,
    pod: &Pod,
    container: &Container,
    capacity: &Capacity,
    base: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, PrepareError> {
    let mut order: Vec<String> = Vec::new();
    let mut values: HashMap<String, String> = HashMap::new();
    fn set(values: &mut HashMap<String, String>, order: &mut Vec<String>, name: String, value: String) {
        if values.insert(name.clone(), value).is_none() {
            order.push(name);
        }
    }
    for (name, value) in base {
        set(&mut values, &mut order, name, value);
    }
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (kind, name, optional) = if let Some(reference) = &from.config_map_ref {
            (
                Kind::ConfigMap,
                reference.name.clone(),
                reference.optional.unwrap_or(false),
            )
        } else if let Some(reference) = &from.secret_ref {
            (
                Kind::Secret,
                reference.name.clone(),
                reference.optional.unwrap_or(false),
            )
        } else {
            continue;
        };
        let data = match kind {
            Kind::Secret => sources.secret(&name).await?,
            Kind::ConfigMap => sources.config_map(&name).await?,
        };
        match data {
            Some(data) => {
                for (key, value) in data {
                    let value = String::from_utf8_lossy(&value).into_owned();
                    set(&mut values, &mut order, format!("{prefix}{key}"), value);
                }
            }
            None if optional => {}
            None => return Err(PrepareError::Missing(format!("{} \"{name}\" not found", kind.name()))),
        }
    }
    for var in container.env.iter().flatten() {
        let value = if let Some(from) = &var.value_from {
            let value = if let Some(r) = &from.secret_key_ref {
                sources
                    .key(Kind::Secret, &r.name, &r.key, r.optional.unwrap_or(false))
                    .await?
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
            } else if let Some(r) = &from.config_map_key_ref {
                sources
                    .key(Kind::ConfigMap, &r.name, &r.key, r.optional.unwrap_or(false))
                    .await?
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
            } else if let Some(r) = &from.field_ref {
                Some(field_value(pod, r)?)
            } else if let Some(r) = &from.resource_field_ref {
                Some(resource_value(pod, Some(&container.name), r, capacity)?)
            } else {
                return Err(PrepareError::Unsupported(format!(
                    "env {}: unsupported valueFrom source",
                    var.name
                )));
            };
            // An optional key that is missing leaves the variable unset.
            match value {
                Some(value) => value,
                None => continue,
            }
        } else {
            expand(var.value.as_deref().unwrap_or_default(), |name| {
                values.get(name).cloned()
            })
        };
        set(&mut values, &mut order, var.name.clone(), value);
    }
    Ok(order
        .into_iter()
        .filter_map(|name| values.remove(&name).map(|value| (name, value)))
        .collect())
}

/// A service-account token from the TokenRequest API, bound to the pod (it stops working once the
/// pod is deleted). No audience means the API server's own.
pub async fn service_account_token(
    client: &Client,
    pod: &Pod,
    audience: Option<&str>,
    expiration_seconds: i64,
) -> Result<String, PrepareError> {
    let namespace = pod.namespace().unwrap_or_default();
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
    let request = TokenRequest {
        metadata: ObjectMeta::default(),
        spec: TokenRequestSpec {
            audiences: audience.map(|a| vec![a.to_string()]).unwrap_or_default(),
            expiration_seconds: Some(expiration_seconds.max(600)),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod.name_any()),
                uid: pod.metadata.uid.clone(),
            }),
        },
        status: None,
    };
    let response = api
        .create_token_request(&account, &PostParams::default(), &request)
        .await
        .map_err(|source| match &source {
            kube::Error::Api(status) if status.code == 404 => {
                PrepareError::Missing(format!("service account {namespace}/{account} not found"))
            }
            _ => PrepareError::Api {
                what: format!("requesting a token for service account {namespace}/{account}"),
                source,
            },
        })?;
    response
        .status
        .map(|s| s.token)
        .ok_or_else(|| PrepareError::Missing(format!("no token returned for service account {namespace}/{account}")))
}

/// Whether the pod gets API credentials: the pod's `automountServiceAccountToken`, else its
/// ServiceAccount's, else yes.
pub async fn automount(client: &Client, pod: &Pod) -> Result<bool, PrepareError> {
    if let Some(value) = pod.spec.as_ref().and_then(|s| s.automount_service_account_token) {
        return Ok(value);
    }
    let namespace = pod.namespace().unwrap_or_default();
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
    let account = api.get_opt(&account).await.map_err(|source| PrepareError::Api {
        what: format!("reading service account {account}"),
        source,
    })?;
    Ok(account.and_then(|a| a.automount_service_account_token).unwrap_or(true))
}

/// Checks that a volume item path is relative and stays inside the volume.
fn safe_relative(path: &str) -> Result<&Path, PrepareError> {
    let relative = Path::new(path);
    if path.is_empty() || relative.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(PrepareError::Unsupported(format!(
            "volume item path {path:?} must be relative without `..`"
        )));
    }
    Ok(relative)
}

fn write_file(dir: &Path, relative: &str, contents: &[u8], mode: i32) -> Result<(), PrepareError> {
    let path = dir.join(safe_relative(relative)?);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_error(parent))?;
    }
    std::fs::write(&path, contents).map_err(io_error(&path))?;
    let mode = u32::try_from(mode & 0o777).unwrap_or(0o644);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(io_error(&path))?;
    Ok(())
}

/// Writes the keys of a Secret or ConfigMap into `dir`: every key, or only `items` (key → path).
#[allow(clippy::too_many_arguments)]
/// The keys of a Secret or ConfigMap a volume (or a projection) holds.
struct Keys<'a> {
    kind: Kind,
    name: &'a str,
    items: Option<&'a Vec<k8s_openapi::api::core::v1::KeyToPath>>,
    optional: Option<bool>,
}

impl<'a> Keys<'a> {
    fn new(
        kind: Kind,
        name: &'a str,
        items: Option<&'a Vec<k8s_openapi::api::core::v1::KeyToPath>>,
        optional: Option<bool>,
    ) -> Self {
        Keys {
            kind,
            name,
            items,
            optional,
        }
    }
}

async fn write_keys(sources: &mut Sources, keys: Keys<'_>, default_mode: i32, dir: &Path) -> Result<(), PrepareError> {
    let Keys {
        kind,
        name,
        items,
        optional,
    } = keys;
    let optional = optional.unwrap_or(false);
    let data = match kind {
        Kind::Secret => sources.secret(name).await?,
        Kind::ConfigMap => sources.config_map(name).await?,
    };
    let Some(data) = data else {
        if optional {
            return Ok(());
        }
        return Err(PrepareError::Missing(format!("{} \"{name}\" not found", kind.name())));
    };
    match items {
        Some(items) if !items.is_empty() => {
            for item in items {
                match data.get(&item.key) {
                    Some(value) => write_file(dir, &item.path, value, item.mode.unwrap_or(default_mode))?,
                    None if optional => {}
                    None => {
                        return Err(PrepareError::Missing(format!(
                            "couldn't find key {} in {} {name}",
                            item.key,
                            kind.name()
                        )));
                    }
                }
            }
        }
        _ => {
            for (key, value) in &data {
                write_file(dir, key, value, default_mode)?;
            }
        }
    }
    Ok(())
}

fn downward_file(
    pod: &Pod,
    item: &DownwardAPIVolumeFile,
    capacity: &Capacity,
    default_mode: i32,
    dir: &Path,
) -> Result<(), PrepareError> {
    let value = if let Some(field) = &item.field_ref {
        field_value(pod, field)?
    } else if let Some(resource) = &item.resource_field_ref {
        resource_value(pod, None, resource, capacity)?
    } else {
        return Err(PrepareError::Unsupported(format!(
            "downward API item {} has no source",
            item.path
        )));
    };
    write_file(dir, &item.path, value.as_bytes(), item.mode.unwrap_or(default_mode))
}

const DEFAULT_MODE: i32 = 0o644;

/// Materialises one volume under `dir`.
pub async fn materialise(
    sources: &mut Sources,
    client: &Client,
    pod: &Pod,
    volume: &Volume,
    capacity: &Capacity,
    dir: &Path,
) -> Result<(), PrepareError> {
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    if volume.empty_dir.is_some() {
        return Ok(());
    }
    if let Some(secret) = &volume.secret {
        let keys = Keys::new(
            Kind::Secret,
            secret.secret_name.as_deref().unwrap_or_default(),
            secret.items.as_ref(),
            secret.optional,
        );
        return write_keys(sources, keys, secret.default_mode.unwrap_or(DEFAULT_MODE), dir).await;
    }
    if let Some(config_map) = &volume.config_map {
        let keys = Keys::new(
            Kind::ConfigMap,
            &config_map.name,
            config_map.items.as_ref(),
            config_map.optional,
        );
        return write_keys(sources, keys, config_map.default_mode.unwrap_or(DEFAULT_MODE), dir).await;
    }
    if let Some(downward) = &volume.downward_api {
        let mode = downward.default_mode.unwrap_or(DEFAULT_MODE);
        for item in downward.items.iter().flatten() {
            downward_file(pod, item, capacity, mode, dir)?;
        }
        return Ok(());
    }
    if let Some(projected) = &volume.projected {
        let mode = projected.default_mode.unwrap_or(DEFAULT_MODE);
        for source in projected.sources.iter().flatten() {
            if let Some(secret) = &source.secret {
                let keys = Keys::new(Kind::Secret, &secret.name, secret.items.as_ref(), secret.optional);
                write_keys(sources, keys, mode, dir).await?;
            } else if let Some(config_map) = &source.config_map {
                let keys = Keys::new(
                    Kind::ConfigMap,
                    &config_map.name,
                    config_map.items.as_ref(),
                    config_map.optional,
                );
                write_keys(sources, keys, mode, dir).await?;
            } else if let Some(downward) = &source.downward_api {
                for item in downward.items.iter().flatten() {
                    downward_file(pod, item, capacity, mode, dir)?;
                }
            } else if let Some(token) = &source.service_account_token {
                let value = service_account_token(
                    client,
                    pod,
                    token.audience.as_deref(),
                    token.expiration_seconds.unwrap_or(3607),
                )
                .await?;
                write_file(dir, &token.path, value.as_bytes(), mode)?;
            } else {
                return Err(PrepareError::Unsupported(format!(
                    "volume {}: unsupported projected source (supported: secret, configMap, downwardAPI, serviceAccountToken)",
                    volume.name
                )));
            }
        }
        return Ok(());
    }
    Err(PrepareError::Unsupported(format!(
        "volume {}: unsupported volume type (supported: emptyDir, secret, configMap, downwardAPI, projected)",
        volume.name
    )))
}
/// `name` of kind `K` in `namespace`, read once per pod and kept in `cache` (`None`: it does not
/// exist).
async fn read_once<'c, K>(
    client: &Client,
    namespace: &str,
    cache: &'c mut HashMap<String, Option<K>>,
    kind: &str,
    name: &str,
) -> Result<Option<&'c K>, PrepareError>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    if !cache.contains_key(name) {
        let api: Api<K> = Api::namespaced(client.clone(), namespace);
        let object = api.get_opt(name).await.map_err(|source| PrepareError::Api {
            what: format!("reading {kind} {name}"),
            source,
        })?;
        cache.insert(name.into(), object);
    }
    Ok(cache.get(name).and_then(Option::as_ref))
}
