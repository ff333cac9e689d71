//! Delimited text: which delimiter a sample uses, and its rows. Quoted fields may hold the
//! delimiter, doubled quotes and line breaks (RFC 4180), which the `csv` crate handles.

/// The delimiters the built-in classifier tries, in order of preference when several fit.
pub const CANDIDATE_DELIMITERS: [u8; 4] = [b',', b'\t', b'|', b';'];

/// A sample parsed with one delimiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The delimiter.
    pub delimiter: u8,
    /// The records, each with its 1-based line number in the sample.
    pub rows: Vec<(u64, Vec<String>)>,
}

/// Why a sample is not usable delimited text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DelimitedError {
    /// No candidate delimiter splits the first line into two or more fields.
    #[error("no delimiter (',' tab '|' ';') splits the first line into several fields")]
    NoDelimiter,
    /// Rows disagree on the number of fields.
    #[error("ragged rows with delimiter {delimiter:?}: line {line} has {found} fields where line 1 has {expected}")]
    Ragged {
        /// The delimiter that fit best.
        delimiter: char,
        /// The first line that disagrees.
        line: u64,
        /// Its number of fields.
        found: usize,
        /// The first line's number of fields.
        expected: usize,
    },
    /// The text could not be parsed (an unterminated quote, for instance).
    #[error("line {line}: {message}")]
    Malformed {
        /// Where.
        line: u64,
        /// What the parser said.
        message: String,
    },
}

/// Parses `sample` with `delimiter` and `quote`. Every record is kept, whatever its length.
pub fn parse(sample: &str, delimiter: u8, quote: u8) -> Result<Parsed, DelimitedError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .quote(quote)
        .from_reader(sample.as_bytes());
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| DelimitedError::Malformed {
            line: e.position().map(|p| p.line()).unwrap_or_default(),
            message: e.to_string(),
        })?;
        // A blank line parses as one empty field; it holds no data.
        if record.len() == 1 && record[0].is_empty() {
            continue;
        }
        let line = record.position().map(|p| p.line()).unwrap_or_default();
        rows.push((line, record.iter().map(str::to_string).collect()));
    }
    Ok(Parsed { delimiter, rows })
}

/// Picks the delimiter among `candidates` that splits every row of the sample into the same
/// number (two or more) of fields; the first such candidate wins. When none is consistent, the
/// error names the first ragged line under the candidate that fit most rows.
pub fn detect(sample: &str, candidates: &[u8], quote: u8) -> Result<Parsed, DelimitedError> {
    let mut best: Option<(usize, Parsed)> = None;
    let mut first_error = None;
    for &delimiter in candidates {
        let parsed = match parse(sample, delimiter, quote) {
            Ok(parsed) => parsed,
            Err(error) => {
                first_error.get_or_insert(error);
                continue;
            }
        };
        let Some((_, first)) = parsed.rows.first() else {
            continue;
        };
        let width = first.len();
        if width < 2 {
            continue;
        }
        let matching = parsed.rows.iter().filter(|(_, row)| row.len() == width).count();
        if matching == parsed.rows.len() {
            return Ok(parsed);
        }
        if best.as_ref().is_none_or(|(count, _)| matching > *count) {
            best = Some((matching, parsed));
        }
    }
    match best {
        Some((_, parsed)) => {
            let expected = parsed.rows[0].1.len();
            let (line, row) = parsed
                .rows
                .iter()
                .find(|(_, row)| row.len() != expected)
                .map(|(line, row)| (*line, row.len()))
                .unwrap_or_default();
            Err(DelimitedError::Ragged {
                delimiter: parsed.delimiter as char,
                line,
                found: row,
                expected,
            })
        }
        None => Err(first_error.unwrap_or(DelimitedError::NoDelimiter)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widths(parsed: &Parsed) -> Vec<usize> {
        parsed.rows.iter().map(|(_, row)| row.len()).collect()
    }

    #[test]
    fn detects_each_candidate_delimiter() {
        for (sample, delimiter) in [
            ("a,b,c\n1,2,3\n", b','),
            ("a\tb\tc\n1\t2\t3\n", b'\t'),
            ("a|b|c\n1|2|3\n", b'|'),
            ("a;b;c\n1;2;3\n", b';'),
        ] {
            let parsed = detect(sample, &CANDIDATE_DELIMITERS, b'"').expect(sample);
            assert_eq!(parsed.delimiter, delimiter, "{sample:?}");
            assert_eq!(widths(&parsed), [3, 3]);
        }
    }

    #[test]
    fn quoted_fields_keep_delimiters_quotes_and_line_breaks() {
        let sample = "id,comment,amount\n1,\"hello, world\",3.5\n2,\"said \"\"hi\"\"\nthen left\",4\n";
        let parsed = detect(sample, &CANDIDATE_DELIMITERS, b'"').expect("valid");
        assert_eq!(parsed.delimiter, b',');
        assert_eq!(parsed.rows[1].1, ["1", "hello, world", "3.5"]);
        assert_eq!(parsed.rows[2].1, ["2", "said \"hi\"\nthen left", "4"]);
        assert_eq!(parsed.rows[2].0, 3, "records keep the line they start on");
    }

    #[test]
    fn a_semicolon_file_with_decimal_commas_is_not_taken_for_commas() {
        // European exports: ';' separates, ',' is the decimal mark; only ';' is consistent.
        let sample = "name;price\nwidget;3,50\ngadget;12\n";
        let parsed = detect(sample, &CANDIDATE_DELIMITERS, b'"').expect("valid");
        assert_eq!(parsed.delimiter, b';');
    }

    #[test]
    fn ragged_rows_name_the_line() {
        let sample = "a,b,c\n1,2,3\n4,5\n6,7,8\n";
        assert_eq!(
            detect(sample, &CANDIDATE_DELIMITERS, b'"'),
            Err(DelimitedError::Ragged {
                delimiter: ',',
                line: 3,
                found: 2,
                expected: 3
            })
        );
    }

    #[test]
    fn single_column_text_is_not_delimited() {
        assert_eq!(
            detect("just words\nmore words\n", &CANDIDATE_DELIMITERS, b'"'),
            Err(DelimitedError::NoDelimiter)
        );
    }

    #[test]
    fn blank_lines_are_ignored() {
        let parsed = detect("a,b\n\n1,2\n\n", &CANDIDATE_DELIMITERS, b'"').expect("valid");
        assert_eq!(widths(&parsed), [2, 2]);
    }

    proptest::proptest! {
        // Delimiter detection and parsing see the first megabyte of any text file a crawl meets:
        // a delimiter is found or refused with a message, never a panic.
        #[test]
        fn any_sample_is_detected_or_refused_without_panic(sample in "[a-z0-9,;|\t\"' \n\r]{0,400}") {
            let _ = detect(&sample, &CANDIDATE_DELIMITERS, b'"');
        }
    }
}
