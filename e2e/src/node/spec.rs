//! Pure pieces of turning a Pod spec into processes: image mapping, `$(VAR)` expansion, the
//! mount-path rewrite, resource quantities and termination messages. No I/O here, so everything is
//! unit-tested.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What an image runs as on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageTarget {
    /// A local executable: the image's entrypoint.
    Executable(PathBuf),
    /// No entrypoint: the container's `command`/`args` run as given on the host.
    Host,
    /// Container mode: the image is pulled by this reference and run under runc
    /// (`--run-images`, see `container.rs`).
    Pull(String),
}

/// Maps image references to local executables (`--image IMAGE=PATH`, `--host-image IMAGE`).
#[derive(Debug, Clone, Default)]
pub struct ImageMap {
    entries: HashMap<String, ImageTarget>,
}

impl ImageMap {
    /// Adds a mapping; a later mapping for the same reference wins.
    pub fn insert(&mut self, image: &str, target: ImageTarget) {
        self.entries.insert(image.to_string(), target);
    }

    /// The target for a pod's image. A mapping matches the exact reference; a mapping without a
    /// tag also matches every tag and digest of that repository; an untagged pod image also matches
    /// a mapping for `:latest` (Kubernetes' default tag).
    pub fn resolve(&self, image: &str) -> Option<&ImageTarget> {
        let (repository, tag, digest) = split_image(image);
        let mut candidates = vec![image.to_string()];
        if let Some(tag) = tag {
            candidates.push(format!("{repository}:{tag}"));
        }
        candidates.push(repository.to_string());
        if tag.is_none() && digest.is_none() {
            candidates.push(format!("{repository}:latest"));
        }
        candidates.iter().find_map(|candidate| self.entries.get(candidate))
    }

    /// Whether no image is mapped.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Splits `registry:5000/repo/name:tag@sha256:…` into repository, tag and digest. A colon counts
/// as the tag separator only after the last slash, so a registry port is not a tag.
pub fn split_image(image: &str) -> (&str, Option<&str>, Option<&str>) {
    let (rest, digest) = match image.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (image, None),
    };
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    match rest[last_slash..].rfind(':') {
        Some(colon) => {
            let colon = last_slash + colon;
            (&rest[..colon], Some(&rest[colon + 1..]), digest)
        }
        None => (rest, None, digest),
    }
}

/// Kubernetes' `$(VAR)` expansion for command, args and env values: `$(NAME)` becomes the value of
/// NAME when NAME is defined and stays as written otherwise; `$$` is an escaped `$`; any other `$`
/// is kept.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(close) => {
                    let name = &inner[..close];
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[close + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The mount-path rewrite: a process runs on the host and cannot see container paths, so every env
/// value and command/args string that *starts with* a mount path (the whole path, or the path
/// followed by `/`) gets that prefix replaced by the host directory. The longest mount path wins.
#[derive(Debug, Clone, Default)]
pub struct PathRewriter {
    /// (container path without trailing slash, host path), longest container path first.
    mounts: Vec<(String, PathBuf)>,
}

impl PathRewriter {
    /// Adds a container path backed by a host path.
    pub fn add(&mut self, container_path: &str, host_path: &Path) {
        let trimmed = container_path.trim_end_matches('/');
        if trimmed.is_empty() {
            // A volume mounted at `/` would rewrite every absolute path; ignore it.
            return;
        }
        self.mounts.push((trimmed.to_string(), host_path.to_path_buf()));
        self.mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
    }

    /// The string with a leading container path replaced by its host path, or unchanged.
    pub fn rewrite(&self, value: &str) -> String {
        for (container, host) in &self.mounts {
            if let Some(rest) = value.strip_prefix(container.as_str())
                && (rest.is_empty() || rest.starts_with('/'))
            {
                return format!("{}{rest}", host.display());
            }
        }
        value.to_string()
    }

    /// The host path for a container path, when one applies.
    pub fn host_path(&self, value: &str) -> Option<PathBuf> {
        let rewritten = self.rewrite(value);
        (rewritten != value).then(|| PathBuf::from(rewritten))
    }
}

/// The argv of a container. `command` replaces the image's entrypoint and `args` its default
/// arguments, as in Kubernetes; the entrypoint of a mapped image is the mapped executable, and a
/// `command[0]` whose file name is that executable's file name also runs the mapped executable
/// (so `command: [kglue, run]` works for an image mapped to `target/debug/kglue`).
pub fn argv(target: &ImageTarget, command: &[String], args: &[String]) -> Result<Vec<String>, String> {
    let mut argv: Vec<String> = match target {
        ImageTarget::Executable(path) if command.is_empty() => vec![path.display().to_string()],
        ImageTarget::Executable(path) => {
            let mut argv = command.to_vec();
            let same_name = Path::new(&command[0]).file_name() == path.file_name();
            if same_name {
                argv[0] = path.display().to_string();
            }
            argv
        }
        ImageTarget::Host | ImageTarget::Pull(_) => command.to_vec(),
    };
    argv.extend(args.iter().cloned());
    if argv.first().is_none_or(|program| program.is_empty()) {
        return Err("the container has no command: a host image needs `command` or `args`".into());
    }
    Ok(argv)
}

/// Kubernetes reads at most this many bytes of a termination-message file, from its end.
pub const MAX_TERMINATION_MESSAGE: usize = 4096;
/// `FallbackToLogsOnError` takes at most this many bytes …
pub const MAX_TERMINATION_LOG_BYTES: usize = 2048;
/// … and at most this many lines from the end of the log.
pub const MAX_TERMINATION_LOG_LINES: usize = 80;

/// The termination message from a termination-message file: its last 4096 bytes.
pub fn termination_message_from_file(contents: &[u8]) -> String {
    let start = contents.len().saturating_sub(MAX_TERMINATION_MESSAGE);
    String::from_utf8_lossy(&contents[start..]).into_owned()
}

/// The termination message from a log: its last 80 lines, at most 2048 bytes.
pub fn termination_message_from_log(log: &[u8]) -> String {
    let start = log.len().saturating_sub(MAX_TERMINATION_LOG_BYTES);
    let tail = &log[start..];
    // A trailing newline does not start another line.
    let body = tail.strip_suffix(b"\n").unwrap_or(tail);
    let mut newlines = 0;
    let mut cut = 0;
    for (i, byte) in body.iter().enumerate().rev() {
        if *byte == b'\n' {
            newlines += 1;
            if newlines == MAX_TERMINATION_LOG_LINES {
                cut = i + 1;
                break;
            }
        }
    }
    String::from_utf8_lossy(&tail[cut..]).into_owned()
}

/// A resource quantity (`500m`, `2`, `1Gi`, `1e3`) as an exact fraction `numerator/denominator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    numerator: i128,
    denominator: i128,
}

