//! Connection: the credentials Secret exists (`SecretNotFound`), lets Connections use it (the
//! consent label, `SecretNotOptedIn`) and holds the named keys (`SecretKeyNotFound`). Only the
//! Secret's labels and key names are looked at, never its values.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Secret;
use kglue_crds::Connection;
use kglue_crds::connection::{S3CredentialsSecretRef, SECRET_CONSENT_LABEL, SECRET_CONSENT_VALUE, secret_consents};
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Controller;

use super::pipeline::{Problem, Reason, Reconcile, controller};
use super::refs::{ReadRefs, Rechecks};
use crate::context::{Context, Error};

/// What the Connection reconcile reads.
pub enum Refs {
    /// No Secret is referenced.
    NoSecret,
    /// The referenced Secret does not exist.
    SecretMissing,
    /// The referenced Secret does not carry the consent label.
    SecretNotOptedIn,
    /// The referenced Secret's key names.
    SecretKeys(BTreeSet<String>),
}

impl ReadRefs<Connection> for Refs {
    async fn read(connection: &Connection, ctx: &Context, namespace: &str) -> Result<Refs, Error> {
        let client = &ctx.client;
        let Some(secret_ref) = secret_ref(connection) else {
            return Ok(Refs::NoSecret);
        };
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        Ok(match secrets.get_opt(&secret_ref.name).await? {
            None => Refs::SecretMissing,
            Some(secret) if !secret_consents(secret.metadata.labels.as_ref()) => Refs::SecretNotOptedIn,
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
}

impl Reconcile for Connection {
    type Refs = Refs;

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
                    secret_ref.required_keys().join(" and ")
                ),
            )],
            Refs::SecretNotOptedIn => vec![Problem::new(
                Reason::SecretNotOptedIn,
                format!(
                    "Secret {name:?} does not let Connections use it: label it {SECRET_CONSENT_LABEL}={SECRET_CONSENT_VALUE} (kubectl label secret {name} {SECRET_CONSENT_LABEL}={SECRET_CONSENT_VALUE}); until then no run mounts it"
                ),
            )],
            Refs::SecretKeys(keys) => {
                let absent: Vec<String> = secret_ref
                    .required_keys()
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

    /// The Connection controller; creating, changing or deleting a Secret re-checks the
    /// Connections that name it.
    fn controller(ctx: &Context) -> Controller<DeserializeGuard<Self>> {
        controller::<Connection>(ctx).recheck_watched::<Secret>(ctx, |connection, name, _| {
            secret_ref(connection).is_some_and(|r| r.name == name)
        })
    }
}

fn secret_ref(connection: &Connection) -> Option<&S3CredentialsSecretRef> {
    connection.spec.s3.as_ref()?.credentials_secret_ref.as_ref()
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
    fn a_secret_without_the_consent_label_is_refused_by_name() {
        let problems = connection("").validate(&Refs::SecretNotOptedIn);
        assert_eq!(problems[0].reason, Reason::SecretNotOptedIn);
        assert!(
            problems[0].message.starts_with(
                "Secret \"lake-credentials\" does not let Connections use it: label it kglue.dev/secret-type=connection"
            ),
            "{}",
            problems[0].message
        );
        let labels = [(SECRET_CONSENT_LABEL.to_string(), SECRET_CONSENT_VALUE.to_string())].into();
        assert!(secret_consents(Some(&labels)));
        let other = [(SECRET_CONSENT_LABEL.to_string(), "repository".to_string())].into();
        assert!(!secret_consents(Some(&other)));
        assert!(!secret_consents(None));
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
