//! Tables and figures for people, as the cluster commands print them.

use std::fmt::Write as _;

/// The widest message a table shows.
pub const MESSAGE_CHARS: usize = 60;

/// Seconds as kubectl shows an age: `1.8s`, `2m05s`, `3h02m`.
pub fn duration(seconds: f64) -> String {
    if seconds < 60.0 {
        format!("{seconds:.1}s")
    } else {
        let whole = seconds.round() as u64;
        if whole < 3600 {
            format!("{}m{:02}s", whole / 60, whole % 60)
        } else {
            format!("{}h{:02}m", whole / 3600, (whole % 3600) / 60)
        }
    }
}

/// The first line of `text`, cut to `chars` characters with `…` (or ` …` when more lines follow).
pub fn cut_chars(text: &str, chars: usize) -> String {
    // One line per run: a multi-line error is shown up to its first line break.
    let line = text.lines().next().unwrap_or_default();
    match line.char_indices().nth(chars.saturating_sub(1)) {
        Some((at, _)) if line.chars().count() > chars => format!("{}…", &line[..at]),
        _ if line.len() < text.trim_end().len() => format!("{line} …"),
        _ => line.to_string(),
    }
}

/// Rows as aligned columns, the last column unpadded.
pub fn render_table<R: AsRef<[String]>>(rows: &[R]) -> String {
    let columns = rows.iter().map(|r| r.as_ref().len()).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row.as_ref()) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let row = row.as_ref();
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}   ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(duration(1.84), "1.8s");
        assert_eq!(duration(125.0), "2m05s");
        assert_eq!(duration(3.0 * 3600.0 + 120.0), "3h02m");
    }
}
