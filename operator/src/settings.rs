//! How the operator launches runs (its flags): the runner image and service account, how long
//! finished attempts are kept, the retry backoff, and the CPU and memory of each worker size.

use std::collections::BTreeMap;

use kglue_crds::common::{WorkerResources, WorkerSize};

/// How runs are launched (operator flags).
#[derive(Clone, Debug)]
pub struct RunnerSettings {
    /// The runner image.
    pub image: String,
    /// The service account runs use.
    pub service_account: String,
    /// Seconds a finished Kubernetes Job (with its pod, log and RunResult) is kept.
    pub ttl_seconds: i32,
    /// The first retry's delay.
    pub retry_backoff: std::time::Duration,
    /// The CPU and memory of each worker size.
    pub worker_sizes: WorkerSizes,
    /// The local folders (volumes mounted into the runner pods) `file://` locations may use;
    /// empty: none.
    pub local_paths: Vec<std::path::PathBuf>,
    /// Where a streaming attempt serves its metrics (`host:port`); `None`: it serves none.
    pub stream_metrics_address: Option<String>,
}

/// The CPU and memory of each worker size: the defaults of `WorkerSize`, or what the operator was
/// configured with (`--worker-sizes`, the chart's `workerSizes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerSizes([WorkerResources; 4]);

impl Default for WorkerSizes {
    fn default() -> Self {
        WorkerSizes(WorkerSize::ALL.map(WorkerSize::default_resources))
    }
}

impl WorkerSizes {
    /// The defaults with the sizes named in `json` replaced, e.g.
    /// `{"Small":{"cpu":1,"memoryGiB":4}}`. Sizes not named keep their defaults.
    pub fn parse(json: &str) -> Result<Self, String> {
        let given: BTreeMap<String, WorkerResources> =
            serde_json::from_str(json).map_err(|e| format!("--worker-sizes is not valid: {e}"))?;
        let mut sizes = WorkerSizes::default();
        for (name, resources) in given {
            let index = WorkerSize::ALL
                .iter()
                .position(|size| size.as_str() == name)
                .ok_or_else(|| {
                    format!(
                        "--worker-sizes: unknown worker size {name:?}; the sizes are Small, Medium, Large and XLarge"
                    )
                })?;
            if resources.cpu == 0 || resources.memory_gib == 0 {
                return Err(format!(
                    "--worker-sizes: {name} needs at least 1 CPU and 1 GiB of memory"
                ));
            }
            sizes.0[index] = resources;
        }
        Ok(sizes)
    }

    /// The resources of `size`.
    pub fn get(&self, size: WorkerSize) -> WorkerResources {
        let index = WorkerSize::ALL.iter().position(|s| *s == size).unwrap_or_default();
        self.0[index]
    }
}
