//! A pod's status as the node agent knows it, and how what happens to its containers changes it:
//! pure, so the kubelet's rules the agent plays by (phases, restart counts, conditions, lost
//! containers) are unit-tested without a cluster. [`super::pod`] runs the pod and writes this.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus,
    HostIP, Pod, PodCondition, PodIP, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::process::ExitStatus;
use super::resolve::LOCAL_IP;

/// Which container of the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// An init container, by index.
    Init(usize),
    /// A container, by index.
    Main(usize),
}

/// The pod's restart policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// `Never`.
    Never,
    /// `OnFailure`.
    OnFailure,
    /// `Always` (the default).
    Always,
}

impl Restart {
    /// The pod's restart policy.
    pub fn of(spec: &PodSpec) -> Restart {
        match spec.restart_policy.as_deref() {
            Some("Never") => Restart::Never,
            Some("OnFailure") => Restart::OnFailure,
            _ => Restart::Always,
        }
    }

    /// Whether a container that exited so starts again.
    pub fn again(self, exit: &ExitStatus) -> bool {
        match self {
            Restart::Never => false,
            Restart::OnFailure => exit.code != 0,
            Restart::Always => true,
        }
    }
}

/// How a container ended.
pub struct Exit {
    /// Which container.
    pub slot: Slot,
    /// How.
    pub exit: ExitStatus,
    /// `Completed`, `Error` or why it was killed.
    pub reason: &'static str,
    /// When it started.
    pub started: Timestamp,
    /// When it ended.
    pub finished: Timestamp,
    /// Its termination message.
    pub message: Option<String>,
}

/// What happened to a container.
pub enum Event {
    /// It started.
    Started {
        /// Which container.
        slot: Slot,
        /// Its process.
        pid: i32,
        /// When.
        at: Timestamp,
    },
    /// It exited.
    Exited(Exit),
    /// It waits before a restart.
    BackOff {
        /// Which container.
        slot: Slot,
        /// Why and how long.
        message: String,
    },
}

/// The current time.
pub fn now() -> Time {
    Time(Timestamp::now())
}

fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message,
        }),
        ..Default::default()
    }
}

/// The pod's status as this agent knows it.
pub struct Model {
    /// `status.phase`.
    pub phase: &'static str,
    /// `status.reason`.
    pub reason: Option<String>,
    message: Option<String>,
    /// `status.startTime`.
    pub start_time: Time,
    /// Whether the init containers have all succeeded.
    pub initialized: bool,
    /// The init containers' statuses.
    pub init: Vec<ContainerStatus>,
    /// The containers' statuses.
    pub main: Vec<ContainerStatus>,
    ever_started: HashMap<Slot, bool>,
    transitions: BTreeMap<&'static str, (bool, Time)>,
}

