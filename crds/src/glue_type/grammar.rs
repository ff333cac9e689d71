//! The grammar of type strings (see the parent module's documentation): a recursive-descent
//! parser with errors that say what was expected, where, with an excerpt of the input.

use std::collections::HashSet;

use super::{
    GlueType, MAX_CHAR_LENGTH, MAX_DECIMAL_PRECISION, MAX_NESTING, MAX_VARCHAR_LENGTH, StructField, TypeParseError,
    TypeParseErrorKind,
};

/// The longest excerpt of the input an error shows.
const EXCERPT_LEN: usize = 60;

/// The longest name or type an error message repeats.
const QUOTE_LEN: usize = 64;

/// `text`, cut after [`QUOTE_LEN`] characters.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(QUOTE_LEN) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The input around `offset`, at most [`EXCERPT_LEN`] bytes (plus whole characters), with `…`
/// where it was cut.
fn excerpt(input: &str, offset: usize) -> String {
    if input.len() <= EXCERPT_LEN {
        return input.to_string();
    }
    let mut start = offset.saturating_sub(EXCERPT_LEN / 2).min(input.len() - EXCERPT_LEN);
    while !input.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (start + EXCERPT_LEN).min(input.len());
    while !input.is_char_boundary(end) {
        end += 1;
    }
    format!(
        "{}{}{}",
        if start > 0 { "…" } else { "" },
        &input[start..end],
        if end < input.len() { "…" } else { "" }
    )
}

/// What the input holds at `offset`, for an error message: `end of input`, a word in double
/// quotes, or a character in single quotes.
fn describe(input: &str, offset: usize) -> String {
    let rest = input.get(offset..).unwrap_or_default();
    let is_word = |c: &char| c.is_alphanumeric() || *c == '_';
    match rest.chars().next() {
        None => "end of input".to_string(),
        Some(c) if is_word(&c) => {
            let word: String = rest.chars().take_while(is_word).collect();
            format!("{:?}", shorten(&word))
        }
        Some(c) => format!("{c:?}"),
    }
}

/// The Glue name of a type other systems spell differently.
fn hint(word: &str) -> Option<&'static str> {
    Some(match word {
        "long" | "int64" => "bigint",
        "short" | "int16" => "smallint",
        "byte" => "tinyint",
        "int32" => "int",
        "bool" => "boolean",
        "real" | "float32" => "float",
        "float64" => "double",
        "numeric" | "dec" | "number" => "decimal",
        "text" | "str" | "utf8" => "string",
        "bytes" | "blob" | "bytea" => "binary",
        "datetime" | "timestamp_ntz" | "timestamp_ltz" | "timestamptz" => "timestamp",
        "list" => "array",
        "record" | "row" => "struct",
        _ => return None,
    })
}

/// A recursive-descent parser over a type string; `pos` is a byte offset, always on a character
/// boundary (it only moves over ASCII bytes or up to an ASCII delimiter).
pub(super) struct Parser<'a> {
    pub(super) input: &'a str,
    pub(super) pos: usize,
}

impl<'a> Parser<'a> {
    /// A parser at the start of `input`.
    pub(super) fn new(input: &'a str) -> Self {
        Parser { input, pos: 0 }
    }

