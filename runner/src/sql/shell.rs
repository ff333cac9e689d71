//! The prompt's logic, apart from the terminal: lines go in, text comes out. A statement runs
//! when its text ends with `;` outside quotes and comments (so statements span lines); a line
//! starting with `\` at the start of a statement is a command, as in psql.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use super::output::{Format, render};
use super::remote::{self, RemoteSession};
use super::{Answer, SqlError, SqlSession};

/// What a line did.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// The statement goes on: show the continuation prompt.
    More,
    /// Something to print: `out` to standard output, `err` to standard error.
    Printed {
        /// The answers.
        out: String,
        /// The errors.
        err: String,
    },
    /// `\q`.
    Quit,
}

/// The help `\?` prints.
pub const HELP: &str = "\
  \\d              list the catalog's tables (database, table, format, location, partition keys)
  \\d DB.TABLE     a table's columns, partition keys, location and format
  \\timing [on|off] show each statement's time and what it read from storage
  \\q              quit
  Statements end with ;  Every Database is a schema: SELECT … FROM database.table
";

/// Where the prompt's statements run.
pub enum Target {
    /// Here, over a catalog.
    Local(SqlSession),
    /// In a Session's pod.
    Remote(RemoteSession),
}

/// An interactive session: where statements run, the statement being typed, the settings.
pub struct Shell {
    session: Target,
    format: Format,
    timing: bool,
    buffer: String,
}

impl Shell {
    /// A shell over `session` printing answers in `format`.
    pub fn new(session: Target, format: Format, timing: bool) -> Shell {
        Shell {
            session,
            format,
            timing,
            buffer: String::new(),
        }
    }

    /// Whether a statement is being typed (the prompt shows it).
    pub fn in_statement(&self) -> bool {
        !self.buffer.trim().is_empty()
    }

    /// Drops the statement being typed (Ctrl-C).
    pub fn cancel(&mut self) {
        self.buffer.clear();
    }

    /// Takes one line typed at the prompt.
    pub async fn line(&mut self, line: &str) -> Step {
        if !self.in_statement() && line.trim_start().starts_with('\\') {
            return self.command(line.trim()).await;
        }
        self.buffer.push_str(line);
        self.buffer.push('\n');
        if !complete(&self.buffer) {
            return Step::More;
        }
        let text = std::mem::take(&mut self.buffer);
        let (out, err) = self.run_text(&text).await;
        Step::Printed { out, err }
    }

    /// Runs every statement of `text`, stopping at the first error; returns what to print on
    /// standard output and on standard error.
    pub async fn run_text(&mut self, text: &str) -> (String, String) {
        let mut out = String::new();
        let session = match &self.session {
            Target::Local(session) => session,
            Target::Remote(remote) => {
                return match remote.run_text(text).await {
                    Ok(answers) => {
                        for answer in &answers {
                            if let Err(error) = self.print(answer, &mut out) {
                                return (out, error);
                            }
                        }
                        (out, String::new())
                    }
                    Err(error) => (out, error_text(&error)),
                };
            }
        };
        let statements = match SqlSession::parse(text) {
            Ok(statements) => statements,
            Err(error) => return (out, error_text(&error)),
        };
        for statement in statements {
            match session.run(statement).await {
                Ok(answer) => {
                    if let Err(error) = self.print(&answer, &mut out) {
                        return (out, error);
                    }
                }
                Err(error) => return (out, error_text(&error)),
            }
        }
        (out, String::new())
    }

    /// Appends `answer` (and its timing line) to `out`; an error's text when it cannot print.
    fn print(&self, answer: &Answer, out: &mut String) -> Result<(), String> {
        let text = render(answer, self.format).map_err(|e| format!("ERROR: printing the answer: {e}\n"))?;
        out.push_str(&text);
        if self.timing {
            out.push_str(&timing_line(answer));
        }
        Ok(())
    }

