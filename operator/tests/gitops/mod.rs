//! Health as GitOps tools judge it, on real objects the tests capture from the API server:
//! `kglue-gitops-check` (e2e/tools/gitops, built by `e2e/kglue-tools build`) runs the shipped
//! Argo CD health checks in Argo CD's own Lua runtime, and kstatus, the library behind Flux's
//! health checks.
//!
//! The Argo CD checks are read two ways and must agree: from the argocd-cm that the shipped
//! kustomize Component (examples/gitops/argocd) renders, parsed by Argo CD's settings manager,
//! and from each kind's script file. Every object judged is kept as JSON under
//! `$TMPDIR/kglue-gitops-<pid>/`, named after the moment it was captured.

#![allow(dead_code)] // Each test binary uses a different part.

use std::path::{Path, PathBuf};
use std::process::Command;

use kglue_e2e::repo_root;
use libtest_mimic::Failed;
use serde_json::Value;

/// The shipped Argo CD health checks.
pub fn argocd_dir() -> PathBuf {
    repo_root().join("examples/gitops/argocd")
}

/// The kinds with a health check, as `health/<file>.lua` names them.
pub const KINDS: [&str; 9] = [
    "Classifier",
    "Connection",
    "Crawler",
    "Database",
    "Job",
    "Session",
    "Table",
    "Trigger",
    "Workflow",
];

/// What one tool said about one object.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub object: String,
    pub status: String,
    pub message: String,
}

/// Runs the checks; one per test binary.
pub struct Checker {
    tool: PathBuf,
    argocd_cm: PathBuf,
    dir: PathBuf,
}