    fn bytes(&self) -> &'a [u8] {
        self.input.as_bytes()
    }

    pub(super) fn skip_whitespace(&mut self) {
        while self.bytes().get(self.pos).is_some_and(u8::is_ascii_whitespace) {
            self.pos += 1;
        }
    }

    /// Skips whitespace and consumes `byte` if it comes next.
    fn eat(&mut self, byte: u8) -> bool {
        self.skip_whitespace();
        if self.bytes().get(self.pos) == Some(&byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, byte: u8, expected: impl FnOnce() -> String) -> Result<(), TypeParseError> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(self.expected_here(expected()))
        }
    }

    fn error(&self, offset: usize, kind: TypeParseErrorKind) -> TypeParseError {
        TypeParseError {
            kind,
            offset,
            excerpt: excerpt(self.input, offset),
        }
    }

    fn expected_at(&self, offset: usize, expected: String) -> TypeParseError {
        let found = describe(self.input, offset);
        self.error(offset, TypeParseErrorKind::Expected { expected, found })
    }

    pub(super) fn expected_here(&self, expected: String) -> TypeParseError {
        self.expected_at(self.pos, expected)
    }

    /// Skips whitespace and reads a keyword (ASCII letters, digits, underscores) and its offset.
    fn word(&mut self) -> (usize, &'a str) {
        self.skip_whitespace();
        let start = self.pos;
        while self
            .bytes()
            .get(self.pos)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
        {
            self.pos += 1;
        }
        (start, &self.input[start..self.pos])
    }

    /// Skips whitespace and reads a decimal number and its offset.
    fn number(&mut self, what: &str) -> Result<(usize, u64), TypeParseError> {
        self.skip_whitespace();
        let start = self.pos;
        let mut value: u64 = 0;
        while let Some(digit) = self.bytes().get(self.pos).filter(|b| b.is_ascii_digit()) {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(digit - b'0')))
                .ok_or_else(|| self.error(start, TypeParseErrorKind::NumberTooLarge))?;
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.expected_here(what.to_string()));
        }
        Ok((start, value))
    }

    pub(super) fn parse_type(&mut self, depth: usize) -> Result<GlueType, TypeParseError> {
        let (start, word) = self.word();
        if word.is_empty() {
            return Err(self.expected_here("a type".into()));
        }
        if depth > MAX_NESTING {
            return Err(self.error(start, TypeParseErrorKind::TooDeep));
        }
        let keyword = word.to_ascii_lowercase();
        Ok(match keyword.as_str() {
            "boolean" => GlueType::Boolean,
            "tinyint" => GlueType::TinyInt,
            "smallint" => GlueType::SmallInt,
            "int" | "integer" => GlueType::Int,
            "bigint" => GlueType::BigInt,
            "float" => GlueType::Float,
            "double" => GlueType::Double,
            "decimal" => self.decimal()?,
            "string" => GlueType::String,
            "char" => GlueType::Char(self.length("char", u32::from(MAX_CHAR_LENGTH))? as u16),
            "varchar" => GlueType::Varchar(self.length("varchar", MAX_VARCHAR_LENGTH)?),
            "binary" => GlueType::Binary,
            "date" => GlueType::Date,
            "timestamp" => GlueType::Timestamp,
            "array" => {
                self.expect(b'<', || "'<' after array".into())?;
                let element = self.parse_type(depth + 1)?;
                self.expect(b'>', || "'>' to close array<…>".into())?;
                GlueType::Array(Box::new(element))
            }
            "map" => {
                self.expect(b'<', || "'<' after map".into())?;
                self.skip_whitespace();
                let key_start = self.pos;
                let key = self.parse_type(depth + 1)?;
                if !key.is_primitive() {
                    let key = shorten(&key.to_string());
                    return Err(self.error(key_start, TypeParseErrorKind::NonPrimitiveMapKey(key)));
                }
                self.expect(b',', || "',' after the map key type".into())?;
                let value = self.parse_type(depth + 1)?;
                self.expect(b'>', || "'>' to close map<…>".into())?;
                GlueType::Map(Box::new(key), Box::new(value))
            }
            "struct" => self.struct_fields(depth)?,
            _ => {
                return Err(self.error(
                    start,
                    TypeParseErrorKind::UnknownType {
                        name: shorten(word),
                        hint: hint(&keyword),
                    },
                ));
            }
        })
    }

    /// After `decimal`: an optional `(precision[,scale])`.
    fn decimal(&mut self) -> Result<GlueType, TypeParseError> {
        if !self.eat(b'(') {
            return Ok(GlueType::Decimal {
                precision: 10,
                scale: 0,
            });
        }
        let (precision_at, precision) = self.number("a number for the decimal precision")?;
        let (scale_at, scale) = if self.eat(b',') {
            self.number("a number for the decimal scale")?
        } else if self.bytes().get(self.pos) == Some(&b')') {
            (precision_at, 0)
        } else {
            return Err(self.expected_here("',' or ')' after the decimal precision".into()));
        };
        self.expect(b')', || "')' to close decimal(…)".into())?;
        if !(1..=u64::from(MAX_DECIMAL_PRECISION)).contains(&precision) {
            return Err(self.error(precision_at, TypeParseErrorKind::DecimalPrecision(precision)));
        }
        if scale > precision {
            return Err(self.error(scale_at, TypeParseErrorKind::DecimalScale { precision, scale }));
        }
        // Both fit in u8: precision ≤ 38 and scale ≤ precision.
        Ok(GlueType::Decimal {
            precision: precision as u8,
            scale: scale as u8,
        })
    }

    /// After `char` or `varchar`: `(length)`, with the length in 1..=max.
    fn length(&mut self, type_name: &'static str, max: u32) -> Result<u32, TypeParseError> {
        self.expect(b'(', || format!("'(' and a length after {type_name}"))?;
        let (at, length) = self.number(&format!("a number for the {type_name} length"))?;
        self.expect(b')', || format!("')' to close {type_name}(…)"))?;
        if !(1..=u64::from(max)).contains(&length) {
            return Err(self.error(
                at,
                TypeParseErrorKind::Length {
                    type_name,
                    max,
                    found: length,
                },
            ));
        }
        // Fits: length ≤ max, a u32.
        Ok(length as u32)
    }

    /// After `struct`: `<name:type,…>`.
    fn struct_fields(&mut self, depth: usize) -> Result<GlueType, TypeParseError> {
        self.expect(b'<', || "'<' after struct".into())?;
        let mut fields = Vec::new();
        let mut seen = HashSet::new();
        loop {
            let (name_at, name) = self.field_name()?;
            if !seen.insert(name.to_lowercase()) {
                return Err(self.error(name_at, TypeParseErrorKind::DuplicateField(shorten(name))));
            }
            let type_ = self.parse_type(depth + 1)?;
            fields.push(StructField {
                name: name.to_string(),
                type_,
            });
            if self.eat(b',') {
                continue;
            }
            if self.eat(b'>') {
                return Ok(GlueType::Struct(fields));
            }
            return Err(self.expected_here(format!("',' or '>' after struct field {:?}", shorten(name))));
        }
    }

    /// A struct field name and the `:` after it; returns the name's offset and the name without
    /// surrounding whitespace.
    fn field_name(&mut self) -> Result<(usize, &'a str), TypeParseError> {
        self.skip_whitespace();
        let start = self.pos;
        let rest = &self.input[start..];
        let stop = start + rest.find([':', ',', '<', '>', '`']).unwrap_or(rest.len());
        let name = self.input[start..stop].trim_end_matches(|c: char| c.is_ascii_whitespace());
        match self.bytes().get(stop) {
            Some(b'`') => Err(self.error(stop, TypeParseErrorKind::Backtick)),
            _ if name.is_empty() => Err(self.expected_here("a struct field name".into())),
            Some(b':') => {
                self.pos = stop + 1;
                Ok((start, name))
            }
            _ => {
                // The usual mistake is Hive DDL's `name type`: point at the second word.
                let (first, at) = match name.find(|c: char| c.is_ascii_whitespace()) {
                    Some(gap) => {
                        let after = &name[gap..];
                        let spaces = after.len() - after.trim_start_matches(|c: char| c.is_ascii_whitespace()).len();
                        (&name[..gap], start + gap + spaces)
                    }
                    None => (name, stop),
                };
                Err(self.expected_at(at, format!("':' after struct field name {:?}", shorten(first))))
            }
        }
    }
}
