//! The type a text value suggests (a CSV field, a JSON string, a Hive partition value such as
//! `dt=2024-01-01`): the crawler's scalar inference, whose results it widens over many values with
//! [`GlueType::widen`].

use kglue_crds::glue_type::GlueType;

/// The type a text value (a CSV field, a Hive partition value such as `dt=2024-01-01`) suggests, for
/// schema inference; widen the results over many values with [`GlueType::widen`].
///
/// - `""` → `None`: an empty value is a null and says nothing about the type.
/// - `true` / `false`, in any case → `boolean`.
/// - An integer that fits 32 bits → `int`; 64 bits → `bigint`. A longer one → `string`.
/// - A decimal or scientific number (`-1.5`, `2.5e-3`, `1E10`) → `double`; `NaN`, `inf` and
///   numbers beyond a double's range → `string`.
/// - A leading zero (`007`, `00.5`), a leading `+`, or a point without digits on both sides (`.5`,
///   `5.`) → `string`: like Glue, such values are taken for identifiers or codes, whose zeros and
///   signs would be lost as numbers. `0`, `-0` and `0.5` are numbers.
/// - `YYYY-MM-DD`, a real calendar day (`2024-02-29` yes, `2023-02-29` no) → `date`.
/// - `YYYY-MM-DD HH:MM:SS[.f…]` (Hive's form, 1–9 fractional digits) and ISO 8601
///   `YYYY-MM-DDTHH:MM:SS[.f…][Z|±HH:MM]` → `timestamp`.
/// - Anything else → `string`. Values are not trimmed: ` 42` is a string, as a CSV reader would
///   not read it as a number either.
pub fn infer_text(value: &str) -> Option<GlueType> {
    if value.is_empty() {
        return None;
    }
    if value.eq_ignore_ascii_case("true") || value.eq_ignore_ascii_case("false") {
        return Some(GlueType::Boolean);
    }
    let bytes = value.as_bytes();
    Some(
        infer_number(value)
            .or_else(|| is_date(bytes).then_some(GlueType::Date))
            .or_else(|| is_timestamp(bytes).then_some(GlueType::Timestamp))
            .unwrap_or(GlueType::String),
    )
}

/// The number of ASCII digits at the start of `bytes`.
fn leading_digits(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// `int`, `bigint` or `double` for a number written as [`infer_text`] accepts it.
fn infer_number(value: &str) -> Option<GlueType> {
    let bytes = value.as_bytes();
    let mut i = usize::from(bytes.first() == Some(&b'-'));
    let integer_digits = leading_digits(&bytes[i..]);
    if integer_digits == 0 || (integer_digits > 1 && bytes[i] == b'0') {
        return None;
    }
    i += integer_digits;
    if i == bytes.len() {
        return match value.parse::<i64>() {
            Ok(v) if i32::try_from(v).is_ok() => Some(GlueType::Int),
            Ok(_) => Some(GlueType::BigInt),
            Err(_) => None,
        };
    }
    if bytes[i] == b'.' {
        let fraction = leading_digits(&bytes[i + 1..]);
        if fraction == 0 {
            return None;
        }
        i += 1 + fraction;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exponent = leading_digits(bytes.get(i..).unwrap_or_default());
        if exponent == 0 {
            return None;
        }
        i += exponent;
    }
    if i != bytes.len() {
        return None;
    }
    value
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .map(|_| GlueType::Double)
}

/// The value of a run of ASCII digits (callers check they are digits and few).
fn digits_value(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0, |value, b| value * 10 + u32::from(b - b'0'))
}

/// Whether `bytes` are exactly `count` ASCII digits.
fn all_digits(bytes: &[u8], count: usize) -> bool {
    bytes.len() == count && leading_digits(bytes) == count
}

/// `YYYY-MM-DD`, a day that exists in the proleptic Gregorian calendar.
fn is_date(bytes: &[u8]) -> bool {
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return false;
    }
    if !all_digits(&bytes[0..4], 4) || !all_digits(&bytes[5..7], 2) || !all_digits(&bytes[8..10], 2) {
        return false;
    }
    let year = digits_value(&bytes[0..4]);
    let month = digits_value(&bytes[5..7]);
    let day = digits_value(&bytes[8..10]);
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

/// `HH:MM` with HH 00–23 and MM 00–59.
fn is_hours_minutes(bytes: &[u8]) -> bool {
    bytes.len() == 5
        && bytes[2] == b':'
        && all_digits(&bytes[0..2], 2)
        && all_digits(&bytes[3..5], 2)
        && digits_value(&bytes[0..2]) < 24
        && digits_value(&bytes[3..5]) < 60
}

