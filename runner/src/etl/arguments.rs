//! A run's arguments, in Glue's precedence: the job's non-overridable arguments, then the run's,
//! then the job's defaults. The script refers to them as `$name`; they are bound as SQL
//! parameters (see [`super::script`]), never spliced into the text.

use std::collections::BTreeMap;

/// Why a run's arguments were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgumentError {
    /// A run tried to change a non-overridable argument.
    #[error("argument {name:?} is non-overridable: the job fixes it to {fixed:?}, the run asked for {asked:?}")]
    NonOverridable {
        /// The argument.
        name: String,
        /// The job's value.
        fixed: String,
        /// The run's value.
        asked: String,
    },
    /// An argument name the script could not refer to.
    #[error("argument name {0:?} is not a SQL identifier (letters, digits and underscores, not starting with a digit)")]
    BadName(String),
}

/// Merges the arguments of a run. A run may repeat a non-overridable argument with the same
/// value, but not change it: silently ignoring what was asked for would hide a mistake.
pub fn resolve(
    defaults: &BTreeMap<String, String>,
    run: &BTreeMap<String, String>,
    non_overridable: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ArgumentError> {
    for name in defaults.keys().chain(run.keys()).chain(non_overridable.keys()) {
        if !is_identifier(name) {
            return Err(ArgumentError::BadName(name.clone()));
        }
    }
    for (name, asked) in run {
        if let Some(fixed) = non_overridable.get(name).filter(|fixed| *fixed != asked) {
            return Err(ArgumentError::NonOverridable {
                name: name.clone(),
                fixed: fixed.clone(),
                asked: asked.clone(),
            });
        }
    }
    let mut merged = defaults.clone();
    merged.extend(run.iter().map(|(k, v)| (k.clone(), v.clone())));
    merged.extend(non_overridable.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(merged)
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn glue_precedence_non_overridable_then_run_then_default() {
        let merged = resolve(
            &map(&[("since", "1970-01-01"), ("env", "dev"), ("limit", "10")]),
            &map(&[("since", "2024-01-01"), ("env", "prod")]),
            &map(&[("env", "prod"), ("owner", "finance")]),
        )
        .expect("valid");
        assert_eq!(
            merged,
            map(&[
                ("env", "prod"),
                ("limit", "10"),
                ("owner", "finance"),
                ("since", "2024-01-01")
            ])
        );
    }

    #[test]
    fn a_run_cannot_change_a_non_overridable_argument() {
        let error = resolve(&map(&[]), &map(&[("owner", "me")]), &map(&[("owner", "finance")])).expect_err("refused");
        assert_eq!(
            error.to_string(),
            "argument \"owner\" is non-overridable: the job fixes it to \"finance\", the run asked for \"me\""
        );
    }

    #[test]
    fn names_must_be_identifiers() {
        let error = resolve(&map(&[]), &map(&[("run-date", "x")]), &map(&[])).expect_err("refused");
        assert_eq!(error, ArgumentError::BadName("run-date".into()));
        assert!(resolve(&map(&[("_x1", "a")]), &map(&[]), &map(&[])).is_ok());
    }
}
