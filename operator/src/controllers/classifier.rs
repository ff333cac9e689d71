//! Classifier: the grok pattern must compile with its custom patterns (`InvalidPattern`), with
//! the same grok engine the crawler uses.

use std::collections::BTreeMap;

use kglue_crds::Classifier;

use super::pipeline::{Problem, Reason, Reconcile};

impl Reconcile for Classifier {
    type Refs = ();

    fn validate(&self, _refs: &()) -> Vec<Problem> {
        self.spec
            .grok
            .as_ref()
            .and_then(|grok| check_grok(&grok.pattern, &grok.custom_patterns).err())
            .map(|message| vec![Problem::new(Reason::InvalidPattern, message)])
            .unwrap_or_default()
    }
}

/// Compiles a grok pattern; the error says what to fix.
pub fn check_grok(pattern: &str, custom: &BTreeMap<String, String>) -> Result<(), String> {
    let mut grok = grok::Grok::with_default_patterns();
    for (name, definition) in custom {
        grok.add_pattern(name.as_str(), definition.as_str());
    }
    grok.compile(pattern, true)
        .map(|_| ())
        .map_err(|error| format!("spec.grok.pattern does not compile: {error}; fix the pattern or add the missing name to spec.grok.customPatterns"))?;
    if !pattern.contains("%{") || !named_capture(pattern) {
        return Err("spec.grok.pattern names no captures: use %{PATTERN:column} for every field to read".into());
    }
    Ok(())
}

/// Whether the pattern has a `%{NAME:alias}` capture (what becomes a column).
fn named_capture(pattern: &str) -> bool {
    pattern.split("%{").skip(1).any(|rest| {
        rest.split('}')
            .next()
            .and_then(|body| body.split('=').next())
            .is_some_and(|head| head.split(':').nth(1).is_some_and(|alias| !alias.is_empty()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grok_patterns_compile_with_custom_patterns() {
        assert!(check_grok("%{IP:client} %{WORD:method} %{NUMBER:status:int}", &BTreeMap::new()).is_ok());
        let custom = [("ORDERID".to_string(), "ORD-[0-9]+".to_string())]
            .into_iter()
            .collect();
        assert!(check_grok("%{ORDERID:order} %{GREEDYDATA:rest}", &custom).is_ok());
    }

    #[test]
    fn unknown_names_and_bad_regexes_are_invalid() {
        let unknown = check_grok("%{NOSUCHPATTERN:x}", &BTreeMap::new())
            .err()
            .unwrap_or_default();
        assert!(unknown.contains("does not compile"), "{unknown}");
        let custom = [("BAD".to_string(), "([a-z".to_string())].into_iter().collect();
        assert!(check_grok("%{BAD:x}", &custom).is_err());
        assert!(
            check_grok("%{IP} %{WORD}", &BTreeMap::new())
                .err()
                .unwrap_or_default()
                .contains("no captures")
        );
    }
}