    async fn command(&mut self, line: &str) -> Step {
        let mut words = line.split_whitespace();
        let name = words.next().unwrap_or_default();
        let argument = words.next();
        let printed = |out: String, err: String| Step::Printed { out, err };
        if let Target::Remote(_) = &self.session
            && name == "\\d"
        {
            // The session's own catalog, as its information_schema says it.
            let sql = match argument.map(|a| a.split_once('.')) {
                None => remote::LIST_TABLES.to_string(),
                Some(Some((database, table))) => remote::describe_table(database, table),
                Some(None) => {
                    return printed(
                        String::new(),
                        "ERROR: name the table with its database: \\d DATABASE.TABLE\n".into(),
                    );
                }
            };
            let (out, err) = self.run_text(&sql).await;
            return printed(out, err);
        }
        let Target::Local(session) = &self.session else {
            return self.settings(name, argument);
        };
        // `\d` lists the catalog as it is now, as a statement would read it.
        if name == "\\d"
            && let Err(error) = session.refresh().await
        {
            return printed(String::new(), error_text(&error));
        }
        match (name, argument) {
            ("\\d", None) => printed(self.printed(&session.list_tables()), String::new()),
            ("\\d", Some(table)) => match session.describe_table(table) {
                Ok((answer, footer)) => printed(format!("{}{footer}\n", self.printed(&answer)), String::new()),
                Err(error) => printed(String::new(), error_text(&error)),
            },
            _ => self.settings(name, argument),
        }
    }

    /// The commands that do not look at the catalog.
    fn settings(&mut self, name: &str, argument: Option<&str>) -> Step {
        let printed = |out: String, err: String| Step::Printed { out, err };
        match (name, argument) {
            ("\\q" | "\\quit", _) => Step::Quit,
            ("\\?" | "\\h" | "\\help", _) => printed(HELP.to_string(), String::new()),
            ("\\timing", setting) => {
                self.timing = match setting {
                    Some("on") => true,
                    Some("off") => false,
                    _ => !self.timing,
                };
                let state = if self.timing { "on" } else { "off" };
                printed(format!("Timing is {state}.\n"), String::new())
            }
            (other, _) => printed(
                String::new(),
                format!("ERROR: invalid command {other}; \\? lists the commands\n"),
            ),
        }
    }

    fn printed(&self, answer: &Answer) -> String {
        render(answer, self.format).unwrap_or_else(|e| format!("ERROR: printing the answer: {e}\n"))
    }
}

fn error_text(error: &SqlError) -> String {
    format!("ERROR: {error}\n")
}

/// `Time: 1.234 ms; read 1 object (2.0 KiB) after 1 listing`.
pub fn timing_line(answer: &Answer) -> String {
    let elapsed = answer.elapsed.as_secs_f64() * 1000.0;
    let Some(reads) = &answer.reads else {
        // A session's pod ran it: the time as seen from here, its reads are the pod's.
        return format!("Time: {elapsed:.3} ms\n");
    };
    let objects = reads.objects.len();
    let listings = reads.listings.len();
    format!(
        "Time: {elapsed:.3} ms; read {objects} object{} ({}) after {listings} listing{}\n",
        if objects == 1 { "" } else { "s" },
        human_bytes(reads.bytes()),
        if listings == 1 { "" } else { "s" },
    )
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = "B";
    for next in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}

/// Whether `text` ends a statement: its last token, comments and whitespace aside, is `;`. An
/// unterminated quote or comment is not the end.
pub fn complete(text: &str) -> bool {
    let dialect = GenericDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, text).tokenize() else {
        return false;
    };
    tokens
        .iter()
        .rev()
        .find(|t| !matches!(t, Token::Whitespace(_)))
        .is_some_and(|t| *t == Token::SemiColon)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_ends_at_a_semicolon_outside_quotes_and_comments() {
        assert!(complete("SELECT 1;"));
        assert!(complete("SELECT 1;  -- done\n"));
        assert!(complete("SELECT\n  1\n;\n"));
        assert!(!complete("SELECT 1"));
        assert!(!complete("SELECT ';"));
        assert!(!complete("SELECT 1 /* ; */"));
        assert!(!complete("SELECT 1; SELECT 2"));
        assert!(!complete(""));
    }

    #[test]
    fn sizes_read_as_people_say_them() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(2048), "2.0 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 + 1), "5.0 MiB");
    }
}
