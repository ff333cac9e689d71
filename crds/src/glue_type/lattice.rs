//! The type lattice: which types are equivalent, the narrowest type that holds two types' values
//! (widening, for schema inference), and whether a schema change keeps old data readable.

use std::collections::HashMap;

use super::{GlueType, MAX_DECIMAL_PRECISION, StructField, TypeChange};

impl GlueType {
    /// Whether the two types are equal up to the order of struct fields and the case of their
    /// names (which Hive, Athena, Trino and Spark ignore), at every level.
    pub fn is_equivalent(&self, other: &GlueType) -> bool {
        match (self, other) {
            (GlueType::Array(a), GlueType::Array(b)) => a.is_equivalent(b),
            (GlueType::Map(ka, va), GlueType::Map(kb, vb)) => ka.is_equivalent(kb) && va.is_equivalent(vb),
            (GlueType::Struct(a), GlueType::Struct(b)) => {
                if a.len() != b.len() {
                    return false;
                }
                let by_name: HashMap<String, &GlueType> = b
                    .iter()
                    .map(|field| (field.name.to_lowercase(), &field.type_))
                    .collect();
                a.iter().all(|field| {
                    by_name
                        .get(&field.name.to_lowercase())
                        .is_some_and(|type_| field.type_.is_equivalent(type_))
                })
            }
            _ => self == other,
        }
    }

    /// The narrowest type that holds the values of both `self` and `other`: how a column's type is
    /// inferred across the rows and files of a crawl (Glue's and Hive's widening).
    ///
    /// - Identical types give the same type.
    /// - Integers widen along tinyint → smallint → int → bigint.
    /// - An integer and a decimal give a decimal with enough integer digits for both (tinyint
    ///   needs 3, smallint 5, int 10, bigint 19); two decimals give the larger number of integer
    ///   digits plus the larger scale. Precision is capped at 38, and when both do not fit the
    ///   integer digits are kept and the scale reduced (rounding fractional digits loses less than
    ///   overflowing): `decimal(20,18)` + `decimal(30,0)` → `decimal(38,8)`.
    /// - An integer or decimal and a `float` or `double` give `double`; `float` + `double` →
    ///   `double`. (Not `float` for integers, as Spark does: `float` cannot hold an int exactly.)
    /// - `date` + `timestamp` → `timestamp`.
    /// - Text types follow Hive: `char(a)` + `char(b)` → `char(max)`, `char`/`varchar` +
    ///   `varchar` → `varchar(max)`, anything with `string` → `string`.
    /// - `array<a>` + `array<b>` → `array<widen(a,b)>`; maps widen key and value alike (keys stay
    ///   primitive, as every widening of primitives is primitive).
    /// - Two structs give the union of their fields, matched by name ignoring case: the fields of
    ///   `self` first (common ones widened, spelled as in `self`), then the fields only `other` has,
    ///   in its order.
    /// - Anything else (`boolean` + `int`, `struct` + `string`, `array` + `int`, `binary` +
    ///   `date`, …) → `string`, which holds every value as text.
    ///
    /// The result is commutative and associative up to struct field order and field-name case
    /// ([`is_equivalent`](Self::is_equivalent)), so the order in which files and rows are read does
    /// not change the inferred type.
    pub fn widen(&self, other: &GlueType) -> GlueType {
        use GlueType::*;
        if self == other {
            return self.clone();
        }
        match (self, other) {
            (Array(a), Array(b)) => Array(Box::new(a.widen(b))),
            (Map(ka, va), Map(kb, vb)) => Map(Box::new(ka.widen(kb)), Box::new(va.widen(vb))),
            (Struct(a), Struct(b)) => Struct(merge_fields(a, b)),
            (Date, Timestamp) | (Timestamp, Date) => Timestamp,
            (Char(a), Char(b)) => Char(*a.max(b)),
            (Char(a), Varchar(b)) | (Varchar(b), Char(a)) => Varchar(u32::from(*a).max(*b)),
            (Varchar(a), Varchar(b)) => Varchar(*a.max(b)),
            _ => widen_numbers(self, other).unwrap_or(String),
        }
    }