impl Checker {
    /// Finds the tools (`e2e/kglue-tools bin-dir`) and renders argocd-cm with the shipped
    /// Component over a minimal argocd-cm, as an Argo CD install's kustomization would.
    pub fn new() -> Result<Self, Failed> {
        let script = repo_root().join("e2e/kglue-tools");
        let output = Command::new(&script)
            .arg("bin-dir")
            .output()
            .map_err(|e| format!("{}: {e}", script.display()))?;
        if !output.status.success() {
            return Err(format!(
                "e2e/kglue-tools bin-dir: {} (run e2e/kglue-tools build first; e2e/run-tests.sh does)",
                String::from_utf8_lossy(&output.stderr).trim()
            )
            .into());
        }
        let bin_dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        let dir = std::env::temp_dir().join(format!("kglue-gitops-{}", std::process::id()));
        let install = dir.join("argocd-install");
        std::fs::create_dir_all(&install).map_err(|e| format!("{}: {e}", install.display()))?;
        // What Argo CD's install.yaml has: argocd-cm without a namespace, labelled part-of argocd.
        write(
            &install.join("argocd-cm.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\n  labels:\n    app.kubernetes.io/name: argocd-cm\n    app.kubernetes.io/part-of: argocd\ndata:\n  application.instanceLabelKey: argocd.argoproj.io/instance\n",
        )?;
        // kustomize wants a relative path to the Component.
        let up = "../".repeat(install.components().count().saturating_sub(1));
        let component = format!("{up}{}", argocd_dir().display().to_string().trim_start_matches('/'));
        write(
            &install.join("kustomization.yaml"),
            &format!("namespace: argocd\nresources: [argocd-cm.yaml]\ncomponents: [\"{component}\"]\n"),
        )?;
        let rendered = Command::new(bin_dir.join("kustomize"))
            .arg("build")
            .arg(&install)
            .output()
            .map_err(|e| format!("kustomize: {e}"))?;
        if !rendered.status.success() {
            return Err(format!(
                "kustomize build of the Argo CD Component failed: {}",
                String::from_utf8_lossy(&rendered.stderr)
            )
            .into());
        }
        let argocd_cm = dir.join("argocd-cm.rendered.yaml");
        std::fs::write(&argocd_cm, &rendered.stdout).map_err(|e| format!("{}: {e}", argocd_cm.display()))?;
        Ok(Checker {
            tool: bin_dir.join("kglue-gitops-check"),
            argocd_cm,
            dir,
        })
    }

    fn run(&self, args: &[&str], file: &Path) -> Result<Verdict, Failed> {
        let output = Command::new(&self.tool)
            .args(args)
            .arg(file)
            .output()
            .map_err(|e| format!("{}: {e}", self.tool.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return Err(format!(
                "kglue-gitops-check {args:?} {}: {stdout}{}",
                file.display(),
                String::from_utf8_lossy(&output.stderr)
            )
            .into());
        }
        let line: Value = serde_json::from_str(stdout.trim()).map_err(|e| format!("{stdout}: {e}"))?;
        let field = |name: &str| line[name].as_str().unwrap_or_default().to_string();
        Ok(Verdict {
            object: field("object"),
            status: field("status"),
            message: field("message"),
        })
    }

    /// Writes `object` as `<moment>-<Kind>-<name>.json` and judges it: (Argo CD, kstatus). The
    /// Argo CD verdict from argocd-cm must equal the one from the kind's script file.
    pub fn judge(&self, moment: &str, object: &Value) -> Result<(Verdict, Verdict), Failed> {
        let kind = object["kind"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let file = self.dir.join(format!("{moment}-{kind}-{name}.json"));
        let body = serde_json::to_string_pretty(object).map_err(|e| e.to_string())?;
        write(&file, &body)?;
        let argocd_cm = self.argocd_cm.display().to_string();
        let argocd = self.run(&["argocd-health", "--argocd-cm", &argocd_cm], &file)?;
        let script = argocd_dir().join(format!("health/{}.lua", kind.to_lowercase()));
        let by_script = self.run(&["argocd-health", "--script", &script.display().to_string()], &file)?;
        if by_script != argocd {
            return Err(format!(
                "{moment}: {kind}/{name}: argocd-cm says {argocd:?} but {} says {by_script:?}",
                script.display()
            )
            .into());
        }
        let kstatus = self.run(&["kstatus"], &file)?;
        Ok((argocd, kstatus))
    }

    /// Judges `object` and checks the Argo CD status, the kstatus status, and that the Argo CD
    /// message contains `says`. Returns the two verdicts.
    pub fn expect(
        &self,
        moment: &str,
        object: &Value,
        argocd: &str,
        kstatus: &str,
        says: &str,
    ) -> Result<(Verdict, Verdict), Failed> {
        let (a, k) = self.judge(moment, object)?;
        if a.status != argocd || k.status != kstatus || !a.message.contains(says) {
            return Err(format!(
                "{moment}: expected Argo CD {argocd} (saying {says:?}) and kstatus {kstatus}, got {a:?} and {k:?}; the object:\n{object:#}"
            )
            .into());
        }
        Ok((a, k))
    }
}

fn write(path: &Path, body: &str) -> Result<(), Failed> {
    std::fs::write(path, body).map_err(|e| format!("{}: {e}", path.display()).into())
}

/// The copy of common.lua between the BEGIN and END lines of every `health/<kind>.lua` equals
/// common.lua; with `KGLUE_UPDATE_HEALTH=1` the copies are rewritten instead.
pub fn common_copies_are_identical() -> Result<(), Failed> {
    const BEGIN: &str = "-- BEGIN common.lua\n";
    const END: &str = "-- END common.lua\n";
    let dir = argocd_dir();
    let common = std::fs::read_to_string(dir.join("common.lua")).map_err(|e| e.to_string())?;
    let update = std::env::var_os("KGLUE_UPDATE_HEALTH").is_some();
    let mut stale = Vec::new();
    for kind in KINDS {
        let path = dir.join(format!("health/{}.lua", kind.to_lowercase()));
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let (Some(begin), Some(end)) = (text.find(BEGIN), text.find(END)) else {
            return Err(format!("{} lacks the {BEGIN:?} and {END:?} lines", path.display()).into());
        };
        let copy = &text[begin + BEGIN.len()..end];
        if copy != common {
            if update {
                let fixed = format!("{}{BEGIN}{common}{}", &text[..begin], &text[end..]);
                write(&path, &fixed)?;
            } else {
                stale.push(path.display().to_string());
            }
        }
    }
    if stale.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "these health checks carry an old copy of common.lua (rerun with KGLUE_UPDATE_HEALTH=1 to rewrite them): {stale:?}"
        )
        .into())
    }
}
