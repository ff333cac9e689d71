//! A database column's own type as a Glue/Hive type. Every mapping is exact or widening (an
//! unsigned MySQL integer goes up one size; `timestamptz` is a `timestamp`, the instant kept in
//! UTC); a type with no such mapping is refused with the reason, never guessed.

use kglue_crds::glue_type::GlueType;

/// The Glue type of a PostgreSQL column, from `format_type(atttypid, atttypmod)` (`numeric(10,2)`,
/// `timestamp with time zone`, `integer[]`) and `pg_type.typtype` (`e` for an enum, `d` for a
/// domain, whose base type is given as `format_type` of the base).
pub fn postgres(format_type: &str, typtype: &str) -> Result<GlueType, String> {
    if let Some(element) = format_type.strip_suffix("[]") {
        // Arrays of every dimension are one-dimensional to PostgreSQL's type system.
        let element = postgres(element.trim_end_matches("[]"), "b")?;
        return Ok(GlueType::Array(Box::new(element)));
    }
    if typtype == "e" {
        return Ok(GlueType::String);
    }
    let (_, arguments) = split_arguments(format_type);
    // `timestamp(3) with time zone`: the name without its arguments, wherever they are.
    let name = without_arguments(format_type);
    Ok(match name.as_str() {
        "smallint" => GlueType::SmallInt,
        "integer" => GlueType::Int,
        "bigint" => GlueType::BigInt,
        "real" => GlueType::Float,
        "double precision" => GlueType::Double,
        "numeric" => match arguments.as_slice() {
            [precision, scale] => decimal(*precision, *scale)?,
            [precision] => decimal(*precision, 0)?,
            _ => {
                return Err(
                    "numeric without a precision holds up to 131072 digits, which no Glue decimal holds: declare numeric(p,s) with p ≤ 38, or cast it in a query source"
                        .into(),
                );
            }
        },
        "boolean" => GlueType::Boolean,
        "text" | "name" | "citext" | "uuid" | "json" | "jsonb" | "xml" | "inet" | "cidr" | "macaddr" => {
            GlueType::String
        }
        "character varying" => match arguments.as_slice() {
            [length] if *length >= 1 && *length <= 65535 => GlueType::Varchar(*length as u32),
            _ => GlueType::String,
        },
        "character" | "bpchar" => match arguments.as_slice() {
            [length] if *length >= 1 && *length <= 255 => GlueType::Char(*length as u16),
            _ => GlueType::String,
        },
        "bytea" => GlueType::Binary,
        "date" => GlueType::Date,
        "timestamp without time zone" | "timestamp with time zone" => GlueType::Timestamp,
        "time without time zone" | "time with time zone" => {
            return Err("time of day has no Glue type: cast it to text or to a timestamp in a query source".into());
        }
        "interval" => {
            return Err("interval has no Glue type: cast it to text or extract its parts in a query source".into());
        }
        "money" => return Err("money has no Glue type: cast it to numeric(p,s) in a query source".into()),
        other => {
            return Err(format!(
                "{other} has no Glue type kglue maps: cast it in a query source"
            ));
        }
    })
}

/// The Glue type of a MySQL or MariaDB column, from `information_schema.COLUMNS.COLUMN_TYPE`
/// (`tinyint(1)`, `int(10) unsigned`, `decimal(10,2)`, `enum('a','b')`) and `DATA_TYPE`.
/// MariaDB's `json` is `longtext` with a check, and maps as text does.
pub fn mysql(column_type: &str, data_type: &str) -> Result<GlueType, String> {
    let column_type = column_type.to_ascii_lowercase();
    let unsigned = column_type.contains(" unsigned");
    let (_, arguments) = split_arguments(&column_type);
    Ok(match data_type.to_ascii_lowercase().as_str() {
        // tinyint(1) is MySQL's boolean (what BOOL and BOOLEAN declare), as JDBC drivers read it.
        "tinyint" if column_type.starts_with("tinyint(1)") && !unsigned => GlueType::Boolean,
        "tinyint" if unsigned => GlueType::SmallInt,
        "tinyint" => GlueType::TinyInt,
        "smallint" if unsigned => GlueType::Int,
        "smallint" => GlueType::SmallInt,
        // 24 bits, signed or not: an int holds it.
        "mediumint" => GlueType::Int,
        "int" | "integer" if unsigned => GlueType::BigInt,
        "int" | "integer" => GlueType::Int,
        "bigint" if unsigned => GlueType::Decimal {
            precision: 20,
            scale: 0,
        },
        "bigint" => GlueType::BigInt,
        "float" => GlueType::Float,
        "double" | "real" => GlueType::Double,
        "decimal" | "numeric" => match arguments.as_slice() {
            [precision, scale] => decimal(*precision, *scale)?,
            [precision] => decimal(*precision, 0)?,
            _ => decimal(10, 0)?,
        },
        "bit" if arguments.as_slice() == [1] => GlueType::Boolean,
        "bit" => GlueType::BigInt,
        "year" => GlueType::Int,
        "char" => match arguments.as_slice() {
            [length] if *length >= 1 && *length <= 255 => GlueType::Char(*length as u16),
            _ => GlueType::String,
        },
        "varchar" => match arguments.as_slice() {
            [length] if *length >= 1 && *length <= 65535 => GlueType::Varchar(*length as u32),
            _ => GlueType::String,
        },
        "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "set" | "json" | "uuid" | "inet4" | "inet6" => {
            GlueType::String
        }
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => GlueType::Binary,
        "date" => GlueType::Date,
        "datetime" | "timestamp" => GlueType::Timestamp,
        "time" => return Err("time has no Glue type: cast it to char or to a datetime in a query source".into()),
        other => {
            return Err(format!(
                "{other} has no Glue type kglue maps: cast it in a query source"
            ));
        }
    })
}