    /// How the type of a column changed from `old` to `self`, for the crawler's schema change
    /// policy.
    ///
    /// - [`Same`](TypeChange::Same): the types are identical.
    /// - [`Widened`](TypeChange::Widened): `self` is what [`widen`](Self::widen) makes of `old` and
    ///   `self`, i.e. `self` holds every value of `old`: a wider integer (int → bigint), a decimal
    ///   with at least as many integer and fractional digits, int/decimal/float → double, date →
    ///   timestamp, a longer char/varchar, char → varchar, anything → string, an array or map whose
    ///   parts widened, a struct that kept every field (fields widened or not, new fields added,
    ///   reordered, or renamed only in case: readers match fields by name ignoring case).
    /// - [`Incompatible`](TypeChange::Incompatible): anything else: a narrower type (bigint → int,
    ///   string → int, timestamp → date, double → decimal), int → float (a float holds 24 bits), a
    ///   different family (boolean → int), or a struct that lost a field (its data would no longer
    ///   be read).
    ///
    /// The crawler's own widening never yields `Incompatible`: `old.widen(x).change_from(old)` is
    /// `Same` or `Widened` for every `x`. As in Glue, bigint → double and decimal → double count as
    /// widened although a double rounds integers beyond 2^53 and decimals beyond 15–17 significant
    /// digits, and so does the scale reduction of a decimal capped at 38 digits (see `widen`).
    pub fn change_from(&self, old: &GlueType) -> TypeChange {
        if self == old {
            TypeChange::Same
        } else if old.widen(self).is_equivalent(self) {
            TypeChange::Widened
        } else {
            TypeChange::Incompatible
        }
    }

    /// The integer digits a decimal needs to hold every value of an integer type.
    fn integer_digits(&self) -> Option<u8> {
        match self {
            GlueType::TinyInt => Some(3),
            GlueType::SmallInt => Some(5),
            GlueType::Int => Some(10),
            GlueType::BigInt => Some(19),
            _ => None,
        }
    }

    /// An integer or decimal type as (integer digits, scale).
    fn as_decimal(&self) -> Option<(u8, u8)> {
        match self {
            GlueType::Decimal { precision, scale } => Some((precision.saturating_sub(*scale), *scale)),
            other => other.integer_digits().map(|digits| (digits, 0)),
        }
    }
}

/// Widening of two different numeric types; `None` when one is not numeric.
fn widen_numbers(a: &GlueType, b: &GlueType) -> Option<GlueType> {
    let floating = |t: &GlueType| matches!(t, GlueType::Float | GlueType::Double);
    match (a.as_decimal(), b.as_decimal()) {
        (Some((digits_a, scale_a)), Some((digits_b, scale_b))) => {
            if let (Some(int_a), Some(int_b)) = (a.integer_digits(), b.integer_digits()) {
                return Some(if int_a >= int_b { a.clone() } else { b.clone() });
            }
            let digits = digits_a.max(digits_b).min(MAX_DECIMAL_PRECISION);
            let scale = scale_a.max(scale_b).min(MAX_DECIMAL_PRECISION - digits);
            Some(GlueType::Decimal {
                precision: (digits + scale).max(1),
                scale,
            })
        }
        (Some(_), None) if floating(b) => Some(GlueType::Double),
        (None, Some(_)) if floating(a) => Some(GlueType::Double),
        (None, None) if floating(a) && floating(b) => Some(GlueType::Double),
        _ => None,
    }
}

/// The union of two structs' fields by name ignoring case: `a`'s first, then those only `b` has.
fn merge_fields(a: &[StructField], b: &[StructField]) -> Vec<StructField> {
    let index: HashMap<String, usize> = b
        .iter()
        .enumerate()
        .map(|(i, field)| (field.name.to_lowercase(), i))
        .collect();
    let mut matched = vec![false; b.len()];
    let mut fields: Vec<StructField> = a
        .iter()
        .map(|field| match index.get(&field.name.to_lowercase()) {
            Some(&i) => {
                matched[i] = true;
                StructField {
                    name: field.name.clone(),
                    type_: field.type_.widen(&b[i].type_),
                }
            }
            None => field.clone(),
        })
        .collect();
    fields.extend(
        b.iter()
            .zip(&matched)
            .filter(|(_, matched)| !**matched)
            .map(|(field, _)| field.clone()),
    );
    fields
}
