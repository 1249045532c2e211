"""Many small reads in one round trip: ordered-offset probes of an index (a median's one or
two entries, a percentile's) joined with UNION ALL, so a page pays one query for all of its
versions or cells instead of one each (`version_stats.version_medians`,
`batch_grid._add_durations`)."""

from __future__ import annotations

from django.db import connection

# SQLite caps a compound SELECT at 500 terms: more terms than this take one more query per
# this many.
TERMS_PER_QUERY = 200


def union_all_rows(terms: list[tuple[str, list]]) -> list[tuple]:
    """The rows of every (sql, params) term, read as UNION ALL queries of at most
    `TERMS_PER_QUERY` terms. Each term is a subquery of its own: both databases accept a term
    with its own ORDER BY … LIMIT … OFFSET there, which Django refuses in a compound query."""
    rows: list[tuple] = []
    with connection.cursor() as cursor:
        for start in range(0, len(terms), TERMS_PER_QUERY):
            chunk = terms[start : start + TERMS_PER_QUERY]
            sql = " UNION ALL ".join(
                f"SELECT * FROM ({term_sql}) AS term_{n}"  # noqa: S608
                for n, (term_sql, _) in enumerate(chunk)
            )
            cursor.execute(sql, [param for _, params in chunk for param in params])
            rows.extend(cursor.fetchall())
    return rows
