use super::GlueType::*;
use super::*;

fn parse(input: &str) -> GlueType {
    match GlueType::parse(input) {
        Ok(parsed) => parsed,
        Err(error) => panic!("{input:?} should parse: {error}"),
    }
}

fn error(input: &str) -> std::string::String {
    match GlueType::parse(input) {
        Ok(parsed) => panic!("{input:?} should not parse, got {parsed:?}"),
        Err(error) => error.to_string(),
    }
}

fn array(element: GlueType) -> GlueType {
    Array(Box::new(element))
}

fn map(key: GlueType, value: GlueType) -> GlueType {
    Map(Box::new(key), Box::new(value))
}

fn strukt(fields: &[(&str, GlueType)]) -> GlueType {
    Struct(
        fields
            .iter()
            .map(|(name, type_)| StructField {
                name: name.to_string(),
                type_: type_.clone(),
            })
            .collect(),
    )
}

fn decimal(precision: u8, scale: u8) -> GlueType {
    Decimal { precision, scale }
}

#[test]
fn parses_every_primitive() {
    let cases = [
        ("boolean", Boolean),
        ("tinyint", TinyInt),
        ("smallint", SmallInt),
        ("int", Int),
        ("integer", Int),
        ("bigint", BigInt),
        ("float", Float),
        ("double", Double),
        ("decimal", decimal(10, 0)),
        ("decimal(12)", decimal(12, 0)),
        ("decimal(12,2)", decimal(12, 2)),
        ("decimal(38,38)", decimal(38, 38)),
        ("decimal(1,0)", decimal(1, 0)),
        ("decimal(012,02)", decimal(12, 2)),
        ("string", String),
        ("char(1)", Char(1)),
        ("char(255)", Char(255)),
        ("varchar(1)", Varchar(1)),
        ("varchar(65535)", Varchar(65535)),
        ("binary", Binary),
        ("date", Date),
        ("timestamp", Timestamp),
    ];
    for (input, expected) in cases {
        assert_eq!(parse(input), expected, "{input}");
    }
}

#[test]
fn keywords_are_case_insensitive() {
    assert_eq!(parse("BIGINT"), BigInt);
    assert_eq!(parse("Integer"), Int);
    assert_eq!(parse("DECIMAL(5,1)"), decimal(5, 1));
    assert_eq!(parse("VarChar(10)"), Varchar(10));
    assert_eq!(
        parse("ARRAY<Map<STRING,Struct<Id:BIGINT>>>"),
        array(map(String, strukt(&[("Id", BigInt)])))
    );
}

#[test]
fn whitespace_is_allowed_around_tokens() {
    assert_eq!(
        parse("  struct < a : int , b\t:\narray < string > , c : decimal ( 12 , 2 ) , d : map < string , bigint > >  "),
        strukt(&[
            ("a", Int),
            ("b", array(String)),
            ("c", decimal(12, 2)),
            ("d", map(String, BigInt)),
        ])
    );
    assert_eq!(parse(" char ( 3 ) "), Char(3));
    assert_eq!(parse("decimal ( 7 )"), decimal(7, 0));
}

#[test]
fn struct_fields_keep_their_order_case_and_characters() {
    assert_eq!(
        parse("struct<zeta:int,Alpha:string,first-name:string,x.y:double,Last Name:date,名前:string,$ref:binary>"),
        strukt(&[
            ("zeta", Int),
            ("Alpha", String),
            ("first-name", String),
            ("x.y", Double),
            ("Last Name", Date),
            ("名前", String),
            ("$ref", Binary),
        ])
    );
    // Keywords are only keywords in type position.
    assert_eq!(
        parse("struct<int:string,struct:int,map:array<int>>"),
        strukt(&[("int", String), ("struct", Int), ("map", array(Int))])
    );
}

#[test]
fn nested_types_parse() {
    assert_eq!(
        parse("array<struct<sku:string,quantity:int>>"),
        array(strukt(&[("sku", String), ("quantity", Int)]))
    );
    assert_eq!(
        parse("map<date,array<map<int,struct<a:array<array<decimal(5,2)>>>>>>"),
        map(Date, array(map(Int, strukt(&[("a", array(array(decimal(5, 2))))]))))
    );
}