/// `YYYY-MM-DD HH:MM:SS[.f…]` or `YYYY-MM-DDTHH:MM:SS[.f…][Z|±HH:MM]`.
fn is_timestamp(bytes: &[u8]) -> bool {
    if bytes.len() < 19 || !is_date(&bytes[..10]) {
        return false;
    }
    let iso = match bytes[10] {
        b' ' => false,
        b'T' => true,
        _ => return false,
    };
    let time = &bytes[11..19];
    if !is_hours_minutes(&time[..5]) || time[5] != b':' || !all_digits(&time[6..8], 2) || digits_value(&time[6..8]) > 59
    {
        return false;
    }
    let mut rest = &bytes[19..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let digits = leading_digits(fraction);
        if !(1..=9).contains(&digits) {
            return false;
        }
        rest = &fraction[digits..];
    }
    match rest {
        [] => true,
        _ if !iso => false,
        [b'Z'] => true,
        [b'+' | b'-', offset @ ..] => is_hours_minutes(offset),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use GlueType::*;

    #[test]
    fn infer_text_classifies_values() {
        let cases: &[(&str, Option<GlueType>)] = &[
            ("", None),
            ("true", Some(Boolean)),
            ("FALSE", Some(Boolean)),
            ("True", Some(Boolean)),
            ("yes", Some(String)),
            ("0", Some(Int)),
            ("-0", Some(Int)),
            ("42", Some(Int)),
            ("-42", Some(Int)),
            ("2024", Some(Int)),
            ("2147483647", Some(Int)),
            ("-2147483648", Some(Int)),
            ("2147483648", Some(BigInt)),
            ("-2147483649", Some(BigInt)),
            ("9223372036854775807", Some(BigInt)),
            ("-9223372036854775808", Some(BigInt)),
            ("9223372036854775808", Some(String)),
            ("123456789012345678901234567890", Some(String)),
            ("007", Some(String)),
            ("-007", Some(String)),
            ("00", Some(String)),
            ("+5", Some(String)),
            ("1.5", Some(Double)),
            ("-0.25", Some(Double)),
            ("0.5", Some(Double)),
            ("00.5", Some(String)),
            ("01.5", Some(String)),
            (".5", Some(String)),
            ("5.", Some(String)),
            ("-", Some(String)),
            ("1e10", Some(Double)),
            ("2.5E-3", Some(Double)),
            ("-1.5e+300", Some(Double)),
            ("1e", Some(String)),
            ("1e+", Some(String)),
            ("1e400", Some(String)),
            ("NaN", Some(String)),
            ("nan", Some(String)),
            ("inf", Some(String)),
            ("-Infinity", Some(String)),
            ("1,000", Some(String)),
            (" 42", Some(String)),
            ("42 ", Some(String)),
            ("0x1F", Some(String)),
            ("1_000", Some(String)),
            ("2024-01-01", Some(Date)),
            ("2024-02-29", Some(Date)),
            ("2000-02-29", Some(Date)),
            ("1900-02-29", Some(String)),
            ("2023-02-29", Some(String)),
            ("2024-02-30", Some(String)),
            ("2024-04-31", Some(String)),
            ("2024-12-31", Some(Date)),
            ("2024-13-01", Some(String)),
            ("2024-00-10", Some(String)),
            ("2024-01-00", Some(String)),
            ("2024-1-01", Some(String)),
            ("24-01-01", Some(String)),
            ("2024/01/01", Some(String)),
            ("2024-01-01 10:30:00", Some(Timestamp)),
            ("2024-01-01 23:59:59.123", Some(Timestamp)),
            ("2024-01-01 00:00:00.123456789", Some(Timestamp)),
            ("2024-01-01 00:00:00.1234567890", Some(String)),
            ("2024-01-01 00:00:00.", Some(String)),
            ("2024-01-01 24:00:00", Some(String)),
            ("2024-01-01 10:60:00", Some(String)),
            ("2024-01-01 10:00:60", Some(String)),
            ("2024-01-01 10:00", Some(String)),
            ("2024-01-01 10:00:00Z", Some(String)),
            ("2024-02-30 10:00:00", Some(String)),
            ("2024-01-01T10:30:00", Some(Timestamp)),
            ("2024-01-01T10:30:00Z", Some(Timestamp)),
            ("2024-01-01T10:30:00.5Z", Some(Timestamp)),
            ("2024-01-01T10:30:00+02:00", Some(Timestamp)),
            ("2024-01-01T10:30:00.123456-05:30", Some(Timestamp)),
            ("2024-01-01T10:30:00+2:00", Some(String)),
            ("2024-01-01T10:30:00+24:00", Some(String)),
            ("2024-01-01T10:30:00+0200", Some(String)),
            ("2024-01-01T10:30:00ZZ", Some(String)),
            ("2024-01-01T10:30", Some(String)),
            ("2024-01-01t10:30:00", Some(String)),
            ("2024-01-01_10:30:00", Some(String)),
            ("hello", Some(String)),
            ("ünïcode", Some(String)),
            ("2024-01-01ü", Some(String)),
        ];
        let mut failures = Vec::new();
        for (value, expected) in cases {
            let actual = infer_text(value);
            if &actual != expected {
                failures.push(format!("{value:?}: expected {expected:?}, got {actual:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn inferred_text_types_widen_like_a_crawl() {
        let infer = |values: &[&str]| values.iter().filter_map(|v| infer_text(v)).reduce(|a, b| a.widen(&b));
        assert_eq!(infer(&["1", "", "2"]), Some(Int));
        assert_eq!(infer(&["1", "3000000000"]), Some(BigInt));
        assert_eq!(infer(&["1", "2.5"]), Some(Double));
        assert_eq!(infer(&["2024-01-01", "2024-01-02 10:00:00"]), Some(Timestamp));
        assert_eq!(infer(&["1", "007"]), Some(String));
        assert_eq!(infer(&["true", "1"]), Some(String));
        assert_eq!(infer(&["", ""]), None);
    }
}