impl Model {
    /// The status of a pod just seen.
    pub fn new(pod: &Pod, spec: &PodSpec) -> Model {
        let status = |c: &Container, reason: &str| ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            image_id: String::new(),
            ready: false,
            restart_count: 0,
            started: Some(false),
            state: Some(waiting(reason, None)),
            ..Default::default()
        };
        let init: Vec<ContainerStatus> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| status(c, "PodInitializing"))
            .collect();
        let main_reason = if init.is_empty() {
            "ContainerCreating"
        } else {
            "PodInitializing"
        };
        Model {
            phase: "Pending",
            reason: None,
            message: None,
            start_time: pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.clone())
                .unwrap_or_else(now),
            initialized: init.is_empty(),
            init,
            main: spec.containers.iter().map(|c| status(c, main_reason)).collect(),
            ever_started: HashMap::new(),
            transitions: BTreeMap::new(),
        }
    }

    /// The status of the container in `slot`.
    pub fn status_mut(&mut self, slot: Slot) -> Option<&mut ContainerStatus> {
        match slot {
            Slot::Init(i) => self.init.get_mut(i),
            Slot::Main(i) => self.main.get_mut(i),
        }
    }

    /// The container in `slot` waits, for `reason`.
    pub fn set_waiting(&mut self, slot: Slot, reason: &str, message: &str) {
        if let Some(status) = self.status_mut(slot) {
            status.state = Some(waiting(reason, Some(message.into())));
        }
    }

    /// The pod failed.
    pub fn fail(&mut self, reason: Option<&str>, message: Option<String>) {
        self.phase = "Failed";
        self.reason = reason.map(str::to_string);
        self.message = message;
    }

    /// Records what happened to a container.
    pub fn apply(&mut self, event: Event) {
        match event {
            Event::Started { slot, pid, at } => {
                let restarted = self.ever_started.insert(slot, true).is_some();
                if let Some(status) = self.status_mut(slot) {
                    if restarted {
                        status.restart_count += 1;
                        if status.state.as_ref().is_some_and(|s| s.terminated.is_some()) {
                            status.last_state = status.state.take();
                        }
                    }
                    status.state = Some(ContainerState {
                        running: Some(ContainerStateRunning {
                            started_at: Some(Time(at)),
                        }),
                        ..Default::default()
                    });
                    status.container_id = Some(format!("kglue://{pid}"));
                    status.started = Some(true);
                    status.ready = matches!(slot, Slot::Main(_));
                }
                if matches!(slot, Slot::Main(_)) {
                    self.phase = "Running";
                }
            }
            Event::Exited(ended) => {
                if let Some(status) = self.status_mut(ended.slot) {
                    status.state = Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: ended.exit.code,
                            signal: ended.exit.signal,
                            reason: Some(ended.reason.into()),
                            message: ended.message.filter(|m| !m.is_empty()),
                            started_at: Some(Time(ended.started)),
                            finished_at: Some(Time(ended.finished)),
                            container_id: status.container_id.clone(),
                        }),
                        ..Default::default()
                    });
                    status.started = Some(false);
                    status.ready = false;
                }
            }
            Event::BackOff { slot, message } => {
                if let Some(status) = self.status_mut(slot) {
                    status.last_state = status.state.take();
                    status.state = Some(waiting("CrashLoopBackOff", Some(message)));
                }
            }
        }
    }

    /// Whether every one of `statuses` terminated with 0.
    pub fn terminated_ok(statuses: &[ContainerStatus]) -> bool {
        statuses.iter().all(|s| {
            s.state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .is_some_and(|t| t.exit_code == 0)
        })
    }

    /// Succeeded when every container ended with 0, Failed otherwise.
    pub fn settle(&mut self) {
        if self.initialized && Model::terminated_ok(&self.main) {
            self.phase = "Succeeded";
        } else {
            self.phase = "Failed";
        }
    }

    fn condition(&mut self, type_: &'static str, ok: bool, reason: Option<&str>) -> PodCondition {
        let time = match self.transitions.get(type_) {
            Some((previous, time)) if *previous == ok => time.clone(),
            _ => {
                let time = now();
                self.transitions.insert(type_, (ok, time.clone()));
                time
            }
        };
        PodCondition {
            type_: type_.into(),
            status: if ok { "True" } else { "False" }.into(),
            reason: if ok { None } else { reason.map(str::to_string) },
            last_transition_time: Some(time),
            last_probe_time: None,
            ..Default::default()
        }
    }

    /// The status to write.
    pub fn pod_status(&mut self) -> PodStatus {
        let ready = self.phase == "Running" && self.main.iter().all(|s| s.ready);
        let not_ready = if self.phase == "Succeeded" {
            "PodCompleted"
        } else {
            "ContainersNotReady"
        };
        let conditions = vec![
            self.condition("PodScheduled", true, None),
            self.condition("Initialized", self.initialized, Some("ContainersNotInitialized")),
            self.condition("ContainersReady", ready, Some(not_ready)),
            self.condition("Ready", ready, Some(not_ready)),
        ];
        PodStatus {
            phase: Some(self.phase.into()),
            reason: self.reason.clone(),
            message: self.message.clone(),
            start_time: Some(self.start_time.clone()),
            conditions: Some(conditions),
            host_ip: Some(LOCAL_IP.into()),
            host_ips: Some(vec![HostIP { ip: LOCAL_IP.into() }]),
            pod_ip: Some(LOCAL_IP.into()),
            pod_ips: Some(vec![PodIP { ip: LOCAL_IP.into() }]),
            init_container_statuses: (!self.init.is_empty()).then(|| self.init.clone()),
            container_statuses: Some(self.main.clone()),
            ..Default::default()
        }
    }
}

