//! Leader election on a `coordination.k8s.io/v1` Lease, so two replicas never reconcile at once.
//!
//! The lease loop is `kube-lease-manager` (kube 5, server-side apply on the Lease, expiry-aware
//! takeover). This module fixes the operator's parameters and turns its channel into the two
//! questions `main` asks: "may I start?" and "did I lose it?". Releasing on shutdown is done by
//! dropping the [`Leadership`]: the manager's task sees its channel closed and clears the holder,
//! so a standby takes over at once instead of waiting for the lease to expire.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseCreateMode, LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Parameters of the election.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    /// The Lease's name.
    pub lease_name: String,
    /// The Lease's namespace.
    pub namespace: String,
    /// This replica's identity (`holderIdentity` in the Lease); unique per replica.
    pub identity: String,
    /// How long a lease is valid after its last renewal; a standby takes over this long after the
    /// leader stopped renewing.
    pub lease_duration: Duration,
    /// How long before expiry the leader renews.
    pub renew_before: Duration,
}

/// What can go wrong in the election.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The parameters cannot work.
    #[error("invalid leader election parameters: {0}")]
    Config(String),
    /// The Lease could not be read or written.
    #[error("leader election on Lease failed: {0}")]
    Lease(#[from] LeaseManagerError),
    /// The election task ended without releasing.
    #[error("the leader election task ended unexpectedly: {0}")]
    Task(String),
}

/// Checks the parameters: the lease must outlive a renewal, or the leader would lose it between
/// renewals.
pub fn check_config(config: &LeaderConfig) -> Result<(u64, u64), LeaderError> {
    let duration = config.lease_duration.as_secs();
    let grace = config.renew_before.as_secs();
    if duration < 2 {
        return Err(LeaderError::Config(
            "the lease duration must be at least 2 seconds".into(),
        ));
    }
    if grace == 0 || grace >= duration {
        return Err(LeaderError::Config(format!(
            "renew-before ({grace}s) must be at least 1 second and shorter than the lease duration ({duration}s)"
        )));
    }
    if config.identity.is_empty() {
        return Err(LeaderError::Config("the identity must not be empty".into()));
    }
    Ok((duration, grace))
}

/// A running election: the current state and the task that keeps the Lease.
pub struct Leadership {
    state: watch::Receiver<bool>,
    task: JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
}

impl Leadership {
    /// Joins the election on the Lease (creating it if needed).
    pub async fn start(client: Client, config: &LeaderConfig) -> Result<Self, LeaderError> {
        let (duration, grace) = check_config(config)?;
        let manager = LeaseManagerBuilder::new(client, &config.lease_name)
            .with_namespace(&config.namespace)
            .with_create_mode(LeaseCreateMode::AutoCreate)
            .with_identity(&config.identity)
            .with_duration(duration)
            .with_grace(grace)
            .with_field_manager(crate::FIELD_MANAGER)
            .build()
            .await?;
        let (state, task) = manager.watch().await;
        Ok(Leadership { state, task })
    }

    /// Whether this replica holds the Lease now.
    pub fn is_leader(&self) -> bool {
        *self.state.borrow()
    }

    /// Waits until this replica holds the Lease. An error means the election task ended.
    pub async fn acquired(&mut self) -> Result<(), LeaderError> {
        self.state
            .wait_for(|leading| *leading)
            .await
            .map(|_| ())
            .map_err(|_| LeaderError::Task("the election channel closed".into()))
    }

    /// Waits until this replica no longer holds the Lease (or the election task ended).
    pub async fn lost(&mut self) {
        let _ = self.state.wait_for(|leading| !*leading).await;
    }

    /// Gives the Lease up (if held) and waits up to `timeout` for the release to be written.
    pub async fn release(self, timeout: Duration) -> Result<(), LeaderError> {
        let Leadership { state, task } = self;
        // Closing the channel is the manager's signal to release and stop.
        drop(state);
        match tokio::time::timeout(timeout, task).await {
            Ok(Ok(Ok(_))) => Ok(()),
            Ok(Ok(Err(error))) => Err(error.into()),
            Ok(Err(join)) => Err(LeaderError::Task(join.to_string())),
            Err(_) => Err(LeaderError::Task(format!(
                "releasing the Lease took longer than {}s",
                timeout.as_secs()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(duration: u64, renew: u64) -> LeaderConfig {
        LeaderConfig {
            lease_name: "kglue-operator".into(),
            namespace: "default".into(),
            identity: "a".into(),
            lease_duration: Duration::from_secs(duration),
            renew_before: Duration::from_secs(renew),
        }
    }

    #[test]
    fn the_lease_must_outlive_a_renewal() {
        assert_eq!(check_config(&config(15, 5)).ok(), Some((15, 5)));
        assert!(check_config(&config(5, 5)).is_err());
        assert!(check_config(&config(5, 0)).is_err());
        assert!(check_config(&config(1, 0)).is_err());
        let mut anonymous = config(15, 5);
        anonymous.identity.clear();
        assert!(check_config(&anonymous).is_err());
    }
}
