//! Connection: the credentials Secret exists (`SecretNotFound`) and holds the named keys
//! (`SecretKeyNotFound`). Only the Secret's key names are looked at, never its values.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kglue_crds::Connection;
use kglue_crds::common::ObservedStatus;
use kglue_crds::connection::S3CredentialsSecretRef;
use kube::api::Api;
use kube::{Client, ResourceExt};
use tokio::sync::watch;

use super::{Context, Error, Problem, Reason, Reconcile, controller, referrers};

/// The key of the access key id when the Connection names none.
pub const DEFAULT_ACCESS_KEY_ID_KEY: &str = "AWS_ACCESS_KEY_ID";
/// The key of the secret access key when the Connection names none.
pub const DEFAULT_SECRET_ACCESS_KEY_KEY: &str = "AWS_SECRET_ACCESS_KEY";

/// What the Connection reconcile reads.
pub enum Refs {
    /// No Secret is referenced.
    NoSecret,
    /// The referenced Secret does not exist.
    SecretMissing,
    /// The referenced Secret's key names.
    SecretKeys(BTreeSet<String>),
}

impl Reconcile for Connection {
    type Refs = Refs;

    fn observed(&self) -> Option<&ObservedStatus> {
        self.status.as_ref()
    }

    async fn read(&self, client: &Client, namespace: &str) -> Result<Refs, Error> {
        let Some(secret_ref) = secret_ref(self) else {
            return Ok(Refs::NoSecret);
        };
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        Ok(match secrets.get_opt(&secret_ref.name).await? {
            None => Refs::SecretMissing,
            Some(secret) => Refs::SecretKeys(
                secret
                    .data
                    .into_iter()
                    .flatten()
                    .map(|(key, _)| key)
                    .chain(secret.string_data.into_iter().flatten().map(|(key, _)| key))
                    .collect(),
            ),
        })
    }

    fn validate(&self, refs: &Refs) -> Vec<Problem> {
        let Some(secret_ref) = secret_ref(self) else {
            return Vec::new();
        };
        let name = &secret_ref.name;
        match refs {
            Refs::NoSecret => Vec::new(),
            Refs::SecretMissing => vec![Problem::new(
                Reason::SecretNotFound,
                format!(
                    "spec.s3.credentialsSecretRef.name is {name:?}, but that Secret does not exist in this namespace; create it with the keys {}",
                    required_keys(secret_ref).join(" and ")
                ),
            )],
            Refs::SecretKeys(keys) => {
                let absent: Vec<String> = required_keys(secret_ref)
                    .into_iter()
                    .filter(|key| !keys.contains(key))
                    .collect();
                if absent.is_empty() {
                    return Vec::new();
                }
                vec![Problem::new(
                    Reason::SecretKeyNotFound,
                    format!(
                        "Secret {name:?} has no key {}; add it, or name the key that holds it in spec.s3.credentialsSecretRef",
                        absent.iter().map(|k| format!("{k:?}")).collect::<Vec<_>>().join(" or ")
                    ),
                )]
            }
        }
    }
}

fn secret_ref(connection: &Connection) -> Option<&S3CredentialsSecretRef> {
    connection.spec.s3.as_ref()?.credentials_secret_ref.as_ref()
}

/// The keys the Secret must hold: the access key id and secret key (named or default), and the
/// session token only when a key is named for it (by default it is optional).
pub fn required_keys(secret_ref: &S3CredentialsSecretRef) -> Vec<String> {
    let mut keys = vec![
        secret_ref
            .access_key_id_key
            .clone()
            .unwrap_or_else(|| DEFAULT_ACCESS_KEY_ID_KEY.into()),
        secret_ref
            .secret_access_key_key
            .clone()
            .unwrap_or_else(|| DEFAULT_SECRET_ACCESS_KEY_KEY.into()),
    ];
    keys.extend(secret_ref.session_token_key.clone());
    keys
}

/// Runs the Connection controller; creating, changing or deleting a Secret re-checks the
/// Connections that name it.
pub async fn run(ctx: Arc<Context>, shutdown: watch::Receiver<bool>) {
    let controller = controller::<Connection>(&ctx);
    let store = controller.store();
    let controller = controller.watches(ctx.watch_api::<Secret>(), Default::default(), move |secret: Secret| {
        let name = secret.name_any();
        referrers(&store, secret.namespace().as_deref(), |c: &Connection| {
            secret_ref(c).is_some_and(|r| r.name == name)
        })
    });
    super::run(controller, ctx, shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(extra: &str) -> Connection {
        serde_saphyr::from_str(&format!(
            r#"
apiVersion: kglue.dev/v1alpha1
kind: Connection
metadata: {{name: lake, namespace: ns}}
spec:
  s3:
    endpoint: "http://s3:9000"
    credentialsSecretRef:
      name: lake-credentials
{extra}
"#
        ))
        .expect("a Connection")
    }

    fn keys(keys: &[&str]) -> Refs {
        Refs::SecretKeys(keys.iter().map(|k| k.to_string()).collect())
    }

    #[test]
    fn a_secret_with_the_default_keys_is_valid() {
        let c = connection("");
        assert!(
            c.validate(&keys(&["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]))
                .is_empty()
        );
    }

    #[test]
    fn a_missing_secret_says_which_keys_to_create() {
        let problems = connection("").validate(&Refs::SecretMissing);
        assert_eq!(problems[0].reason, Reason::SecretNotFound);
        assert!(problems[0].message.contains("\"lake-credentials\""));
        assert!(
            problems[0]
                .message
                .contains("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        );
    }

    #[test]
    fn named_keys_must_be_present() {
        let c = connection("      accessKeyIdKey: id\n      sessionTokenKey: token");
        let problems = c.validate(&keys(&["id", "AWS_SECRET_ACCESS_KEY"]));
        assert_eq!(problems[0].reason, Reason::SecretKeyNotFound);
        assert!(
            problems[0].message.contains("no key \"token\""),
            "{}",
            problems[0].message
        );
        assert!(c.validate(&keys(&["id", "AWS_SECRET_ACCESS_KEY", "token"])).is_empty());
    }

    #[test]
    fn without_a_secret_reference_there_is_nothing_to_check() {
        let c: Connection = serde_saphyr::from_str(
            "apiVersion: kglue.dev/v1alpha1\nkind: Connection\nmetadata: {name: a}\nspec: {s3: {region: us-east-1}}\n",
        )
        .expect("a Connection");
        assert!(c.validate(&Refs::NoSecret).is_empty());
    }
}