impl Quantity {
    /// Parses a Kubernetes quantity.
    pub fn parse(text: &str) -> Option<Quantity> {
        let text = text.trim();
        let number_end = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
            .unwrap_or(text.len());
        let (number, suffix) = text.split_at(number_end);
        let (sign, digits) = match number.as_bytes().first() {
            Some(b'-') => (-1, &number[1..]),
            Some(b'+') => (1, &number[1..]),
            _ => (1, number),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        if whole.is_empty() && fraction.is_empty() {
            return None;
        }
        let mantissa: i128 = format!("{whole}{fraction}").parse().ok()?;
        let mut numerator = sign * mantissa;
        let mut denominator = 10i128.checked_pow(u32::try_from(fraction.len()).ok()?)?;
        let (multiply, divide): (i128, i128) = match suffix {
            "" => (1, 1),
            "n" => (1, 1_000_000_000),
            "u" => (1, 1_000_000),
            "m" => (1, 1000),
            "k" => (1000, 1),
            "M" => (1_000_000, 1),
            "G" => (1_000_000_000, 1),
            "T" => (1_000_000_000_000, 1),
            "P" => (1_000_000_000_000_000, 1),
            "E" => (1_000_000_000_000_000_000, 1),
            "Ki" => (1 << 10, 1),
            "Mi" => (1 << 20, 1),
            "Gi" => (1 << 30, 1),
            "Ti" => (1 << 40, 1),
            "Pi" => (1 << 50, 1),
            "Ei" => (1 << 60, 1),
            exponent if exponent.starts_with(['e', 'E']) => {
                let power: i32 = exponent[1..].parse().ok()?;
                let factor = 10i128.checked_pow(power.unsigned_abs())?;
                if power >= 0 { (factor, 1) } else { (1, factor) }
            }
            _ => return None,
        };
        numerator = numerator.checked_mul(multiply)?;
        denominator = denominator.checked_mul(divide)?;
        Some(Quantity { numerator, denominator })
    }

    /// `ceil(self / divisor)`, as the downward API reports resources.
    pub fn divide_ceil(self, divisor: Quantity) -> Option<i128> {
        let numerator = self.numerator.checked_mul(divisor.denominator)?;
        let denominator = self.denominator.checked_mul(divisor.numerator)?;
        if denominator == 0 {
            return None;
        }
        let quotient = numerator / denominator;
        let exact = quotient * denominator == numerator;
        Some(if exact || (numerator < 0) != (denominator < 0) {
            quotient
        } else {
            quotient + 1
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_match_with_or_without_tag() {
        let mut map = ImageMap::default();
        map.insert("kglue/runner", ImageTarget::Executable("/bin/kglue".into()));
        map.insert("busybox:1.36", ImageTarget::Host);
        map.insert("alpine:latest", ImageTarget::Host);
        let runner = Some(&ImageTarget::Executable("/bin/kglue".into()));
        assert_eq!(map.resolve("kglue/runner"), runner);
        assert_eq!(map.resolve("kglue/runner:0.1.0"), runner);
        assert_eq!(map.resolve("kglue/runner@sha256:abc"), runner);
        assert_eq!(map.resolve("busybox:1.36"), Some(&ImageTarget::Host));
        assert_eq!(map.resolve("busybox:1.37"), None);
        assert_eq!(map.resolve("busybox"), None);
        assert_eq!(map.resolve("alpine"), Some(&ImageTarget::Host));
        assert_eq!(map.resolve("example.com/nope:1"), None);
    }

    #[test]
    fn registry_port_is_not_a_tag() {
        assert_eq!(split_image("localhost:5000/a/b"), ("localhost:5000/a/b", None, None));
        assert_eq!(
            split_image("localhost:5000/a/b:v1@sha256:x"),
            ("localhost:5000/a/b", Some("v1"), Some("sha256:x"))
        );
    }

    #[test]
    fn expansion_follows_kubernetes() {
        let lookup = |name: &str| (name == "A").then(|| "x".to_string());
        assert_eq!(expand("$(A)-$(B)", lookup), "x-$(B)");
        assert_eq!(expand("$$(A) $$ $ $(A", lookup), "$(A) $ $ $(A");
        assert_eq!(expand("pre$(A)post", lookup), "prexpost");
        assert_eq!(expand("", lookup), "");
    }

    #[test]
    fn rewrite_replaces_leading_mount_paths_only() {
        let mut rewriter = PathRewriter::default();
        rewriter.add("/etc/creds", Path::new("/state/v/creds"));
        rewriter.add("/etc/creds/deep/", Path::new("/state/v/deep"));
        assert_eq!(rewriter.rewrite("/etc/creds"), "/state/v/creds");
        assert_eq!(rewriter.rewrite("/etc/creds/password"), "/state/v/creds/password");
        assert_eq!(rewriter.rewrite("/etc/creds/deep/x"), "/state/v/deep/x");
        assert_eq!(rewriter.rewrite("/etc/credsx"), "/etc/credsx");
        assert_eq!(rewriter.rewrite("cat /etc/creds/password"), "cat /etc/creds/password");
        assert_eq!(rewriter.host_path("/tmp"), None);
    }

    #[test]
    fn argv_follows_command_and_args() {
        let exe = ImageTarget::Executable("/opt/bin/kglue".into());
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(argv(&exe, &[], &s(&["run"])).ok(), Some(s(&["/opt/bin/kglue", "run"])));
        assert_eq!(
            argv(&exe, &s(&["/usr/bin/kglue", "crawl"]), &s(&["-v"])).ok(),
            Some(s(&["/opt/bin/kglue", "crawl", "-v"]))
        );
        assert_eq!(
            argv(&exe, &s(&["sh", "-c"]), &s(&["x"])).ok(),
            Some(s(&["sh", "-c", "x"]))
        );
        assert_eq!(
            argv(&ImageTarget::Host, &[], &s(&["echo", "hi"])).ok(),
            Some(s(&["echo", "hi"]))
        );
        assert!(argv(&ImageTarget::Host, &[], &[]).is_err());
    }

    #[test]
    fn termination_messages_are_truncated_like_the_kubelet() {
        let big = vec![b'a'; 5000];
        assert_eq!(termination_message_from_file(&big).len(), 4096);
        assert_eq!(termination_message_from_file(b"boom\n"), "boom\n");
        let lines: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let tail = termination_message_from_log(lines.as_bytes());
        assert!(tail.starts_with("line 20\n"), "{tail}");
        assert!(tail.ends_with("line 99\n"));
        assert_eq!(termination_message_from_log(&vec![b'x'; 3000]).len(), 2048);
    }

    #[test]
    fn quantities_divide_with_ceiling() {
        let q = |s: &str| Quantity::parse(s).expect(s);
        assert_eq!(q("500m").divide_ceil(q("1")), Some(1));
        assert_eq!(q("500m").divide_ceil(q("1m")), Some(500));
        assert_eq!(q("2").divide_ceil(q("1")), Some(2));
        assert_eq!(q("1Gi").divide_ceil(q("1Mi")), Some(1024));
        assert_eq!(q("1.5Gi").divide_ceil(q("1")), Some(1_610_612_736));
        assert_eq!(q("1e3").divide_ceil(q("1k")), Some(1));
        assert_eq!(q("129M").divide_ceil(q("1Mi")), Some(124));
        assert_eq!(Quantity::parse("abc"), None);
        assert_eq!(Quantity::parse("1Xi"), None);
    }
}