/// A container status from before an agent restart: a container that had not terminated is
/// reported the way the kubelet reports a container it cannot find.
pub fn lost(mut status: ContainerStatus) -> ContainerStatus {
    if status.state.as_ref().is_some_and(|s| s.terminated.is_some()) {
        return status;
    }
    let started = status
        .state
        .as_ref()
        .and_then(|s| s.running.as_ref())
        .and_then(|r| r.started_at.clone());
    status.state = Some(ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: 137,
            reason: Some("ContainerStatusUnknown".into()),
            message: Some("The container could not be located when the pod was terminated".into()),
            started_at: started,
            finished_at: Some(now()),
            container_id: status.container_id.clone(),
            ..Default::default()
        }),
        ..Default::default()
    });
    status.ready = false;
    status.started = Some(false);
    status
}

/// Every container of the pod with its slot, init containers first.
pub fn containers(spec: &PodSpec) -> impl Iterator<Item = (Slot, &Container)> {
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| (Slot::Init(i), c));
    let main = spec.containers.iter().enumerate().map(|(i, c)| (Slot::Main(i), c));
    init.chain(main)
}

/// Every slot of the pod.
pub fn all_slots(spec: &PodSpec) -> impl Iterator<Item = Slot> + '_ {
    containers(spec).map(|(slot, _)| slot)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(init: &[&str], main: &[&str], restart: &str) -> (Pod, PodSpec) {
        let containers = |names: &[&str]| -> Vec<serde_json::Value> {
            names
                .iter()
                .map(|n| serde_json::json!({"name": n, "image": "kglue"}))
                .collect()
        };
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"restartPolicy": restart, "initContainers": containers(init), "containers": containers(main)}
        }))
        .expect("a pod");
        let spec = pod.spec.clone().expect("a spec");
        (pod, spec)
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).expect("a time")
    }

    fn exited(slot: Slot, code: i32) -> Event {
        Event::Exited(Exit {
            slot,
            exit: ExitStatus { code, signal: None },
            reason: if code == 0 { "Completed" } else { "Error" },
            started: at(1),
            finished: at(2),
            message: Some(String::new()),
        })
    }

    fn waiting_reason(status: &ContainerStatus) -> Option<&str> {
        status.state.as_ref()?.waiting.as_ref()?.reason.as_deref()
    }

    fn condition<'a>(status: &'a PodStatus, type_: &str) -> &'a PodCondition {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_)
            .expect("the condition")
    }

    #[test]
    fn a_pod_runs_and_succeeds_like_a_kubelet_reports_it() {
        let (pod, spec) = pod(&[], &["runner"], "Never");
        let mut model = Model::new(&pod, &spec);
        assert_eq!(model.phase, "Pending");
        assert_eq!(waiting_reason(&model.main[0]), Some("ContainerCreating"));
        assert!(model.initialized, "no init containers: initialized from the start");

        model.apply(Event::Started {
            slot: Slot::Main(0),
            pid: 42,
            at: at(1),
        });
        let running = model.pod_status();
        assert_eq!(running.phase.as_deref(), Some("Running"));
        assert_eq!(condition(&running, "Ready").status, "True");
        assert_eq!(model.main[0].container_id.as_deref(), Some("kglue://42"));

        model.apply(exited(Slot::Main(0), 0));
        model.settle();
        let done = model.pod_status();
        assert_eq!(done.phase.as_deref(), Some("Succeeded"));
        let ready = condition(&done, "Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("False", Some("PodCompleted"))
        );
        let terminated = done.container_statuses.as_ref().expect("statuses")[0]
            .state
            .as_ref()
            .and_then(|s| s.terminated.clone())
            .expect("terminated");
        assert_eq!(terminated.exit_code, 0);
        assert_eq!(terminated.message, None, "an empty message is left out");
        assert_eq!(done.pod_ip.as_deref(), Some(LOCAL_IP));
    }

    #[test]
    fn a_failed_container_fails_the_pod_and_init_containers_gate_the_rest() {
        let (pod, spec) = pod(&["setup"], &["runner"], "Never");
        let mut model = Model::new(&pod, &spec);
        assert!(!model.initialized);
        assert_eq!(waiting_reason(&model.main[0]), Some("PodInitializing"));
        assert_eq!(condition(&model.pod_status(), "Initialized").status, "False");
        model.apply(exited(Slot::Init(0), 0));
        assert!(Model::terminated_ok(&model.init));
        model.initialized = true;
        model.apply(exited(Slot::Main(0), 3));
        model.settle();
        assert_eq!(model.phase, "Failed");
        assert_eq!(model.pod_status().init_container_statuses.map(|s| s.len()), Some(1));
    }

    #[test]
    fn restarts_count_and_keep_the_last_state() {
        let (pod, spec) = pod(&[], &["runner"], "Always");
        let mut model = Model::new(&pod, &spec);
        let start = |model: &mut Model| {
            model.apply(Event::Started {
                slot: Slot::Main(0),
                pid: 7,
                at: at(3),
            })
        };
        start(&mut model);
        model.apply(exited(Slot::Main(0), 1));
        model.apply(Event::BackOff {
            slot: Slot::Main(0),
            message: "back-off 1s".into(),
        });
        assert_eq!(waiting_reason(&model.main[0]), Some("CrashLoopBackOff"));
        start(&mut model);
        let status = &model.main[0];
        assert_eq!(status.restart_count, 1);
        assert!(
            status
                .last_state
                .as_ref()
                .is_some_and(|s| s.terminated.is_some() || s.waiting.is_some())
        );
        assert!(status.state.as_ref().is_some_and(|s| s.running.is_some()));
    }

    #[test]
    fn condition_times_change_only_with_their_status() {
        let (pod, spec) = pod(&[], &["runner"], "Never");
        let mut model = Model::new(&pod, &spec);
        let first = condition(&model.pod_status(), "PodScheduled")
            .last_transition_time
            .clone();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let again = condition(&model.pod_status(), "PodScheduled")
            .last_transition_time
            .clone();
        assert_eq!(first, again, "an unchanged condition keeps its transition time");
        let not_ready = condition(&model.pod_status(), "Ready").last_transition_time.clone();
        model.apply(Event::Started {
            slot: Slot::Main(0),
            pid: 1,
            at: at(1),
        });
        let ready = condition(&model.pod_status(), "Ready").last_transition_time.clone();
        assert_ne!(not_ready, ready, "a changed condition gets a new transition time");
    }

    #[test]
    fn restart_policies_decide_what_starts_again() {
        let exit = |code| ExitStatus { code, signal: None };
        assert!(!Restart::Never.again(&exit(1)));
        assert!(Restart::OnFailure.again(&exit(1)));
        assert!(!Restart::OnFailure.again(&exit(0)));
        assert!(Restart::Always.again(&exit(0)));
        assert_eq!(Restart::of(&pod(&[], &["a"], "OnFailure").1), Restart::OnFailure);
    }

    #[test]
    fn a_container_lost_in_an_agent_restart_reads_as_the_kubelet_reports_it() {
        let running = ContainerStatus {
            name: "runner".into(),
            state: Some(ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(Time(at(1))),
                }),
                ..Default::default()
            }),
            ready: true,
            ..Default::default()
        };
        let lost = lost(running);
        let terminated = lost.state.and_then(|s| s.terminated).expect("terminated");
        assert_eq!(terminated.exit_code, 137);
        assert_eq!(terminated.reason.as_deref(), Some("ContainerStatusUnknown"));
        assert_eq!(terminated.started_at, Some(Time(at(1))));
        assert!(!lost.ready);

        let (_, spec) = pod(&["a", "b"], &["c"], "Never");
        let slots: Vec<Slot> = all_slots(&spec).collect();
        assert_eq!(slots, [Slot::Init(0), Slot::Init(1), Slot::Main(0)]);
    }
}
