//! How storage locations relate, for every check that compares two (the operator's shared-sink
//! check, the runner's write scope): by whole path segments, so `s3://b/x` holds `s3://b/x/y` but
//! not `s3://b/xy`; trailing slashes do not matter.

use crate::protocol::storage::Location;

/// Whether `outer` is `inner` or one of its parent folders. Parsed as locations where they parse
/// (so `s3a://` is `s3://`), else compared as text.
pub fn contains(outer: &str, inner: &str) -> bool {
    if let (Ok(outer), Ok(inner)) = (outer.parse::<Location>(), inner.parse::<Location>()) {
        return outer.holds(&inner);
    }
    let (outer, inner) = (outer.trim_end_matches('/'), inner.trim_end_matches('/'));
    inner.starts_with(outer) && (inner.len() == outer.len() || inner[outer.len()..].starts_with('/'))
}

/// Whether two locations overlap: one holds the other.
pub fn overlap(a: &str, b: &str) -> bool {
    contains(a, b) || contains(b, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_segments_count_and_trailing_slashes_do_not() {
        assert!(contains("s3://b/x", "s3://b/x/y/"));
        assert!(contains("s3://b/x/", "s3://b/x"));
        assert!(!contains("s3://b/x", "s3://b/xy"));
        assert!(!contains("s3://b/x/y", "s3://b/x"));
        assert!(overlap("s3://b/x/y", "s3://b/x"));
        assert!(!overlap("s3://b/events/", "s3://b/events-archive/"));
        assert!(contains("file:///data/", "file:///data/out/"));
        assert!(contains("s3a://bucket/x/", "s3://bucket/x/y"));
        assert!(!contains("s3://bucket/x/", "s3://other/x/y"));
        assert!(contains("s3://bucket", "s3://bucket/anything"));
    }
}
