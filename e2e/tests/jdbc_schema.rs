//! Reading a database's tables as the JDBC crawler will (`kglue_jdbc::schema::describe`), against
//! the real servers: tables with the awkward types of each engine, a view, a composite primary
//! key, an include path with a wildcard and a literal underscore; each column's Glue type checked
//! one by one, and every type with no mapping reported by column with its reason.

use kglue_e2e::databases::{Credentials, DATABASE, DatabaseServer, Engine};
use kglue_jdbc::Endpoint;
use kglue_jdbc::schema::{DescribedTable, IncludePath, describe};

fn read(server: &DatabaseServer, path: &str) -> Vec<DescribedTable> {
    let endpoint = Endpoint::resolve(&server.jdbc_connection(), &mut Credentials).expect("an endpoint");
    let include = IncludePath::parse(path, endpoint.url.engine, DATABASE).expect("an include path");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime
        .block_on(describe(&endpoint, &include))
        .unwrap_or_else(|e| panic!("describing {path}: {e}"))
}

/// `name database_type glue_type-or-refusal nullable` per column.
fn columns(table: &DescribedTable) -> Vec<String> {
    table
        .columns
        .iter()
        .map(|c| {
            let glue = match &c.glue_type {
                Ok(t) => t.to_string(),
                Err(reason) => format!("UNMAPPED({reason})"),
            };
            format!(
                "{} {} {} {}",
                c.name,
                c.database_type,
                glue,
                if c.nullable { "null" } else { "not-null" }
            )
        })
        .collect()
}

fn names(tables: &[DescribedTable]) -> Vec<String> {
    tables
        .iter()
        .map(|t| format!("{}.{}{}", t.schema, t.name, if t.view { " (view)" } else { "" }))
        .collect()
}

#[test]
fn a_postgres_schema_reads_with_glue_types_keys_and_unmapped_columns_named() {
    let server = DatabaseServer::start(Engine::Postgres).expect("PostgreSQL starts");
    server
        .sql(
            "create type mood as enum ('ok', 'sad');
             create domain cents as numeric(12,2);
             create table order_items (
               order_id bigint, line smallint, sku text not null, amount numeric(12,2), price cents,
               ordered_at timestamptz, shipped_on date, tags text[], attrs jsonb, id uuid,
               photo bytea, flag boolean, ratio double precision, score real, code char(3),
               name varchar(40), feeling mood, total numeric, wait interval, at_time time,
               primary key (order_id, line));
             create table orderXitems (x int);
             create view big_items as select order_id, amount from order_items where amount > 100;
             create schema audit;
             create table audit.order_items (id int primary key);",
        )
        .expect("the schema is created");

    let tables = read(&server, "kglue/public/order%");
    assert_eq!(names(&tables), ["public.order_items", "public.orderxitems"]);
    let literal = read(&server, "kglue/public/order_items");
    assert_eq!(
        names(&literal),
        ["public.order_items"],
        "_ is literal, not LIKE's any-character"
    );

    let items = &tables[0];
    assert_eq!(items.primary_key, ["order_id", "line"]);
    assert_eq!(
        columns(items),
        [
            "order_id bigint bigint not-null",
            "line smallint smallint not-null",
            "sku text string not-null",
            "amount numeric(12,2) decimal(12,2) null",
            "price numeric(12,2) decimal(12,2) null",
            "ordered_at timestamp with time zone timestamp null",
            "shipped_on date date null",
            "tags text[] array<string> null",
            "attrs jsonb string null",
            "id uuid string null",
            "photo bytea binary null",
            "flag boolean boolean null",
            "ratio double precision double null",
            "score real float null",
            "code character(3) char(3) null",
            "name character varying(40) varchar(40) null",
            "feeling mood string null",
            "total numeric UNMAPPED(numeric without a precision holds up to 131072 digits, which no Glue decimal holds: declare numeric(p,s) with p ≤ 38, or cast it in a query source) null",
            "wait interval UNMAPPED(interval has no Glue type: cast it to text or extract its parts in a query source) null",
            "at_time time without time zone UNMAPPED(time of day has no Glue type: cast it to text or to a timestamp in a query source) null",
        ]
    );

    let everything = read(&server, "kglue/%/%");
    assert_eq!(
        names(&everything),
        [
            "audit.order_items",
            "public.big_items (view)",
            "public.order_items",
            "public.orderxitems"
        ]
    );
    assert_eq!(everything[0].primary_key, ["id"]);
    assert!(everything[1].primary_key.is_empty(), "a view has no key");
}

#[test]
fn a_mariadb_database_reads_with_glue_types_keys_and_unmapped_columns_named() {
    let server = DatabaseServer::start(Engine::Mysql).expect("MariaDB starts");
    server
        .sql(
            "create table order_items (
               order_id bigint unsigned not null, line tinyint unsigned not null, paid tinyint(1),
               qty smallint, big int unsigned, amount decimal(12,2), ordered_at datetime(6),
               updated timestamp null, status enum('new','paid'), attrs json, photo blob,
               code char(3), name varchar(40), note text, shipped date, yr year, bits bit(1),
               at_time time, shape geometry,
               primary key (order_id, line));
             create view big_items as select order_id, amount from order_items where amount > 100;",
        )
        .expect("the database is created");

    let tables = read(&server, "kglue/%");
    assert_eq!(names(&tables), ["kglue.big_items (view)", "kglue.order_items"]);
    let items = &tables[1];
    assert_eq!(items.primary_key, ["order_id", "line"]);
    assert_eq!(
        columns(items),
        [
            "order_id bigint(20) unsigned decimal(20,0) not-null",
            "line tinyint(3) unsigned smallint not-null",
            "paid tinyint(1) boolean null",
            "qty smallint(6) smallint null",
            "big int(10) unsigned bigint null",
            "amount decimal(12,2) decimal(12,2) null",
            "ordered_at datetime(6) timestamp null",
            "updated timestamp timestamp null",
            "status enum('new','paid') string null",
            "attrs longtext string null",
            "photo blob binary null",
            "code char(3) char(3) null",
            "name varchar(40) varchar(40) null",
            "note text string null",
            "shipped date date null",
            "yr year(4) int null",
            "bits bit(1) boolean null",
            "at_time time UNMAPPED(time has no Glue type: cast it to char or to a datetime in a query source) null",
            "shape geometry UNMAPPED(geometry has no Glue type kglue maps: cast it in a query source) null",
        ]
    );
}
