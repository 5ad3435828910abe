"""Where OMOP CDM tables live: a folder of CSV / Parquet files, or a SQL database by SQLAlchemy URL.

`OmopStore.open(path=..., url=..., cdm_schema=..., vocab_schema=...)` gives one interface over both:
which tables exist, their columns (lower-cased, as CDM 5.4 names them), and the rows of one table for a
range of person ids, selected in SQL (`WHERE person_id BETWEEN`) or by a lazy Polars scan, so a chunk of
persons is all that is ever in memory. Files may be `person.csv`, `PERSON.csv`, `person.csv.gz`,
`person.parquet` or a `person/` folder of Parquet parts. Databases: PostgreSQL (the usual OHDSI host),
SQLite and DuckDB (`duckdb:///file.db`, through duckdb-engine), or any SQLAlchemy dialect. Connection
errors show the URL without its password.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import polars as pl

from medflow.errors import DataError

__all__ = ["OmopStore", "CDM_VERSION", "REQUIRED", "hide_password"]

CDM_VERSION = "5.4"
# the columns medflow needs from each table (CDM 5.4 names); others are optional or ignored
REQUIRED = {
    "person": ["person_id", "gender_concept_id", "year_of_birth", "race_concept_id"],
    "visit_occurrence": ["person_id", "visit_concept_id", "visit_start_date", "visit_end_date"],
    "condition_occurrence": ["person_id", "condition_concept_id", "condition_start_date"],
    "drug_exposure": ["person_id", "drug_concept_id", "drug_exposure_start_date"],
    "procedure_occurrence": ["person_id", "procedure_concept_id", "procedure_date"],
    "measurement": ["person_id", "measurement_concept_id", "measurement_date"],
    "observation": ["person_id", "observation_concept_id", "observation_date"],
    "death": ["person_id", "death_date"],
    "concept": ["concept_id", "vocabulary_id", "concept_code"],
    "concept_ancestor": ["ancestor_concept_id", "descendant_concept_id", "min_levels_of_separation"],
    "cdm_source": [],
}
VOCAB_TABLES = ("concept", "concept_ancestor")


def hide_password(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as the user wrote it, minus nothing secret
        return url.split("@")[-1] if "@" in url else url


class OmopStore(ABC):
    """The CDM tables of one OMOP database (files or SQL); `columns(t)`, `rows(t, lo, hi)`, `where_in(...)`."""

    def __init__(self) -> None:
        self.where = ""
        self._cols: dict[str, list[str]] = {}

    @staticmethod
    def open(path: str | Path | None = None, url: str | None = None, cdm_schema: str | None = None,
             vocab_schema: str | None = None) -> OmopStore:
        if (path is None) == (url is None):
            raise DataError("OMOP: give a folder of table files (data.omop.path) or a database URL (data.omop.url), "
                            "one of the two.")
        if url is not None:
            if "://" not in url and Path(url).suffix in (".db", ".duckdb", ".sqlite"):
                url = f"{'duckdb' if Path(url).suffix == '.duckdb' else 'sqlite'}:///{url}"
            if url.startswith(("postgresql://", "postgres://")):  # psycopg (3) is what medflow installs
                url = "postgresql+psycopg://" + url.split("://", 1)[1]
            return _SqlStore(url, cdm_schema, vocab_schema)
        return _FileStore(Path(path))

    def columns(self, table: str) -> list[str]:
        return self._cols.get(table, [])

    def check(self, table: str, required: bool = False) -> bool:
        """Whether `table` is there with the columns medflow needs; an error when it is required or incomplete."""
        if table not in self._cols:
            if required:
                raise DataError(f"{self.where}: the OMOP table '{table}' is missing (CDM {CDM_VERSION}; tables found: "
                                f"{', '.join(sorted(self._cols)) or 'none'}).")
            return False
        missing = [c for c in REQUIRED.get(table, []) if c not in self._cols[table]]
        if missing:
            raise DataError(f"{self.where}: OMOP table '{table}' has no column {', '.join(missing)} (CDM "
                            f"{CDM_VERSION} names it so; columns found: {', '.join(self._cols[table])}).")
        return True

    @abstractmethod
    def rows(self, table: str, columns: list[str], lo: int | None = None, hi: int | None = None) -> pl.DataFrame:
        """The `columns` (those the table has) of the rows whose person_id lies in [lo, hi]; every row without."""

    @abstractmethod
    def where_in(self, table: str, columns: list[str], column: str, values: list[int]) -> pl.DataFrame:
        """The rows whose integer `column` is one of `values` (concept lookups)."""

    def close(self) -> None:
        return None


def _find(folder: Path, table: str) -> Path | None:
    for p in sorted(folder.iterdir()):
        name = p.name.lower()
        if name in (f"{table}.parquet", f"{table}.pq", f"{table}.csv", f"{table}.csv.gz", f"{table}.tsv") or (
                p.is_dir() and name == table):
            return p
    return None


class _FileStore(OmopStore):
    def __init__(self, folder: Path) -> None:
        super().__init__()
        if not folder.is_dir():
            raise DataError(f"{folder}: no such OMOP folder (one CSV or Parquet file per CDM table, e.g. person.csv).")
        self.where, self.folder, self._files = str(folder), folder, {}
        for table in REQUIRED:
            f = _find(folder, table)
            if f is not None:
                self._files[table] = f
                self._cols[table] = [c.lower() for c in self._scan_raw(f).collect_schema().names()]

    def _scan_raw(self, f: Path) -> pl.LazyFrame:
        try:
            if f.is_dir():
                return pl.scan_parquet(f / "**" / "*.parquet")
            if f.suffix in (".parquet", ".pq"):
                return pl.scan_parquet(f)
            return pl.scan_csv(f, infer_schema=False, separator="\t" if f.suffix == ".tsv" else ",")
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"{f}: cannot read this OMOP table ({exc}).") from exc

    def _scan(self, table: str, columns: list[str]) -> pl.LazyFrame:
        f = self._files[table]
        lf = self._scan_raw(f)
        lf = lf.rename({c: c.lower() for c in lf.collect_schema().names()})
        return lf.select([c for c in columns if c in self._cols[table]])

    def _collect(self, table: str, lf: pl.LazyFrame) -> pl.DataFrame:
        try:
            return lf.collect()
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"{self._files[table]}: cannot read this OMOP table ({exc}).") from exc

    def rows(self, table, columns, lo=None, hi=None):
        lf = self._scan(table, columns)
        if lo is not None:
            pid = pl.col("person_id").cast(pl.Int64, strict=False)
            lf = lf.filter((pid >= lo) & (pid <= hi))
        return self._collect(table, lf)

    def where_in(self, table, columns, column, values):
        lf = self._scan(table, columns).filter(pl.col(column).cast(pl.Int64, strict=False).is_in(values))
        return self._collect(table, lf)

    def file(self, table: str) -> Path:
        return self._files[table]


class _SqlStore(OmopStore):
    def __init__(self, url: str, cdm_schema: str | None, vocab_schema: str | None) -> None:
        super().__init__()
        from sqlalchemy import create_engine, inspect

        self.where = hide_password(url)
        try:
            self.engine = create_engine(url)
            inspector = inspect(self.engine)
            schemas = inspector.get_schema_names()
        except Exception as exc:  # noqa: BLE001 - a driver's error, shown in one line, without the password
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(f"{self.where}: cannot connect to the OMOP database ({msg.replace(url, self.where)}).") \
                from None
        self.schema, self.cdm_schema = {}, cdm_schema
        for table in REQUIRED:
            schema = vocab_schema if table in VOCAB_TABLES and vocab_schema else cdm_schema
            if schema is not None and schema not in schemas:
                raise DataError(f"{self.where}: schema '{schema}' does not exist (schemas: {', '.join(schemas)}); "
                                "set data.omop.cdm_schema / vocab_schema to the schema that holds the CDM tables.")
            names = {n.lower(): n for n in inspector.get_table_names(schema=schema)}
            if table in names:
                self.schema[table] = (schema, names[table])
                self._cols[table] = self._columns_of(table)

    def rows_of(self, name: str, columns: list[str]) -> pl.DataFrame:
        """All rows of a table that is not a CDM table (a results schema's cohort table)."""
        from sqlalchemy import inspect

        names = {n.lower(): n for n in inspect(self.engine).get_table_names(schema=self.cdm_schema)}
        if name.lower() not in names:
            raise DataError(f"{self.where}: no table '{name}'" + (f" in schema '{self.cdm_schema}'" if self.cdm_schema
                                                                   else "") + f" (tables: {', '.join(sorted(names))}).")
        self.schema[name] = (self.cdm_schema, names[name.lower()])
        self._cols[name] = self._columns_of(name)
        return self.rows(name, columns)

    def _columns_of(self, table: str) -> list[str]:
        """Column names from an empty SELECT (portable: some dialects' inspectors fail on get_columns)."""
        from sqlalchemy import text

        with self.engine.connect() as conn:
            return [c.lower() for c in conn.execute(text(f"SELECT * FROM {self._name(table)} WHERE 1 = 0")).keys()]

    def _name(self, table: str) -> str:
        schema, name = self.schema[table]
        quote = self.engine.dialect.identifier_preparer.quote
        return f"{quote(schema)}.{quote(name)}" if schema else quote(name)

    def _query(self, table: str, columns: list[str], where: str) -> pl.DataFrame:
        """Rows as a Polars frame: DuckDB hands Arrow over, PostgreSQL (psycopg) streams COPY ... TO STDOUT as
        CSV, other dialects go row by row. `where` holds only integers medflow formats itself."""
        from sqlalchemy import text

        cols = [c for c in columns if c in self._cols[table]]
        sql = f"SELECT {', '.join(cols)} FROM {self._name(table)}{where}"
        dialect = self.engine.dialect
        try:
            with self.engine.connect() as conn:
                if dialect.name == "duckdb":
                    return pl.from_arrow(conn.connection.driver_connection.execute(sql).to_arrow_table())
                if dialect.name == "postgresql" and dialect.driver == "psycopg":
                    with conn.connection.driver_connection.cursor() as cur, cur.copy(
                            f"COPY ({sql}) TO STDOUT (FORMAT csv, HEADER)") as copy:
                        data = b"".join(bytes(block) for block in copy)
                    return pl.read_csv(data, infer_schema=False) if data else pl.DataFrame(
                        schema=dict.fromkeys(cols, pl.String))
                rows = conn.execute(text(sql)).fetchall()
        except Exception as exc:  # noqa: BLE001
            msg = str(exc).splitlines()[0]
            raise DataError(f"{self.where}: reading OMOP table '{table}' failed ({msg}).") from None
        return pl.DataFrame([tuple(r) for r in rows], schema=cols, orient="row", infer_schema_length=None)

    def rows(self, table, columns, lo=None, hi=None):
        if lo is None:
            return self._query(table, columns, "")
        return self._query(table, columns, f" WHERE person_id BETWEEN {int(lo)} AND {int(hi)}")

    def where_in(self, table, columns, column, values):
        parts = []
        for i in range(0, len(values), 5000):
            chunk = ", ".join(str(int(v)) for v in values[i:i + 5000])
            parts.append(self._query(table, columns, f" WHERE {column} IN ({chunk})"))
        return pl.concat(parts, how="diagonal_relaxed") if parts else pl.DataFrame()

    def close(self) -> None:
        self.engine.dispose()
