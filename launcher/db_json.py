"""SQL expressions over JSON columns, for aggregates that must run in the database.

Django's JSON lookups cover reading a key, but not "how many elements of this array have
status = success", and a `Cast` of `usage_metadata->>'x'` fails on PostgreSQL when the API
ever sends a non-number. These two expressions do both safely on the two databases Launcher
runs on (PostgreSQL and SQLite), so the batch grid aggregates 10,000 runs in one query instead
of loading every run's JSON into Python.
"""

from __future__ import annotations

from django.db.models import Expression, FloatField, Func, IntegerField
from django.db.utils import NotSupportedError


# The SQL below is built with f-strings only from `compiler.compile()` output (a quoted column
# reference); every value goes in as a parameter — hence the `noqa: S608`s.
class _JsonExpression(Func):
    def as_sql(self, compiler, connection, **extra_context):  # pragma: no cover - other DBs
        raise NotSupportedError(f"{type(self).__name__} supports PostgreSQL and SQLite only.")


class JsonArrayCount(_JsonExpression):
    """How many objects in a JSON array column have `key` equal to `value` (0 when the column
    is not an array). Example: `JsonArrayCount("post_run_checks", "status", "success")`."""

    output_field = IntegerField()

    def __init__(self, column: str | Expression, key: str, value: str):
        super().__init__(column)
        self.key = key
        self.value = value

    def as_postgresql(self, compiler, connection, **extra_context):
        column, params = compiler.compile(self.source_expressions[0])
        # jsonb_array_elements raises on a non-array; ->> on a non-object gives NULL.
        sql = (
            "(SELECT COUNT(*) FROM jsonb_array_elements(CASE WHEN"  # noqa: S608
            f" jsonb_typeof({column}) = 'array' THEN {column} ELSE '[]'::jsonb END) AS element"
            " WHERE element ->> %s::text = %s::text)"
        )
        return sql, (*params, *params, self.key, self.value)

    def as_sqlite(self, compiler, connection, **extra_context):
        column, params = compiler.compile(self.source_expressions[0])
        sql = (
            "(SELECT COUNT(*) FROM json_each(CASE WHEN"  # noqa: S608
            f" json_type({column}) = 'array' THEN {column} ELSE '[]' END)"
            " WHERE json_type(value) = 'object' AND json_extract(value, '$.' || %s) = %s)"
        )
        return sql, (*params, *params, self.key, self.value)


class JsonNumber(_JsonExpression):
    """The number at a top-level `key` of a JSON object column; NULL when absent or not a
    number (so `Avg` counts only the runs that reported it)."""

    output_field = FloatField()

    def __init__(self, column: str | Expression, key: str):
        super().__init__(column)
        self.key = key

    def as_postgresql(self, compiler, connection, **extra_context):
        column, params = compiler.compile(self.source_expressions[0])
        sql = (
            f"(CASE WHEN jsonb_typeof({column} -> %s::text) = 'number'"
            f" THEN ({column} ->> %s::text)::double precision END)"
        )
        return sql, (*params, self.key, *params, self.key)

    def as_sqlite(self, compiler, connection, **extra_context):
        column, params = compiler.compile(self.source_expressions[0])
        sql = (
            f"(CASE WHEN json_type({column}, '$.' || %s) IN ('integer', 'real')"
            f" THEN CAST(json_extract({column}, '$.' || %s) AS REAL) END)"
        )
        return sql, (*params, self.key, *params, self.key)