#[test]
fn errors_say_what_and_where() {
    let cases = [
        ("", "expected a type, found end of input at offset 0 in \"\""),
        ("   ", "expected a type, found end of input at offset 3 in \"   \""),
        (
            "long",
            "unknown type \"long\" (did you mean bigint?) at offset 0 in \"long\"",
        ),
        (
            "array<Text>",
            "unknown type \"Text\" (did you mean string?) at offset 6 in \"array<Text>\"",
        ),
        (
            "uniontype<int,string>",
            "unknown type \"uniontype\" at offset 0 in \"uniontype<int,string>\"",
        ),
        (
            "int64",
            "unknown type \"int64\" (did you mean bigint?) at offset 0 in \"int64\"",
        ),
        ("int8", "unknown type \"int8\" at offset 0 in \"int8\""),
        ("ïnt", "expected a type, found \"ïnt\" at offset 0 in \"ïnt\""),
        (
            "array<struct<a:int>",
            "expected '>' to close array<…>, found end of input at offset 19 in \"array<struct<a:int>\"",
        ),
        (
            "array<struct<a:int",
            "expected ',' or '>' after struct field \"a\", found end of input at offset 18 in \"array<struct<a:int\"",
        ),
        (
            "array",
            "expected '<' after array, found end of input at offset 5 in \"array\"",
        ),
        ("array<>", "expected a type, found '>' at offset 6 in \"array<>\""),
        (
            "array<int,int>",
            "expected '>' to close array<…>, found ',' at offset 9 in \"array<int,int>\"",
        ),
        (
            "array<int>>",
            "expected end of input after a complete type, found '>' at offset 10 in \"array<int>>\"",
        ),
        (
            "int int",
            "expected end of input after a complete type, found \"int\" at offset 4 in \"int int\"",
        ),
        (
            "map<string>",
            "expected ',' after the map key type, found '>' at offset 10 in \"map<string>\"",
        ),
        (
            "map<string,int",
            "expected '>' to close map<…>, found end of input at offset 14 in \"map<string,int\"",
        ),
        (
            "map<array<int>,string>",
            "map keys must be a primitive type, found array<int> at offset 4 in \"map<array<int>,string>\"",
        ),
        (
            "map< struct<a:int>,string>",
            "map keys must be a primitive type, found struct<a:int> at offset 5 in \"map< struct<a:int>,string>\"",
        ),
        (
            "struct<sku string>",
            "expected ':' after struct field name \"sku\", found \"string\" at offset 11 in \"struct<sku string>\"",
        ),
        (
            "struct<a int, b string>",
            "expected ':' after struct field name \"a\", found \"int\" at offset 9 in \"struct<a int, b string>\"",
        ),
        (
            "struct<a>",
            "expected ':' after struct field name \"a\", found '>' at offset 8 in \"struct<a>\"",
        ),
        (
            "struct<a:int b:string>",
            "expected ',' or '>' after struct field \"a\", found \"b\" at offset 13 in \"struct<a:int b:string>\"",
        ),
        (
            "struct<>",
            "expected a struct field name, found '>' at offset 7 in \"struct<>\"",
        ),
        (
            "struct<:int>",
            "expected a struct field name, found ':' at offset 7 in \"struct<:int>\"",
        ),
        (
            "struct<a:int,>",
            "expected a struct field name, found '>' at offset 13 in \"struct<a:int,>\"",
        ),
        ("struct<a:>", "expected a type, found '>' at offset 9 in \"struct<a:>\""),
        (
            "struct<`a`:int>",
            "backticks are not allowed; write struct field names without quotes at offset 7 in \"struct<`a`:int>\"",
        ),
        (
            "struct<a:int,A:string>",
            "duplicate struct field name \"A\" at offset 13 in \"struct<a:int,A:string>\"",
        ),
        (
            "decimal(39,2)",
            "decimal precision must be between 1 and 38, found 39 at offset 8 in \"decimal(39,2)\"",
        ),
        (
            "decimal(0)",
            "decimal precision must be between 1 and 38, found 0 at offset 8 in \"decimal(0)\"",
        ),
        (
            "decimal(5,6)",
            "decimal scale 6 is larger than its precision 5 at offset 10 in \"decimal(5,6)\"",
        ),
        (
            "decimal()",
            "expected a number for the decimal precision, found ')' at offset 8 in \"decimal()\"",
        ),
        (
            "decimal(10,)",
            "expected a number for the decimal scale, found ')' at offset 11 in \"decimal(10,)\"",
        ),
        (
            "decimal(-1,0)",
            "expected a number for the decimal precision, found '-' at offset 8 in \"decimal(-1,0)\"",
        ),
        (
            "decimal(10;2)",
            "expected ',' or ')' after the decimal precision, found ';' at offset 10 in \"decimal(10;2)\"",
        ),
        (
            "decimal(10,2",
            "expected ')' to close decimal(…), found end of input at offset 12 in \"decimal(10,2\"",
        ),
        (
            "decimal(99999999999999999999,1)",
            "number too large at offset 8 in \"decimal(99999999999999999999,1)\"",
        ),
        (
            "char",
            "expected '(' and a length after char, found end of input at offset 4 in \"char\"",
        ),
        (
            "char(0)",
            "char length must be between 1 and 255, found 0 at offset 5 in \"char(0)\"",
        ),
        (
            "char(256)",
            "char length must be between 1 and 255, found 256 at offset 5 in \"char(256)\"",
        ),
        (
            "varchar(65536)",
            "varchar length must be between 1 and 65535, found 65536 at offset 8 in \"varchar(65536)\"",
        ),
        (
            "varchar(x)",
            "expected a number for the varchar length, found \"x\" at offset 8 in \"varchar(x)\"",
        ),
        (
            "varchar(10",
            "expected ')' to close varchar(…), found end of input at offset 10 in \"varchar(10\"",
        ),
        (
            "string\u{0}",
            "expected end of input after a complete type, found '\\0' at offset 6 in \"string\\0\"",
        ),
    ];
    let mut failures = Vec::new();
    for (input, expected) in cases {
        let actual = error(input);
        if actual != expected {
            failures.push(format!("{input:?}\n  expected: {expected}\n  actual:   {actual}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn error_kind_and_offset_are_exposed() {
    let error = GlueType::parse("array<struct<a:int").expect_err("unclosed");
    assert_eq!(error.offset, 18);
    assert_eq!(error.excerpt, "array<struct<a:int");
    assert_eq!(
        error.kind,
        TypeParseErrorKind::Expected {
            expected: "',' or '>' after struct field \"a\"".into(),
            found: "end of input".into()
        }
    );
    assert_eq!(
        "bool".parse::<GlueType>().expect_err("bool").kind,
        TypeParseErrorKind::UnknownType {
            name: "bool".into(),
            hint: Some("boolean")
        }
    );
}

#[test]
fn long_input_is_excerpted_around_the_error() {
    let fields: Vec<std::string::String> = (0..20).map(|i| format!("field_{i:02}:int")).collect();
    let input = format!("struct<{},bad field>", fields.join(","));
    let error = GlueType::parse(&input).expect_err("bad field");
    assert_eq!(error.offset, input.find("field>").expect("present"));
    assert_eq!(
        error.to_string(),
        format!(
            "expected ':' after struct field name \"bad\", found \"field\" at offset {} in \"…eld_16:int,field_17:int,field_18:int,field_19:int,bad field>\"",
            error.offset
        )
    );
    // The excerpt is cut on character boundaries.
    let input = format!("struct<{}:int,ü:bogus>", "ü".repeat(100));
    let error = GlueType::parse(&input).expect_err("bogus");
    assert_eq!(error.offset, input.len() - 6);
    assert!(
        error.excerpt.starts_with('…') && error.excerpt.ends_with(":bogus>"),
        "{}",
        error.excerpt
    );
    let input = format!("struct<a:{}>", "x".repeat(200));
    let error = GlueType::parse(&input).expect_err("unknown");
    assert_eq!(error.excerpt, format!("struct<a:{}…", "x".repeat(51)));
    assert_eq!(
        error.kind,
        TypeParseErrorKind::UnknownType {
            name: format!("{}…", "x".repeat(64)),
            hint: None
        }
    );
}

#[test]
fn nesting_is_limited_without_overflowing_the_stack() {
    let nested = |levels: usize| format!("{}int{}", "array<".repeat(levels), ">".repeat(levels));
    let mut expected = Int;
    for _ in 0..MAX_NESTING - 1 {
        expected = array(expected);
    }
    assert_eq!(parse(&nested(MAX_NESTING - 1)), expected);
    let error = GlueType::parse(&nested(MAX_NESTING)).expect_err("too deep");
    assert_eq!(error.kind, TypeParseErrorKind::TooDeep);
    assert_eq!(error.offset, 6 * MAX_NESTING);
    assert!(
        error
            .to_string()
            .starts_with("types nested more than 100 levels deep at offset 600 in \"…")
    );
    for input in [
        "array<".repeat(100_000),
        "struct<a:".repeat(100_000),
        "map<int,".repeat(100_000),
        format!("{}int{}", "array<".repeat(50_000), ">".repeat(50_000)),
    ] {
        assert_eq!(
            GlueType::parse(&input).expect_err("too deep").kind,
            TypeParseErrorKind::TooDeep
        );
    }
}

/// Valid type strings that exercise every rule, as seeds for mutation.
const SEEDS: &[&str] = &[
    "int",
    "decimal(12,2)",
    "char(10)",
    "varchar(300)",
    "array<struct<sku:string,quantity:int>>",
    "map<string,array<map<int,decimal(38,10)>>>",
    "struct<a:int,b-c:array<string>,名前:map<date,timestamp>>",
    " STRUCT < a : struct < b : array < varchar ( 5 ) > > > ",
    "decimal",
    "map<decimal(5),struct<x:double,y:float,z:binary>>",
];

/// A small deterministic pseudo-random generator (xorshift64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Parsing never panics; what parses prints canonically and parses back to itself; an error's
/// offset lies within the input.
fn check_robust(input: &str) {
    match GlueType::parse(input) {
        Ok(parsed) => assert_eq!(GlueType::parse(&parsed.to_string()).as_ref(), Ok(&parsed), "{input:?}"),
        Err(error) => {
            assert!(error.offset <= input.len(), "{input:?}: {error}");
            assert!(error.to_string().contains(" at offset "), "{input:?}: {error}");
        }
    }
}

#[test]
fn mangled_input_never_panics() {
    let inserts = [
        "<", ">", "(", ")", ",", ":", "`", " ", "x", "9", "é", "\u{0}", "-", "array<", "struct<",
    ];
    let mut count = 0;
    for seed in SEEDS {
        let chars: Vec<char> = seed.chars().collect();
        for i in 0..=chars.len() {
            let prefix: std::string::String = chars[..i].iter().collect();
            let suffix: std::string::String = chars[i..].iter().collect();
            let mut variants = vec![prefix.clone(), suffix.clone()];
            if i < chars.len() {
                let after: std::string::String = chars[i + 1..].iter().collect();
                variants.push(format!("{prefix}{after}"));
                for insert in inserts {
                    variants.push(format!("{prefix}{insert}{after}"));
                }
                if i + 1 < chars.len() {
                    let mut swapped = chars.clone();
                    swapped.swap(i, i + 1);
                    variants.push(swapped.iter().collect());
                }
            }
            for insert in inserts {
                variants.push(format!("{prefix}{insert}{suffix}"));
            }
            for variant in variants {
                check_robust(&variant);
                count += 1;
            }
        }
    }
    let vocabulary = [
        "array",
        "map",
        "struct",
        "int",
        "decimal",
        "char",
        "varchar",
        "string",
        "<",
        ">",
        "(",
        ")",
        ",",
        ":",
        " ",
        "a",
        "1",
        "38",
        "0",
        "99999999999999999999999",
        "`",
        "é",
        "\t",
        "-",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let length = rng.below(24);
        let input: std::string::String = (0..length).map(|_| vocabulary[rng.below(vocabulary.len())]).collect();
        check_robust(&input);
        count += 1;
    }
    assert!(count > 25_000, "{count} inputs");
}

/// Primitive types with interesting parameters.
fn primitives() -> Vec<GlueType> {
    vec![
        Boolean,
        TinyInt,
        SmallInt,
        Int,
        BigInt,
        Float,
        Double,
        decimal(1, 0),
        decimal(10, 0),
        decimal(12, 2),
        decimal(38, 0),
        decimal(38, 38),
        String,
        Char(1),
        Char(255),
        Varchar(1),
        Varchar(65535),
        Binary,
        Date,
        Timestamp,
    ]
}

/// Types built from the primitives two levels deep: arrays, maps and structs of each other.
fn sample_types() -> Vec<GlueType> {
    let primitives = primitives();
    let keys = [String, Int, Date, decimal(12, 2)];
    let mut level1 = Vec::new();
    for (i, p) in primitives.iter().enumerate() {
        level1.push(array(p.clone()));
        level1.push(map(keys[i % keys.len()].clone(), p.clone()));
        level1.push(strukt(&[("a", p.clone())]));
        level1.push(strukt(&[
            ("B-1", p.clone()),
            ("a", primitives[(i + 7) % primitives.len()].clone()),
        ]));
    }
    let mut level2 = Vec::new();
    for (i, t) in level1.iter().enumerate() {
        level2.push(array(t.clone()));
        level2.push(map(keys[i % keys.len()].clone(), t.clone()));
        level2.push(strukt(&[
            ("x y", t.clone()),
            ("a", primitives[i % primitives.len()].clone()),
        ]));
    }
    [primitives, level1, level2].concat()
}

#[test]
fn display_is_canonical() {
    let cases = [
        (
            " STRUCT < a : INT , b : ARRAY < STRING > > ",
            "struct<a:int,b:array<string>>",
        ),
        ("decimal ( 12 , 2 )", "decimal(12,2)"),
        ("decimal", "decimal(10,0)"),
        ("DECIMAL(7)", "decimal(7,0)"),
        ("map < STRING , BigInt >", "map<string,bigint>"),
        ("integer", "int"),
        ("VARCHAR ( 020 )", "varchar(20)"),
        ("char(3)", "char(3)"),
        ("struct<Name With Space : int>", "struct<Name With Space:int>"),
        (
            "array<struct<sku:string,quantity:int>>",
            "array<struct<sku:string,quantity:int>>",
        ),
    ];
    for (input, canonical) in cases {
        assert_eq!(parse(input).to_string(), canonical, "{input}");
    }
    let field = StructField {
        name: "a".into(),
        type_: array(Int),
    };
    assert_eq!(field.to_string(), "a:array<int>");
}

/// Writes a type with random keyword case, `integer` for some `int`s and random whitespace
/// around tokens.
fn noisy(t: &GlueType, rng: &mut Rng) -> std::string::String {
    fn space(rng: &mut Rng) -> &'static str {
        ["", "", "", " ", "  ", "\t", "\n"][rng.below(7)]
    }
    fn keyword(word: &str, rng: &mut Rng) -> std::string::String {
        let cased: std::string::String = word
            .chars()
            .map(|c| if rng.below(2) == 0 { c.to_ascii_uppercase() } else { c })
            .collect();
        format!("{}{cased}{}", space(rng), space(rng))
    }
    match t {
        Int if rng.below(2) == 0 => keyword("integer", rng),
        Decimal { precision, scale } => format!(
            "{}({}{precision}{},{}{scale}{}){}",
            keyword("decimal", rng),
            space(rng),
            space(rng),
            space(rng),
            space(rng),
            space(rng)
        ),
        Char(n) => format!("{}({n}){}", keyword("char", rng), space(rng)),
        Varchar(n) => format!(
            "{}({}{n}{}){}",
            keyword("varchar", rng),
            space(rng),
            space(rng),
            space(rng)
        ),
        Array(element) => format!("{}<{}>{}", keyword("array", rng), noisy(element, rng), space(rng)),
        Map(key, value) => format!(
            "{}<{},{}>{}",
            keyword("map", rng),
            noisy(key, rng),
            noisy(value, rng),
            space(rng)
        ),
        Struct(fields) => {
            let fields: Vec<std::string::String> = fields
                .iter()
                .map(|field| {
                    format!(
                        "{}{}{}:{}",
                        space(rng),
                        field.name,
                        space(rng),
                        noisy(&field.type_, rng)
                    )
                })
                .collect();
            format!("{}<{}>{}", keyword("struct", rng), fields.join(","), space(rng))
        }
        other => keyword(&other.to_string(), rng),
    }
}

#[test]
fn display_round_trips() {
    let types = sample_types();
    assert_eq!(types.len(), 20 + 80 + 240);
    let mut rng = Rng(42);
    for t in &types {
        let canonical = t.to_string();
        assert!(!canonical.contains(' ') || canonical.contains("x y"), "{canonical}");
        assert_eq!(&parse(&canonical), t, "{canonical}");
        let input = noisy(t, &mut rng);
        assert_eq!(&parse(&input), t, "{input:?}");
    }
}

#[test]
fn is_primitive_is_false_only_for_complex_types() {
    for p in primitives() {
        assert!(p.is_primitive(), "{p}");
    }
    assert!(!array(Int).is_primitive());
    assert!(!map(String, Int).is_primitive());
    assert!(!strukt(&[("a", Int)]).is_primitive());
}

#[test]
fn widen_follows_glue() {
    let cases = [
        ("int", "int", "int"),
        ("tinyint", "smallint", "smallint"),
        ("smallint", "int", "int"),
        ("int", "bigint", "bigint"),
        ("tinyint", "bigint", "bigint"),
        ("int", "float", "double"),
        ("bigint", "double", "double"),
        ("float", "double", "double"),
        ("float", "float", "float"),
        ("tinyint", "decimal(1,0)", "decimal(3,0)"),
        ("int", "decimal(5,2)", "decimal(12,2)"),
        ("bigint", "decimal(10,4)", "decimal(23,4)"),
        ("decimal(12,2)", "int", "decimal(12,2)"),
        ("bigint", "decimal(38,30)", "decimal(38,19)"),
        ("decimal(10,2)", "decimal(5,4)", "decimal(12,4)"),
        ("decimal(20,18)", "decimal(30,0)", "decimal(38,8)"),
        ("decimal(38,38)", "decimal(38,0)", "decimal(38,0)"),
        ("decimal(12,2)", "double", "double"),
        ("float", "decimal(12,2)", "double"),
        ("date", "timestamp", "timestamp"),
        ("timestamp", "date", "timestamp"),
        ("char(5)", "char(10)", "char(10)"),
        ("char(200)", "varchar(20)", "varchar(200)"),
        ("varchar(20)", "char(5)", "varchar(20)"),
        ("varchar(20)", "varchar(30)", "varchar(30)"),
        ("char(5)", "string", "string"),
        ("string", "varchar(5)", "string"),
        ("boolean", "int", "string"),
        ("int", "date", "string"),
        ("binary", "string", "string"),
        ("binary", "int", "string"),
        ("date", "boolean", "string"),
        ("struct<a:int>", "string", "string"),
        ("array<int>", "int", "string"),
        ("array<int>", "map<int,int>", "string"),
        ("map<int,int>", "struct<a:int>", "string"),
        ("array<int>", "array<bigint>", "array<bigint>"),
        ("array<int>", "array<boolean>", "array<string>"),
        (
            "array<array<date>>",
            "array<array<timestamp>>",
            "array<array<timestamp>>",
        ),
        ("map<int,date>", "map<bigint,timestamp>", "map<bigint,timestamp>"),
        ("map<int,int>", "map<date,int>", "map<string,int>"),
        (
            "struct<a:int,b:string>",
            "struct<b:string,c:date,a:bigint>",
            "struct<a:bigint,b:string,c:date>",
        ),
        (
            "struct<b:string,c:date,a:bigint>",
            "struct<a:int,b:string>",
            "struct<b:string,c:date,a:bigint>",
        ),
        ("struct<Id:int>", "struct<id:double,x:int>", "struct<Id:double,x:int>"),
        (
            "struct<a:struct<x:int>>",
            "struct<a:struct<y:date>,b:array<int>>",
            "struct<a:struct<x:int,y:date>,b:array<int>>",
        ),
        (
            "array<struct<a:int>>",
            "array<struct<b:int>>",
            "array<struct<a:int,b:int>>",
        ),
    ];
    for (a, b, expected) in cases {
        assert_eq!(parse(a).widen(&parse(b)).to_string(), expected, "{a} + {b}");
    }
}

/// A set of types where widening does interesting things, small enough for every triple.
fn widening_types() -> Vec<GlueType> {
    [
        "boolean",
        "tinyint",
        "smallint",
        "int",
        "bigint",
        "float",
        "double",
        "decimal(3,2)",
        "decimal(12,2)",
        "decimal(20,18)",
        "decimal(30,0)",
        "decimal(38,38)",
        "string",
        "char(5)",
        "char(10)",
        "varchar(7)",
        "binary",
        "date",
        "timestamp",
        "array<int>",
        "array<double>",
        "array<date>",
        "map<int,int>",
        "map<string,decimal(5,1)>",
        "struct<a:int>",
        "struct<A:bigint,b:string>",
        "struct<b:date,c:array<int>>",
        "struct<c:array<float>,a:decimal(4,2)>",
        "struct<a:struct<x:int>>",
        "struct<a:struct<y:timestamp,x:date>>",
        "array<struct<a:int>>",
        "array<struct<b:tinyint,a:float>>",
    ]
    .iter()
    .map(|s| parse(s))
    .collect()
}

#[test]
fn widen_is_commutative_up_to_field_order() {
    let mut types = sample_types();
    types.extend(widening_types());
    for a in &types {
        for b in &types {
            let ab = a.widen(b);
            let ba = b.widen(a);
            assert!(ab.is_equivalent(&ba), "{a} + {b} = {ab}, but {b} + {a} = {ba}");
        }
    }
}

#[test]
fn widen_is_associative_up_to_field_order() {
    let types = widening_types();
    for a in &types {
        for b in &types {
            let ab = a.widen(b);
            for c in &types {
                let left = ab.widen(c);
                let right = a.widen(&b.widen(c));
                assert!(
                    left.is_equivalent(&right),
                    "({a} + {b}) + {c} = {left}, {a} + ({b} + {c}) = {right}"
                );
            }
        }
    }
}

#[test]
fn widen_results_parse_and_absorb_both_sides() {
    let types = widening_types();
    for a in &types {
        for b in &types {
            let wide = a.widen(b);
            assert_eq!(parse(&wide.to_string()), wide, "{a} + {b}");
            assert_ne!(wide.change_from(a), TypeChange::Incompatible, "{a} + {b} = {wide}");
            assert_ne!(wide.change_from(b), TypeChange::Incompatible, "{a} + {b} = {wide}");
            assert!(wide.widen(a).is_equivalent(&wide), "{a} + {b} = {wide}");
        }
    }
}

#[test]
fn is_equivalent_ignores_field_order_and_case_only() {
    let a = parse("struct<a:int,b:array<struct<x:int,y:string>>>");
    assert!(a.is_equivalent(&parse("struct<B:array<struct<Y:string,x:int>>,a:int>")));
    assert!(!a.is_equivalent(&parse("struct<a:int,b:array<struct<x:int>>>")));
    assert!(!a.is_equivalent(&parse("struct<a:bigint,b:array<struct<x:int,y:string>>>")));
    assert!(!a.is_equivalent(&parse("struct<a:int,c:array<struct<x:int,y:string>>>")));
    assert!(parse("map<int,struct<a:int,b:int>>").is_equivalent(&parse("map<int,struct<b:int,a:int>>")));
    assert!(!parse("int").is_equivalent(&parse("bigint")));
}

#[test]
fn change_from_classifies_schema_evolution() {
    use TypeChange::*;
    // (old, new, change)
    let cases = [
        ("int", "int", Same),
        ("struct<a:int,b:string>", "struct<a:int,b:string>", Same),
        ("int", "bigint", Widened),
        ("tinyint", "int", Widened),
        ("int", "double", Widened),
        ("bigint", "double", Widened),
        ("float", "double", Widened),
        ("int", "decimal(10,0)", Widened),
        ("decimal(10,2)", "decimal(12,2)", Widened),
        ("decimal(10,2)", "decimal(12,4)", Widened),
        ("decimal(10,2)", "double", Widened),
        ("date", "timestamp", Widened),
        ("char(5)", "char(10)", Widened),
        ("char(5)", "varchar(5)", Widened),
        ("varchar(5)", "varchar(10)", Widened),
        ("int", "string", Widened),
        ("boolean", "string", Widened),
        ("binary", "string", Widened),
        ("struct<a:int>", "string", Widened),
        ("array<int>", "string", Widened),
        ("array<int>", "array<bigint>", Widened),
        ("map<int,date>", "map<bigint,timestamp>", Widened),
        ("struct<a:int>", "struct<a:int,b:string>", Widened),
        ("struct<a:int,b:string>", "struct<b:string,a:bigint>", Widened),
        ("struct<a:int>", "struct<A:int>", Widened),
        ("struct<s:struct<x:int>>", "struct<s:struct<x:int,y:int>>", Widened),
        ("bigint", "int", Incompatible),
        ("string", "int", Incompatible),
        ("double", "float", Incompatible),
        ("double", "decimal(38,10)", Incompatible),
        ("int", "float", Incompatible),
        ("int", "decimal(9,0)", Incompatible),
        ("decimal(10,2)", "decimal(10,4)", Incompatible),
        ("decimal(10,2)", "decimal(11,1)", Incompatible),
        ("decimal(10,2)", "bigint", Incompatible),
        ("timestamp", "date", Incompatible),
        ("boolean", "int", Incompatible),
        ("int", "boolean", Incompatible),
        ("string", "char(10)", Incompatible),
        ("varchar(10)", "char(10)", Incompatible),
        ("char(10)", "char(5)", Incompatible),
        ("string", "binary", Incompatible),
        ("int", "array<int>", Incompatible),
        ("array<bigint>", "array<int>", Incompatible),
        ("map<string,int>", "map<int,int>", Incompatible),
        ("struct<a:int,b:string>", "struct<a:int>", Incompatible),
        ("struct<a:bigint>", "struct<a:int,b:string>", Incompatible),
        ("struct<a:int>", "struct<b:int>", Incompatible),
    ];
    let mut failures = Vec::new();
    for (old, new, expected) in cases {
        let actual = parse(new).change_from(&parse(old));
        if actual != expected {
            failures.push(format!("{old} -> {new}: expected {expected:?}, got {actual:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(Same < Widened && Widened < Incompatible);
}

fn column(name: &str, type_: &str) -> Column {
    Column {
        name: name.into(),
        type_: type_.into(),
        comment: None,
    }
}

#[test]
fn validate_columns_names_the_bad_column() {
    assert_eq!(validate_columns(&[]), Ok(()));
    assert_eq!(
        validate_columns(&[column("id", "bigint"), column("items", "array<struct<sku:string>>")]),
        Ok(())
    );
    let error = validate_columns(&[
        column("id", "bigint"),
        column("items", "struct<sku string>"),
        column("later", "nonsense"),
    ])
    .expect_err("items is invalid");
    assert_eq!(error.column, "items");
    assert_eq!(error.error.offset, 11);
    assert_eq!(
        error.to_string(),
        "column \"items\": expected ':' after struct field name \"sku\", found \"string\" at offset 11 in \"struct<sku string>\""
    );
}

/// The `type:` values of `columns` and `partitionKeys` entries in a manifest: a text scan that
/// follows indentation, enough for the examples' block-style YAML.
fn column_types(yaml: &str) -> Vec<std::string::String> {
    let mut types = Vec::new();
    let mut block_indent: Option<usize> = None;
    for line in yaml.lines() {
        let content = line.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let indent = line.len() - content.len();
        if block_indent.is_some_and(|block| indent <= block) {
            block_indent = None;
        }
        let item = content.trim_start_matches("- ").trim_start();
        match (block_indent, item.split_once(':')) {
            (None, Some(("columns" | "partitionKeys", rest))) if rest.trim().is_empty() => {
                block_indent = Some(indent);
            }
            (Some(_), Some(("type", value))) => {
                types.push(value.trim().trim_matches(['"', '\'']).to_string());
            }
            _ => {}
        }
    }
    types
}

fn yaml_files(dir: &std::path::Path, files: &mut Vec<std::path::PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            yaml_files(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml") {
            files.push(path);
        }
    }
}

#[test]
fn column_type_scan_finds_nested_blocks_only() {
    let yaml = "kind: Table\nspec:\n  columns:\n    - name: a\n      type: bigint\n    - type: \"array<int>\"\n      name: b\n  partitionKeys:\n    - name: dt\n      type: date\n  storage:\n    type: ignored\nother:\n  type: ignored\n";
    assert_eq!(column_types(yaml), ["bigint", "array<int>", "date"]);
}

#[test]
fn every_column_type_in_the_examples_parses() {
    let root = crate::crate_dir!().join("../examples");
    let mut files = Vec::new();
    yaml_files(&root, &mut files);
    files.sort();
    let mut checked = Vec::new();
    let mut failures = Vec::new();
    for file in &files {
        let yaml = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for type_ in column_types(&yaml) {
            if let Err(error) = GlueType::parse(&type_) {
                failures.push(format!("{}: {error}", file.display()));
            }
            checked.push(type_);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        checked.iter().any(|t| t == "array<struct<sku:string,quantity:bigint>>") && checked.len() >= 7,
        "the scan found too little: {checked:?}"
    );
}

proptest::proptest! {
    // Column types come from users (manifests, crawls of their files): any text parses or fails
    // with a message, never a panic, and what parses prints back to itself.
    #[test]
    fn any_text_parses_or_fails_without_panic(input in "\\PC{0,80}") {
        let _ = GlueType::parse(&input);
    }

    #[test]
    fn type_shaped_text_parses_or_fails_and_what_parses_round_trips(
        tokens in proptest::collection::vec(
            "(struct|array|map|uniontype|decimal|varchar|char|int|bigint|string|timestamp|<|>|,|:|\\(|\\)|[a-z_]{1,3}|[0-9]{1,3}|`|\\s)",
            0..40,
        )
    ) {
        let input = tokens.concat();
        if let Ok(parsed) = GlueType::parse(&input) {
            let printed = parsed.to_string();
            let again = GlueType::parse(&printed);
            proptest::prop_assert_eq!(again.as_ref().ok(), Some(&parsed), "{} printed as {}", input, printed);
        }
    }
}
