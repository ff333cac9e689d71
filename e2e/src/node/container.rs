//! Container mode (`kglue-node-agent --run-images`): a pod's image is pulled by reference from its
//! registry and its container runs inside the image's own filesystem under runc, the OCI runtime
//! containerd uses, as a kubelet would run it. This proves the images themselves: a missing shared
//! library, CA bundle or user, or a write to a read-only root, fails the pod as it would on a
//! cluster.
//!
//! What follows the kubelet: the entrypoint/cmd rules, the image's env under the container's, the
//! user (securityContext, then the image's `User`), `runAsNonRoot`, a fresh overlay over the
//! image per start (as containerd's snapshots; read-only when `readOnlyRootFilesystem`), volumes as bind mounts (read-only where asked), `fsGroup`
//! ownership of volumes, the service-account token at its well-known path with
//! `KUBERNETES_SERVICE_HOST/PORT`, the termination-message file, `/etc/hosts`, capabilities,
//! `allowPrivilegeEscalation` and the memory limit (a cgroup). What differs: pods share the
//! host's network namespace (servers in tests listen on 127.0.0.1 only, and there is no CNI or
//! Service network here), and runc is built without seccomp.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Container, PodSpec};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::process::Command;

use super::spec::{Quantity, split_image};

/// The tools container mode runs, and where it keeps images and runc's state.
#[derive(Debug)]
pub struct Runtime {
    /// go-containerregistry's `crane` (pulls).
    crane: PathBuf,
    /// `runc`.
    runc: PathBuf,
    /// runc's `--root` (container state).
    state: PathBuf,
    /// Unpacked images: `<digest>/rootfs` and `<digest>/config.json`.
    images: PathBuf,
    /// One lock per digest, so two pods of one image unpack it once.
    pulling: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The parts of an image's config a container uses (`crane config`: the `config` object).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    /// `ENTRYPOINT`.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// `CMD`.
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// `ENV`, as `NAME=value`.
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// `USER`: `uid`, `uid:gid`, `name` or `name:group`.
    #[serde(default)]
    pub user: Option<String>,
    /// `WORKDIR`.
    #[serde(default)]
    pub working_dir: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    config: ImageConfig,
}

/// A pulled, unpacked image.
#[derive(Debug, Clone)]
pub struct Image {
    /// `repository@sha256:…`, the container status's `imageID`.
    pub id: String,
    /// The image's filesystem (read-only to containers).
    pub rootfs: PathBuf,
    /// Its config.
    pub config: ImageConfig,
}

/// Why an image could not be pulled (the pod waits in `ErrImagePull` and tries again).
#[derive(Debug, thiserror::Error)]
#[error("pulling {reference}: {message}")]
pub struct PullError {
    reference: String,
    message: String,
}

impl Runtime {
    /// A runtime keeping its state under `state_dir`.
    pub fn new(crane: PathBuf, runc: PathBuf, state_dir: &Path) -> Runtime {
        Runtime {
            crane,
            runc,
            state: state_dir.join("runc"),
            images: state_dir.join("images"),
            pulling: Mutex::default(),
        }
    }

    /// When the agent stops: every container it started is killed and deleted, and every root
    /// it mounted is unmounted, so nothing is left running or mounted under the state directory
    /// (the container tasks that would do it one by one do not get to run again).
    pub fn clean_up(&self) {
        let listed = std::process::Command::new(&self.runc)
            .arg("--root")
            .arg(&self.state)
            .args(["list", "--quiet"])
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for id in listed.lines() {
            delete_container(&self.runc, &self.state, id);
        }
        let pods = self.state.with_file_name("pods");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for point in mounts.lines().filter_map(|line| line.split(' ').nth(4)) {
            if Path::new(point).starts_with(&pods) {
                let _ = std::process::Command::new("umount")
                    .arg("--lazy")
                    .arg(point)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }

    /// `runc` and its state directory, for starting and removing containers.
    pub fn runc(&self) -> (&Path, &Path) {
        (&self.runc, &self.state)
    }

    /// Resolves `reference` to a digest and unpacks that image once (`crane export`, which
    /// flattens the layers and applies their whiteouts), with its config.
    pub async fn pull(&self, reference: &str) -> Result<Image, PullError> {
        let failed = |message: String| PullError {
            reference: reference.to_string(),
            message,
        };
        let (repository, _, digest) = split_image(reference);
        let digest = match digest {
            Some(digest) => digest.to_string(),
            None => self
                .crane(&["digest", reference])
                .await
                .map_err(failed)?
                .trim()
                .to_string(),
        };
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| failed(format!("unexpected digest {digest:?}")))?;
        let pinned = format!("{repository}@{digest}");
        let dir = self.images.join(hex);
        let lock = {
            let mut pulling = self.pulling.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            pulling.entry(hex.to_string()).or_default().clone()
        };
        let _guard = lock.lock().await;
        let config_path = dir.join("config.json");
        if !config_path.exists() {
            self.unpack(&pinned, &dir).await.map_err(failed)?;
        }
        let config: ConfigFile = std::fs::read(&config_path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
            .map_err(|e| failed(format!("its config {}: {e}", config_path.display())))?;
        Ok(Image {
            id: pinned,
            rootfs: dir.join("rootfs"),
            config: config.config,
        })
    }

    async fn unpack(&self, pinned: &str, dir: &Path) -> Result<(), String> {
        let partial = dir.with_extension("partial");
        let _ = std::fs::remove_dir_all(&partial);
        let rootfs = partial.join("rootfs");
        std::fs::create_dir_all(&rootfs).map_err(|e| format!("{}: {e}", rootfs.display()))?;
        // crane writes the flattened filesystem as a tar stream; tar (as root) keeps owners and
        // modes exactly, as a runtime's snapshotter does.
        let script = "set -o pipefail; \"$0\" export \"$1\" - | tar -x -C \"$2\" --numeric-owner --same-owner -p";
        let output = Command::new("bash")
            .args(["-c", script])
            .arg(&self.crane)
            .arg(pinned)
            .arg(&rootfs)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| format!("running crane export: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "crane export failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        let config = self.crane(&["config", pinned]).await?;
        std::fs::write(partial.join("config.json"), config).map_err(|e| format!("writing its config: {e}"))?;
        let _ = std::fs::remove_dir_all(dir);
        std::fs::rename(&partial, dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        tracing::info!(image = pinned, dir = %dir.display(), "pulled and unpacked the image");
        Ok(())
    }

    async fn crane(&self, args: &[&str]) -> Result<String, String> {
        let output = Command::new(&self.crane)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| format!("running {}: {e}", self.crane.display()))?;
        if !output.status.success() {
            return Err(format!(
                "crane {} failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// The argv of a container from its image: Kubernetes' rules. `command` replaces the entrypoint
/// (and drops the image's cmd); `args` replaces the cmd.
pub fn argv(image: &ImageConfig, command: &[String], args: &[String]) -> Result<Vec<String>, String> {
    let mut argv = if command.is_empty() {
        image.entrypoint.clone().unwrap_or_default()
    } else {
        command.to_vec()
    };
    if !args.is_empty() {
        argv.extend(args.iter().cloned());
    } else if command.is_empty() {
        argv.extend(image.cmd.iter().flatten().cloned());
    }
    if argv.first().is_none_or(String::is_empty) {
        return Err("neither the container nor its image names a command".into());
    }
    Ok(argv)
}

/// The image's env with the container's on top (a name the container sets wins).
pub fn environment(image: &ImageConfig, container: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = image
        .env
        .iter()
        .flatten()
        .filter_map(|entry| entry.split_once('='))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .filter(|(name, _)| !container.iter().any(|(set, _)| set == name))
        .collect();
    env.extend(container);
    env
}

/// Who a container runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct User {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
}

/// The container's user: `runAsUser`/`runAsGroup` of the container, then of the pod, then the
/// image's `User` (names looked up in the image's `/etc/passwd` and `/etc/group`). Refuses root
/// when `runAsNonRoot` is set, with the kubelet's message.
pub fn user(spec: &PodSpec, container: &Container, image: &ImageConfig, rootfs: &Path) -> Result<User, String> {
    let own = container.security_context.as_ref();
    let pod = spec.security_context.as_ref();
    let (image_user, image_group) = match image.user.as_deref().filter(|u| !u.is_empty()) {
        Some(user) => match user.split_once(':') {
            Some((user, group)) => (Some(user), Some(group)),
            None => (Some(user), None),
        },
        None => (None, None),
    };
    let image_uid = match image_user {
        Some(name) => Some(lookup(rootfs, "etc/passwd", name)?),
        None => None,
    };
    let uid = own
        .and_then(|s| s.run_as_user)
        .or(pod.and_then(|s| s.run_as_user))
        .map(|id| u32::try_from(id).map_err(|_| format!("runAsUser {id} is out of range")))
        .transpose()?
        .or(image_uid)
        .unwrap_or(0);
    let gid = match own.and_then(|s| s.run_as_group).or(pod.and_then(|s| s.run_as_group)) {
        Some(id) => u32::try_from(id).map_err(|_| format!("runAsGroup {id} is out of range"))?,
        None => match image_group {
            Some(group) => lookup(rootfs, "etc/group", group)?,
            // The user's primary group from the image's passwd, as a runtime does.
            None => primary_group(rootfs, uid).unwrap_or(0),
        },
    };
    let non_root = own
        .and_then(|s| s.run_as_non_root)
        .or(pod.and_then(|s| s.run_as_non_root))
        .unwrap_or(false);
    if non_root && uid == 0 {
        return Err("container has runAsNonRoot and image will run as root".into());
    }
    Ok(User { uid, gid })
}

/// A numeric id, or a name's id from the image's passwd or group file.
fn lookup(rootfs: &Path, file: &str, name: &str) -> Result<u32, String> {
    if let Ok(id) = name.parse() {
        return Ok(id);
    }
    let table = std::fs::read_to_string(rootfs.join(file)).unwrap_or_default();
    table
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            Some((fields.next()?, fields.nth(1)?))
        })
        .find(|(entry, _)| *entry == name)
        .and_then(|(_, id)| id.parse().ok())
        .ok_or_else(|| format!("the image's user {name:?} is not in its /{file}"))
}

fn primary_group(rootfs: &Path, uid: u32) -> Option<u32> {
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.get(2)?.parse::<u32>().ok()? == uid).then(|| fields.get(3)?.parse().ok())?
    })
}

/// A bind mount into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Host path.
    pub source: PathBuf,
    /// Container path.
    pub destination: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// Everything of one container's OCI runtime spec that is not fixed.
#[derive(Debug, Clone)]
pub struct Launch {
    /// argv inside the container.
    pub argv: Vec<String>,
    /// The complete environment.
    pub env: Vec<(String, String)>,
    /// Working directory inside the container.
    pub cwd: String,
    /// Who runs it, and its supplementary groups (`fsGroup`, `supplementalGroups`).
    pub user: User,
    /// Supplementary group ids.
    pub groups: Vec<u32>,
    /// The root filesystem.
    pub rootfs: PathBuf,
    /// Whether the root filesystem is read-only.
    pub read_only_root: bool,
    /// The pod's name (the container's hostname).
    pub hostname: String,
    /// Bind mounts, in order.
    pub binds: Vec<Bind>,
    /// Capabilities the process keeps.
    pub capabilities: Vec<String>,
    /// `no_new_privs` (`allowPrivilegeEscalation: false`).
    pub no_new_privileges: bool,
    /// Memory limit in bytes.
    pub memory_limit: Option<i64>,
    /// The container's cgroup path.
    pub cgroup: String,
}

/// The capabilities a container runtime grants by default (containerd's and CRI-O's set).
const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The capabilities of a container: the default set, minus `drop` (`ALL` drops all), plus `add`.
pub fn capabilities(container: &Container) -> Vec<String> {
    let set = container
        .security_context
        .as_ref()
        .and_then(|s| s.capabilities.as_ref());
    let normal = |name: &String| {
        let upper = name.to_ascii_uppercase();
        if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        }
    };
    let drop: Vec<String> = set
        .and_then(|s| s.drop.as_ref())
        .into_iter()
        .flatten()
        .map(normal)
        .collect();
    let mut kept: Vec<String> = if drop.iter().any(|d| d == "CAP_ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !drop.contains(c))
            .collect()
    };
    for add in set.and_then(|s| s.add.as_ref()).into_iter().flatten().map(normal) {
        if !kept.contains(&add) {
            kept.push(add);
        }
    }
    kept
}

/// The memory limit of a container in bytes.
pub fn memory_limit(container: &Container) -> Option<i64> {
    let limit = container.resources.as_ref()?.limits.as_ref()?.get("memory")?;
    let bytes = Quantity::parse(&limit.0)?.divide_ceil(Quantity::parse("1")?)?;
    i64::try_from(bytes).ok().filter(|b| *b > 0)
}

/// The OCI runtime spec (`config.json`) of a container: its own mount, PID, IPC and UTS
/// namespaces, the host's network namespace, and the usual `/proc`, `/dev` and `/sys`.
pub fn runtime_spec(launch: &Launch) -> Value {
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
    ];
    for bind in &launch.binds {
        let mut options = vec!["rbind", "rprivate"];
        if bind.read_only {
            options.push("ro");
        }
        mounts.push(json!({
            "destination": bind.destination,
            "type": "bind",
            "source": bind.source,
            "options": options,
        }));
    }
    let env: Vec<String> = launch.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut linux = json!({
        "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
        "cgroupsPath": launch.cgroup,
        "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                        "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                        "/proc/scsi"],
        "readonlyPaths": ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                          "/proc/sysrq-trigger"],
    });
    if let Some(limit) = launch.memory_limit {
        linux["resources"] = json!({"memory": {"limit": limit}});
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": launch.user.uid, "gid": launch.user.gid, "additionalGids": launch.groups},
            "args": launch.argv,
            "env": env,
            "cwd": launch.cwd,
            "capabilities": {
                "bounding": launch.capabilities,
                "effective": launch.capabilities,
                "permitted": launch.capabilities,
            },
            "noNewPrivileges": launch.no_new_privileges,
        },
        "root": {"path": launch.rootfs, "readonly": launch.read_only_root},
        "hostname": launch.hostname,
        "mounts": mounts,
        "linux": linux,
    })
}

/// The kubelet's ownership rules for a volume when the pod has an `fsGroup`: every file and
/// directory gets that group, files gain group read (and write on writable volumes), directories
/// also setgid and group execute (Kubernetes' `SetVolumeOwnership`).
pub fn apply_fs_group(dir: &Path, group: u32, read_only: bool) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mask = if read_only { 0o440 } else { 0o660 };
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let metadata = std::fs::symlink_metadata(&path)?;
        if metadata.file_type().is_symlink() {
            continue;
        }
        std::os::unix::fs::lchown(&path, None, Some(group))?;
        let extra = if metadata.is_dir() { mask | 0o2110 } else { mask };
        let mode = metadata.permissions().mode() | extra;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        if metadata.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        }
    }
    Ok(())
}

/// A started container's handle for removing it: runc's container id and state directory, and the
/// overlay the agent mounts for it. Every container gets one, read-only roots too: runc creates
/// the mount points of the container's binds in its root, and those must not land in the image's
/// unpacked filesystem, which every container of that image shares.
#[derive(Debug, Clone)]
pub struct Handle {
    /// `runc`.
    pub runc: PathBuf,
    /// runc's `--root`.
    pub state: PathBuf,
    /// The container id.
    pub id: String,
    /// The image's unpacked filesystem: the overlay's lower layer.
    pub image: PathBuf,
    /// The container's directory: the overlay's `upper` and `work`, and `rootfs`, where it is
    /// mounted.
    pub dir: PathBuf,
}

impl Handle {
    /// Before a start: removes what an earlier start left, and mounts a fresh layer over the image
    /// (a restarted container starts from the image again, as with a kubelet).
    pub fn prepare(&self) -> std::io::Result<()> {
        self.remove();
        for sub in ["upper", "work", "rootfs"] {
            let path = self.dir.join(sub);
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path)?;
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            self.image.display(),
            self.dir.join("upper").display(),
            self.dir.join("work").display()
        );
        let status = std::process::Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &options])
            .arg(self.dir.join("rootfs"))
            .status()?;
        if !status.success() {
            return Err(std::io::Error::other(format!(
                "mounting the container's root failed ({status})"
            )));
        }
        Ok(())
    }

    /// After the container ended (or its runc was killed): kills and deletes the container, and
    /// unmounts its root.
    pub fn remove(&self) {
        delete_container(&self.runc, &self.state, &self.id);
        let _ = std::process::Command::new("umount")
            .arg(self.dir.join("rootfs"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `runc delete --force`: kills the container if it still runs and removes its state; one that is
/// already gone is fine.
fn delete_container(runc: &Path, state: &Path, id: &str) {
    let _ = std::process::Command::new(runc)
        .arg("--root")
        .arg(state)
        .args(["delete", "--force", id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Capabilities, PodSecurityContext, ResourceRequirements, SecurityContext};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|s| s.to_string()).collect()
    }

    fn image() -> ImageConfig {
        ImageConfig {
            entrypoint: Some(strings(&["/usr/local/bin/kglue"])),
            cmd: Some(strings(&["--help"])),
            env: Some(strings(&[
                "PATH=/usr/local/bin:/usr/bin",
                "SSL_CERT_FILE=/etc/ssl/certs/ca.crt",
            ])),
            user: Some("65532:65532".into()),
            working_dir: Some("/home/nonroot".into()),
        }
    }

    #[test]
    fn argv_follows_kubernetes_entrypoint_rules() {
        let image = image();
        assert_eq!(
            argv(&image, &[], &[]).ok(),
            Some(strings(&["/usr/local/bin/kglue", "--help"]))
        );
        assert_eq!(
            argv(&image, &[], &strings(&["run", "x"])).ok(),
            Some(strings(&["/usr/local/bin/kglue", "run", "x"]))
        );
        assert_eq!(
            argv(&image, &strings(&["/bin/sh"]), &[]).ok(),
            Some(strings(&["/bin/sh"]))
        );
        assert_eq!(
            argv(&image, &strings(&["kglue"]), &strings(&["run"])).ok(),
            Some(strings(&["kglue", "run"]))
        );
        assert!(argv(&ImageConfig::default(), &[], &[]).is_err());
    }

    #[test]
    fn the_containers_env_wins_over_the_images() {
        let env = environment(&image(), vec![("PATH".into(), "/x".into()), ("A".into(), "1".into())]);
        assert_eq!(
            env,
            vec![
                ("SSL_CERT_FILE".to_string(), "/etc/ssl/certs/ca.crt".to_string()),
                ("PATH".to_string(), "/x".to_string()),
                ("A".to_string(), "1".to_string()),
            ]
        );
    }

    #[test]
    fn user_comes_from_the_security_context_then_the_image() {
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::create_dir_all(dir.path().join("etc")).expect("etc");
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532::/home/nonroot:/sbin/nologin\n",
        )
        .expect("passwd");
        let spec = PodSpec::default();
        let container = Container::default();
        assert_eq!(
            user(&spec, &container, &image(), dir.path()),
            Ok(User { uid: 65532, gid: 65532 })
        );
        let named = ImageConfig {
            user: Some("nonroot".into()),
            ..image()
        };
        assert_eq!(
            user(&spec, &container, &named, dir.path()),
            Ok(User { uid: 65532, gid: 65532 })
        );
        let missing = ImageConfig {
            user: Some("nobody".into()),
            ..image()
        };
        assert!(user(&spec, &container, &missing, dir.path()).is_err());
        let pinned = Container {
            security_context: Some(SecurityContext {
                run_as_user: Some(1000),
                run_as_group: Some(2000),
                ..SecurityContext::default()
            }),
            ..Container::default()
        };
        assert_eq!(
            user(&spec, &pinned, &image(), dir.path()),
            Ok(User { uid: 1000, gid: 2000 })
        );
        let non_root = PodSpec {
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                ..PodSecurityContext::default()
            }),
            ..PodSpec::default()
        };
        let root_image = ImageConfig { user: None, ..image() };
        assert_eq!(
            user(&non_root, &container, &root_image, dir.path()),
            Err("container has runAsNonRoot and image will run as root".into())
        );
        assert!(user(&non_root, &container, &image(), dir.path()).is_ok());
    }

    #[test]
    fn capabilities_drop_all_and_add() {
        let with = |drop: &[&str], add: &[&str]| Container {
            security_context: Some(SecurityContext {
                capabilities: Some(Capabilities {
                    drop: Some(strings(drop)),
                    add: Some(strings(add)),
                }),
                ..SecurityContext::default()
            }),
            ..Container::default()
        };
        assert!(capabilities(&with(&["ALL"], &[])).is_empty());
        assert_eq!(
            capabilities(&with(&["ALL"], &["NET_BIND_SERVICE"])),
            strings(&["CAP_NET_BIND_SERVICE"])
        );
        let default = capabilities(&Container::default());
        assert_eq!(default.len(), DEFAULT_CAPABILITIES.len());
        assert!(!capabilities(&with(&["chown"], &[])).contains(&"CAP_CHOWN".to_string()));
    }

    #[test]
    fn memory_limits_become_bytes() {
        let container = |limit: &str| Container {
            resources: Some(ResourceRequirements {
                limits: Some([("memory".to_string(), K8sQuantity(limit.into()))].into()),
                ..ResourceRequirements::default()
            }),
            ..Container::default()
        };
        assert_eq!(memory_limit(&container("4Gi")), Some(4 << 30));
        assert_eq!(memory_limit(&container("512M")), Some(512_000_000));
        assert_eq!(memory_limit(&Container::default()), None);
    }

    #[test]
    fn the_runtime_spec_has_the_launch() {
        let launch = Launch {
            argv: strings(&["/usr/local/bin/kglue", "run"]),
            env: vec![("A".into(), "1".into())],
            cwd: "/home/nonroot".into(),
            user: User { uid: 65532, gid: 65532 },
            groups: vec![65532],
            rootfs: "/images/x/rootfs".into(),
            read_only_root: true,
            hostname: "pod-1".into(),
            binds: vec![Bind {
                source: "/pods/p/volumes/secrets".into(),
                destination: "/var/run/secrets/kglue".into(),
                read_only: true,
            }],
            capabilities: Vec::new(),
            no_new_privileges: true,
            memory_limit: Some(1 << 30),
            cgroup: "/kglue/p-main".into(),
        };
        let spec = runtime_spec(&launch);
        assert_eq!(spec["process"]["user"]["uid"], 65532);
        assert_eq!(spec["process"]["args"][1], "run");
        assert_eq!(spec["process"]["env"][0], "A=1");
        assert_eq!(spec["root"]["readonly"], true);
        assert_eq!(spec["linux"]["resources"]["memory"]["limit"], 1_i64 << 30);
        let namespaces = spec["linux"]["namespaces"].as_array().expect("namespaces");
        assert!(
            !namespaces.iter().any(|n| n["type"] == "network"),
            "the host's network is shared"
        );
        let mounts = spec["mounts"].as_array().expect("mounts");
        let secrets = mounts
            .iter()
            .find(|m| m["destination"] == "/var/run/secrets/kglue")
            .expect("the volume is mounted");
        assert_eq!(secrets["options"], json!(["rbind", "rprivate", "ro"]));
    }

    #[test]
    fn fs_group_gives_the_group_read_access() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().expect("temporary directory");
        let file = dir.path().join("password");
        std::fs::write(&file, "x").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).expect("chmod");
        apply_fs_group(dir.path(), 4321, true).expect("ownership");
        let metadata = std::fs::metadata(&file).expect("metadata");
        assert_eq!(metadata.gid(), 4321);
        assert_eq!(metadata.permissions().mode() & 0o777, 0o440);
        let dir_mode = std::fs::metadata(dir.path()).expect("metadata").permissions().mode();
        assert_eq!(dir_mode & 0o2000, 0o2000, "directories are setgid");
    }
}
