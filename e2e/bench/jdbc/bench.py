"""What the PostgreSQL benchmark's scripts share: TPC-H lineitem as the benchmark declares it (one
list for the table's DDL, the Parquet copy the write direction reads, ConnectorX's output types and
the checks), and the modules of the tpch benchmark it reuses.

The types are TPC-H's, except that l_shipinstruct and l_shipmode are `text` rather than blank-padded
`char(25)`/`char(10)`, so that every engine reads the values as the CSV has them.
"""

import importlib.util
import os

# (name, PostgreSQL type, DuckDB type: also the Parquet logical type every engine must write)
COLUMNS = [
    ("l_orderkey", "bigint", "BIGINT"),
    ("l_partkey", "bigint", "BIGINT"),
    ("l_suppkey", "bigint", "BIGINT"),
    ("l_linenumber", "integer", "INTEGER"),
    ("l_quantity", "numeric(15,2)", "DECIMAL(15,2)"),
    ("l_extendedprice", "numeric(15,2)", "DECIMAL(15,2)"),
    ("l_discount", "numeric(15,2)", "DECIMAL(15,2)"),
    ("l_tax", "numeric(15,2)", "DECIMAL(15,2)"),
    ("l_returnflag", "char(1)", "VARCHAR"),
    ("l_linestatus", "char(1)", "VARCHAR"),
    ("l_shipdate", "date", "DATE"),
    ("l_commitdate", "date", "DATE"),
    ("l_receiptdate", "date", "DATE"),
    ("l_shipinstruct", "text", "VARCHAR"),
    ("l_shipmode", "text", "VARCHAR"),
    ("l_comment", "varchar(44)", "VARCHAR"),
]
PRIMARY_KEY = ("l_orderkey", "l_linenumber")
TABLE = "lineitem"  # the source table, in schema public
COPY_TABLE = "lineitem_copy"  # the write direction's target, dropped before every run
PARTITION_COLUMN = "l_orderkey"  # the column parallel reads split on
MONTH = "ship_month"  # l_shipdate as YYYY-MM, as in the tpch benchmark


def create_table_sql():
    columns = ",\n  ".join(f"{name} {pg} NOT NULL" for name, pg, _ in COLUMNS)
    return f"CREATE TABLE {TABLE} (\n  {columns}\n);\n"


def primary_key_sql():
    return f"ALTER TABLE {TABLE} ADD PRIMARY KEY ({', '.join(PRIMARY_KEY)});\n"


def tpch(module):
    """The tpch benchmark's MODULE (measure, report, verify), loaded from ../tpch."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tpch", f"{module}.py")
    spec = importlib.util.spec_from_file_location(f"tpch_{module}", path)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded
