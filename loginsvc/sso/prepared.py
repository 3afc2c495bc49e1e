"""ORM reads compiled once per thread: the same SQL and the same model objects, without rebuilding the query.

Why: profiling GET /oidc/userinfo/ and POST /oidc/introspect/ (docs/benchmarks.md, the SSO section)
showed that most of their time outside the middleware chain went to building SQL, not running
it: `AccessToken.objects.select_related("application", "user").filter(...).first()` costs
hundreds of microseconds of query construction and compilation for a lookup SQLite answers by
index in a few. A Prepared read compiles its QuerySet once (per thread, since a compiler holds
its thread's connection), then per call executes that SQL with the new value and turns the row
into objects with Django's own pieces (results_iter's converters, Model.from_db, the
select_related populators), exactly as ModelIterable does. Nothing is cached but the SQL text:
every call reads the database, so a revoked or deleted row is seen by the next request. The one
exception is Kept, for rows a caller may use for a few seconds after they change (its docstring).
"""
from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.db.models import Model, QuerySet
from django.db.models.query import get_related_populators

SENTINEL = "\x00loginsvc-prepared-value\x00"
# For a UUID column, whose lookups refuse any other value (SQLite binds it as its hex text).
UUID_SENTINEL = uuid.UUID("00000000-6c6f-6769-6e73-766376616c75")
PLACEHOLDER = re.compile(r"(?<!%)%s")  # the "format" placeholder Django compiles to (SQLite, PostgreSQL)


class _Compiled:
    """One thread's compiled query: SQL, where the value goes, and how rows become objects."""

    def __init__(self, queryset: QuerySet, sentinel: Any) -> None:
        self.db = queryset.db
        self.compiler = queryset.query.get_compiler(using=self.db)
        sql, params = self.compiler.as_sql()  # also fills select, klass_info, col_count
        accepted = (sentinel, sentinel.hex) if isinstance(sentinel, uuid.UUID) else (sentinel,)
        if (len(params) != 1 or params[0] not in accepted or self.compiler.annotation_col_map
                or queryset._known_related_objects):
            raise ValueError("a Prepared query takes exactly one value and no annotations")
        # The "pyformat" style (%(value)s), which every Django backend takes: SQLite's cursor then
        # fills it with one % operation instead of a regex pass over the whole statement (~45 us).
        self.sql = PLACEHOLDER.sub("%(value)s", sql)
        if self.sql.count("%(value)s") != 1:
            raise ValueError("cannot find the one placeholder of the compiled query")
        klass_info, select = self.compiler.klass_info, self.compiler.select
        self.model: type[Model] = klass_info["model"]
        fields = klass_info["select_fields"]
        self.start, self.end = fields[0], fields[-1] + 1
        self.init_list = [column[0].target.attname for column in select[self.start:self.end]]
        self.populators = get_related_populators(klass_info, select, self.db)
        columns = [column[0] for column in select[:self.compiler.col_count]]
        if self.compiler.has_composite_fields(columns):
            raise ValueError("a Prepared query cannot select composite fields")
        # results_iter's converters, looked up once instead of on every call.
        self.converters = list(self.compiler.get_converters(columns).items())
        self.held: tuple[Any, bool, Any] | None = None  # (DB-API connection, queries logged, a cursor of it)

    def cursor(self) -> Any:
        """A Django cursor of this thread's connection, kept while that connection lives (~50,000
        instructions a call to create and close). A connection Django closed or replaced (age,
        error, close_old_connections) gets a new cursor, from Django's cursor() as always; so does
        the first query of a thread."""
        connection = self.compiler.connection
        held, logged = self.held, connection.queries_logged  # DEBUG or a test capturing queries
        if held is None or connection.connection is None or held[:2] != (connection.connection, logged):
            cursor = connection.cursor()  # a debug cursor while queries are logged
            if connection.vendor == "postgresql":
                cursor = _server_binding(connection, cursor)
            self.held = held = (connection.connection, logged, cursor)
        return held[2]

    def first(self, value: Any) -> Model | None:
        cursor = self.cursor()
        cursor.execute(self.sql, {"value": value})
        rows = cursor.fetchall()
        if not rows:
            return None
        row = list(rows[0])
        connection = self.compiler.connection
        for position, (converters, expression) in self.converters:  # as compiler.apply_converters
            value = row[position]
            for converter in converters:
                value = converter(value, expression, connection)
            row[position] = value
        obj = self.model.from_db(self.db, self.init_list, row[self.start:self.end])
        for populator in self.populators:
            populator.populate(row, obj)
        return obj


