//! Connection: a jdbc URL reads as one (`InvalidUrl`); every Secret it names exists
//! (`SecretNotFound`), lets Connections use it (the consent label, `SecretNotOptedIn`) and holds
//! the keys it reads (`SecretKeyNotFound`). Only Secrets' labels and key names are looked at, never
//! their values.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Secret;
use kglue_crds::Connection;
use kglue_crds::connection::{JdbcUrl, SECRET_CONSENT_LABEL, SECRET_CONSENT_VALUE, SecretKeyUse, secret_consents};
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Controller;

use super::pipeline::{Problem, Reason, Reconcile, controller};
use super::refs::{ReadRefs, Rechecks};
use crate::context::{Context, Error};

/// What the Connection reconcile reads: each Secret it names, by name.
#[derive(Default)]
pub struct Refs(pub BTreeMap<String, SecretState>);

/// What one named Secret is, as far as a Connection may know.
pub enum SecretState {
    /// It does not exist.
    Missing,
    /// It does not carry the consent label.
    NotOptedIn,
    /// Its key names.
    Keys(BTreeSet<String>),
}

impl ReadRefs<Connection> for Refs {
    async fn read(connection: &Connection, ctx: &Context, namespace: &str) -> Result<Refs, Error> {
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
        let mut refs = Refs::default();
        for name in secret_names(connection) {
            let state = match secrets.get_opt(&name).await? {
                None => SecretState::Missing,
                Some(secret) if !secret_consents(secret.metadata.labels.as_ref()) => SecretState::NotOptedIn,
                Some(secret) => SecretState::Keys(
                    secret
                        .data
                        .into_iter()
                        .flatten()
                        .map(|(key, _)| key)
                        .chain(secret.string_data.into_iter().flatten().map(|(key, _)| key))
                        .collect(),
                ),
            };
            refs.0.insert(name, state);
        }
        Ok(refs)
    }
}

impl Reconcile for Connection {
    type Refs = Refs;

    fn validate(&self, refs: &Refs) -> Vec<Problem> {
        let mut problems = Vec::new();
        if let Some(jdbc) = &self.spec.jdbc
            && let Err(error) = jdbc.url.parse::<JdbcUrl>()
        {
            problems.push(Problem::new(Reason::InvalidUrl, format!("spec.jdbc.url: {error}")));
        }
        let uses = self.spec.secret_keys();
        for (name, state) in &refs.0 {
            let of_secret: Vec<&SecretKeyUse> = uses.iter().filter(|u| &u.secret == name).collect();
            let Some(first) = of_secret.first() else { continue };
            match state {
                SecretState::Missing => problems.push(Problem::new(
                    Reason::SecretNotFound,
                    format!(
                        "{} names Secret {name:?}, but that Secret does not exist in this namespace; create it with the keys {}",
                        secret_field(first.field),
                        of_secret
                            .iter()
                            .filter(|u| u.required)
                            .map(|u| u.key.as_str())
                            .collect::<Vec<_>>()
                            .join(" and ")
                    ),
                )),
                SecretState::NotOptedIn => problems.push(Problem::new(
                    Reason::SecretNotOptedIn,
                    format!(
                        "Secret {name:?} does not let Connections use it: label it {SECRET_CONSENT_LABEL}={SECRET_CONSENT_VALUE} (kubectl label secret {name} {SECRET_CONSENT_LABEL}={SECRET_CONSENT_VALUE}); until then no run mounts it"
                    ),
                )),
                SecretState::Keys(keys) => {
                    let absent: Vec<&&SecretKeyUse> =
                        of_secret.iter().filter(|u| u.required && !keys.contains(&u.key)).collect();
                    if absent.is_empty() {
                        continue;
                    }
                    problems.push(Problem::new(
                        Reason::SecretKeyNotFound,
                        format!(
                            "Secret {name:?} has no key {}; add it, or name the key that holds it in {}",
                            absent.iter().map(|u| format!("{:?}", u.key)).collect::<Vec<_>>().join(" or "),
                            absent.iter().map(|u| u.field).collect::<Vec<_>>().join(" and ")
                        ),
                    ));
                }
            }
        }
        problems
    }

    /// The Connection controller; creating, changing or deleting a Secret re-checks the
    /// Connections that name it.
    fn controller(ctx: &Context) -> Controller<DeserializeGuard<Self>> {
        controller::<Connection>(ctx)
            .recheck_watched::<Secret>(ctx, |connection, name, _| secret_names(connection).contains(name))
    }
}

/// The Secrets a Connection names, each once.
fn secret_names(connection: &Connection) -> BTreeSet<String> {
    connection.spec.secret_keys().into_iter().map(|u| u.secret).collect()
}

/// The field holding a Secret's name, from the field of one of its keys
/// (`spec.s3.credentialsSecretRef.accessKeyIdKey` → `spec.s3.credentialsSecretRef.name`).
fn secret_field(key_field: &str) -> String {
    match key_field.strip_suffix("caSecretRef") {
        Some(_) => format!("{key_field}.name"),
        None => match key_field.rsplit_once('.') {
            Some((parent, _)) => format!("{parent}.name"),
            None => key_field.to_string(),
        },
    }
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
        state(SecretState::Keys(keys.iter().map(|k| k.to_string()).collect()))
    }

    fn state(state: SecretState) -> Refs {
        Refs([("lake-credentials".to_string(), state)].into())
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
        let problems = connection("").validate(&state(SecretState::Missing));
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
        let problems = connection("").validate(&state(SecretState::NotOptedIn));
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
        assert!(c.validate(&Refs::default()).is_empty());
    }

    fn database(url: &str) -> Connection {
        serde_saphyr::from_str(&format!(
            r#"
apiVersion: kglue.dev/v1alpha1
kind: Connection
metadata: {{name: sales-db, namespace: ns}}
spec:
  jdbc:
    url: "{url}"
    credentialsSecretRef: {{name: sales-db}}
    tls: {{mode: VerifyFull, caSecretRef: {{name: sales-db-ca}}}}
"#
        ))
        .expect("a Connection")
    }

    #[test]
    fn a_database_connection_checks_its_url_and_every_secret_it_names() {
        let c = database("jdbc:postgresql://db.internal:5432/sales");
        assert_eq!(
            secret_names(&c).into_iter().collect::<Vec<_>>(),
            ["sales-db", "sales-db-ca"]
        );
        let both = |credentials: SecretState, ca: SecretState| {
            Refs([("sales-db".to_string(), credentials), ("sales-db-ca".to_string(), ca)].into())
        };
        let keys = |keys: &[&str]| SecretState::Keys(keys.iter().map(|k| k.to_string()).collect());
        assert!(
            c.validate(&both(keys(&["username", "password"]), keys(&["ca.crt"])))
                .is_empty()
        );

        let problems = c.validate(&both(keys(&["username"]), SecretState::Missing));
        let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "Secret \"sales-db\" has no key \"password\"; add it, or name the key that holds it in spec.jdbc.credentialsSecretRef.passwordKey",
                "spec.jdbc.tls.caSecretRef.name names Secret \"sales-db-ca\", but that Secret does not exist in this namespace; create it with the keys ca.crt",
            ]
        );

        let problems = database("jdbc:postgresql://db.internal:5432/sales?sslmode=require").validate(&Refs::default());
        assert_eq!(problems[0].reason, Reason::InvalidUrl);
        assert!(
            problems[0].message.starts_with("spec.jdbc.url: ") && problems[0].message.contains("not URL parameters"),
            "{}",
            problems[0].message
        );
    }
}