fn decimal(precision: u64, scale: u64) -> Result<GlueType, String> {
    if precision == 0 || precision > 38 || scale > precision {
        return Err(format!(
            "decimal({precision},{scale}) is outside Glue's decimal (precision 1–38, scale at most the precision): cast it in a query source"
        ));
    }
    Ok(GlueType::Decimal {
        precision: precision as u8,
        scale: scale as u8,
    })
}

/// `timestamp(3) with time zone` → `timestamp with time zone`.
fn without_arguments(text: &str) -> String {
    let mut name = String::new();
    let mut depth = 0;
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            c if depth == 0 => name.push(c),
            _ => {}
        }
    }
    name.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `numeric(10,2)` → (`numeric`, [10, 2]); `int(10) unsigned` → (`int`, [10]); `enum('a')` →
/// (`enum`, []): arguments that are not numbers are not type sizes.
fn split_arguments(text: &str) -> (&str, Vec<u64>) {
    let Some((name, rest)) = text.split_once('(') else {
        return (text.trim(), Vec::new());
    };
    let inside = rest.split_once(')').map(|(inside, _)| inside).unwrap_or(rest);
    let numbers: Option<Vec<u64>> = inside.split(',').map(|n| n.trim().parse().ok()).collect();
    (name.trim(), numbers.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(format_type: &str) -> String {
        match postgres(format_type, "b") {
            Ok(t) => t.to_string(),
            Err(e) => format!("refused: {e}"),
        }
    }

    fn my(column_type: &str) -> String {
        let data_type = column_type.split(['(', ' ']).next().unwrap_or_default();
        match mysql(column_type, data_type) {
            Ok(t) => t.to_string(),
            Err(e) => format!("refused: {e}"),
        }
    }

    #[test]
    fn postgres_types_map_exactly_or_are_refused() {
        for (database, glue) in [
            ("smallint", "smallint"),
            ("integer", "int"),
            ("bigint", "bigint"),
            ("real", "float"),
            ("double precision", "double"),
            ("numeric(12,2)", "decimal(12,2)"),
            ("numeric(38,0)", "decimal(38,0)"),
            ("boolean", "boolean"),
            ("text", "string"),
            ("character varying(40)", "varchar(40)"),
            ("character varying", "string"),
            ("character(3)", "char(3)"),
            ("uuid", "string"),
            ("jsonb", "string"),
            ("json", "string"),
            ("bytea", "binary"),
            ("date", "date"),
            ("timestamp without time zone", "timestamp"),
            ("timestamp with time zone", "timestamp"),
            ("timestamp(3) with time zone", "timestamp"),
            ("timestamp(0) without time zone", "timestamp"),
            ("integer[]", "array<int>"),
            ("text[]", "array<string>"),
            ("numeric(5,1)[]", "array<decimal(5,1)>"),
        ] {
            assert_eq!(pg(database), glue, "{database}");
        }
        assert_eq!(postgres("mood", "e").map(|t| t.to_string()), Ok("string".into()));
        for (database, reason) in [
            ("numeric", "numeric without a precision"),
            ("numeric(50,2)", "decimal(50,2) is outside Glue's decimal"),
            ("time without time zone", "time of day has no Glue type"),
            ("time(3) with time zone", "time of day has no Glue type"),
            ("interval", "interval has no Glue type"),
            ("money", "money has no Glue type"),
            ("point", "point has no Glue type kglue maps"),
            ("interval[]", "interval has no Glue type"),
        ] {
            let mapped = pg(database);
            assert!(
                mapped.starts_with("refused: ") && mapped.contains(reason),
                "{database}: {mapped}"
            );
        }
    }

    #[test]
    fn mysql_types_map_exactly_or_widen_or_are_refused() {
        for (database, glue) in [
            ("tinyint(1)", "boolean"),
            ("tinyint(4)", "tinyint"),
            ("tinyint(3) unsigned", "smallint"),
            ("smallint(6)", "smallint"),
            ("smallint(5) unsigned", "int"),
            ("mediumint(8) unsigned", "int"),
            ("int(11)", "int"),
            ("int(10) unsigned", "bigint"),
            ("bigint(20)", "bigint"),
            ("bigint(20) unsigned", "decimal(20,0)"),
            ("float", "float"),
            ("double", "double"),
            ("decimal(10,2)", "decimal(10,2)"),
            ("decimal(10,2) unsigned", "decimal(10,2)"),
            ("bit(1)", "boolean"),
            ("year(4)", "int"),
            ("char(2)", "char(2)"),
            ("varchar(255)", "varchar(255)"),
            ("longtext", "string"),
            ("enum('new','paid')", "string"),
            ("json", "string"),
            ("blob", "binary"),
            ("varbinary(16)", "binary"),
            ("date", "date"),
            ("datetime(6)", "timestamp"),
            ("timestamp", "timestamp"),
        ] {
            assert_eq!(my(database), glue, "{database}");
        }
        for (database, reason) in [
            ("time", "time has no Glue type"),
            ("geometry", "geometry has no Glue type kglue maps"),
            ("decimal(65,30)", "decimal(65,30) is outside Glue's decimal"),
        ] {
            let mapped = my(database);
            assert!(
                mapped.starts_with("refused: ") && mapped.contains(reason),
                "{database}: {mapped}"
            );
        }
    }

    #[test]
    fn every_mapped_type_parses_back_as_a_glue_type() {
        for database in ["numeric(12,2)", "character varying(40)", "integer[]", "character(3)"] {
            let mapped = postgres(database, "b").expect(database).to_string();
            assert_eq!(GlueType::parse(&mapped).map(|t| t.to_string()), Ok(mapped));
        }
    }
}