def _server_binding(connection: Any, django_cursor: Any) -> Any:
    """On psycopg 3, the same Django cursor (wrapper, error mapping, query log) around a server-binding
    psycopg cursor: only those are prepared, after the connection's prepare_threshold runs
    (settings.py: LOGINSVC_DB_PREPARE_THRESHOLD), so PostgreSQL plans this query once per connection
    instead of on every request (measured: 0.38 -> 0.12 ms for the token read). Django's own cursors
    bind on the client and are never prepared. Anything else keeps Django's cursor."""
    from django.db.backends.postgresql import base

    if not base.is_psycopg3 or not isinstance(django_cursor.cursor, base.Cursor):
        return django_cursor
    django_cursor.close()
    raw = base.ServerBindingCursor(connection.connection)
    # The time zone of datetimes it loads, exactly as DatabaseWrapper.create_cursor sets it up.
    tzloader = connection.connection.adapters.get_loader(base.TIMESTAMPTZ_OID, base.Format.TEXT)
    if connection.timezone != tzloader.timezone:
        base.register_tzloader(connection.timezone, raw)
    return connection.make_debug_cursor(raw) if connection.queries_logged else connection.make_cursor(raw)


class Prepared:
    """`build(value)` must return the QuerySet whose first object is wanted (ordered, one value).
    `sentinel` stands for the value while the SQL is compiled: UUID_SENTINEL for a UUID column.
    first() takes the value as the database binds it (the ORM's get_db_prep_value: a UUID is hex
    text on SQLite), since it skips the lookup that would convert it."""

    def __init__(self, build: Callable[[Any], QuerySet], sentinel: Any = SENTINEL) -> None:
        self.build, self.sentinel = build, sentinel
        self.local = threading.local()

    def first(self, value: Any) -> Model | None:
        """What `build(value).first()` returns, with the SQL built once per thread and database alias."""
        compiled: _Compiled | None = getattr(self.local, "compiled", None)
        if compiled is None:
            compiled = self.local.compiled = _Compiled(self.first_queryset(self.sentinel), self.sentinel)
        return compiled.first(value)

    def first_queryset(self, value: Any) -> QuerySet:
        """QuerySet.first()'s own query: ordered by pk unless ordered already, one row."""
        queryset = self.build(value)
        return (queryset if queryset.ordered else queryset.order_by("pk"))[:1]


class Kept:
    """`read(value)`'s objects kept in this process for `seconds`, the same object shared by threads.

    For a row a caller may use for a few seconds after it changed, read on every request otherwise:
    introspection's asking client (sso/fast_token.py). Not found (None) is never kept, so a new row is
    seen by the next call; at most `size` rows, all dropped when full. Callers must not modify them."""

    def __init__(self, read: Callable[[Any], Model | None], seconds: float, size: int = 64,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.read, self.seconds, self.size, self.clock = read, seconds, size, clock
        self.rows: dict[Any, tuple[float, Model]] = {}

    def first(self, value: Any) -> Model | None:
        """`read(value)`, or what it gave less than `seconds` ago."""
        now = self.clock()
        kept = self.rows.get(value)
        if kept is not None and now < kept[0]:
            return kept[1]
        found = self.read(value)
        if found is None:
            self.rows.pop(value, None)
            return None
        if len(self.rows) >= self.size:
            self.rows.clear()
        self.rows[value] = (now + self.seconds, found)
        return found

    def holds(self, value: Any) -> bool:
        """Whether `value`'s row is kept now (its next first() will not read)."""
        kept = self.rows.get(value)
        return kept is not None and self.clock() < kept[0]

