"""psycopg 3 checks for the differential harness (Debian's python3-psycopg).

Usage: /usr/bin/python3 psycopg3_check.py '<libpq dsn>'   (password in PGPASSWORD)
Prints one JSON object per check: {"name", "ok", "detail", "ms"}.
"""
import datetime
import decimal
import json
import sys
import threading
import time
import traceback
import uuid

import psycopg
from psycopg import errors, pq
from psycopg.types.json import Jsonb

DSN = sys.argv[1]


def connect(**kw):
    return psycopg.connect(DSN, **kw)


def check(name):
    def wrap(fn):
        t0 = time.monotonic()
        ok, detail = True, ''
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - every failure is reported
            ok = False
            detail = f'{type(e).__name__}: {e}'.strip() + ' @ ' + traceback.format_tb(e.__traceback__)[-1].strip().splitlines()[0]
        print(json.dumps({'name': name, 'ok': ok, 'detail': detail, 'ms': round((time.monotonic() - t0) * 1000)}), flush=True)
        return fn
    return wrap


def eq(want, got, what):
    if want != got:
        raise AssertionError(f'{what}: want {want!r}, got {got!r}')


def expect_state(state, fn):
    try:
        fn()
    except psycopg.Error as e:
        eq(state, e.sqlstate, f'SQLSTATE ({e})')
        return
    raise AssertionError(f'expected SQLSTATE {state}, got no error')


conn = connect(autocommit=True)
conn.execute('DROP TABLE IF EXISTS pg3_t, pg3_copy, pg3_big')
conn.execute('CREATE TABLE pg3_t (id serial PRIMARY KEY, v text, n int UNIQUE)')
conn.execute('CREATE TABLE pg3_copy (a int, b text, c bytea, d timestamptz)')
conn.execute('CREATE TABLE pg3_big AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 200000) g')

VALS = (decimal.Decimal('12345678901234567890.0123456789'), datetime.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=datetime.timezone.utc),
        datetime.date(2024, 2, 29), datetime.timedelta(days=1, seconds=7384), uuid.UUID('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
        Jsonb({'a': [1, 2, {'b': None}]}), [1, None, 3], ['a', 'b,c', '"q"'], bytes([0, 1, 2, 255]), True, None)
SQL_TYPES = 'SELECT %s::numeric, %s::timestamptz, %s::date, %s::interval, %s::uuid, %s::jsonb, %s::int[], %s::text[], %s::bytea, %s::bool, %s::text'


def check_types(r):
    eq(VALS[0], r[0], 'numeric')
    eq(VALS[1], r[1], 'timestamptz')
    eq(VALS[2], r[2], 'date')
    eq(VALS[3], r[3], 'interval')
    eq(VALS[4], r[4], 'uuid')
    eq({'a': [1, 2, {'b': None}]}, r[5], 'jsonb')
    eq([1, None, 3], r[6], 'int[]')
    eq(['a', 'b,c', '"q"'], r[7], 'text[]')
    eq(bytes([0, 1, 2, 255]), bytes(r[8]), 'bytea')
    eq(True, r[9], 'bool')
    eq(None, r[10], 'NULL')


@check('connect, server version, server-side parameter binding (extended protocol)')
def _():
    if conn.info.server_version < 100000:
        raise AssertionError(conn.info.server_version)
    eq((42, "it's", None), conn.execute('SELECT %s::int + 1, %s::text, %s::text', (41, "it's", None)).fetchone(), 'row')


@check('types round trip, text format')
def _():
    check_types(conn.execute(SQL_TYPES, VALS).fetchone())


@check('types round trip, binary format (binary=True)')
def _():
    check_types(conn.cursor(binary=True).execute(SQL_TYPES, VALS, binary=True).fetchone())


@check('prepared statements (prepare=True, then prepare_threshold=0 for every query)')
def _():
    for i in range(10):
        eq((i * 2,), conn.execute('SELECT %s::int * 2', (i,), prepare=True).fetchone(), 'prepared')
    with connect(prepare_threshold=0) as c2:
        for i in range(10):
            eq((f'x{i}',), c2.execute("SELECT 'x' || %s::text", (i,)).fetchone(), 'prepared every time')
        eq(True, c2.execute("SELECT count(*) > 0 FROM pg_prepared_statements").fetchone()[0], 'server has prepared statements')


@check('unicode text (BMP, emoji, combining marks)')
def _():
    s = 'Grüße, Привет, 日本語, 🦆🚀, e\u0301'
    eq((s, len(s)), conn.execute('SELECT %s::text, length(%s::text)', (s, s)).fetchone(), 'text')


@check('executemany (pipelined) and explicit pipeline mode')
def _():
    with conn.cursor() as cur:
        cur.executemany('INSERT INTO pg3_t (v, n) VALUES (%s, %s)', [(f'v{i}', i) for i in range(1000)])
    with conn.pipeline():
        cursors = [conn.execute('INSERT INTO pg3_t (v, n) VALUES (%s, %s) RETURNING n', (f'p{i}', i)) for i in range(1000, 1200)]
        last = conn.execute('SELECT count(*) FROM pg3_t')
    eq([1000 + i for i in range(200)], [c.fetchone()[0] for c in cursors], 'returning')
    eq((1200,), last.fetchone(), 'rows')


@check('error inside a pipeline aborts the rest, connection still usable')
def _():
    try:
        with conn.pipeline():
            conn.execute('SELECT 1')
            conn.execute('SELECT 1/0')
            conn.execute('SELECT 2')
        raise AssertionError('no error')
    except errors.DivisionByZero:
        pass
    eq((3,), conn.execute('SELECT 3').fetchone(), 'after pipeline error')


@check('COPY FROM STDIN and TO STDOUT: text, write_row, binary')
def _():
    now = datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc)
    with conn.cursor() as cur:
        with cur.copy('COPY pg3_copy FROM STDIN') as cp:
            for i in range(20000):
                cp.write(f'{i}\trow {i}\t\\\\x{i:04x}\t2024-05-06 07:08:09+00\n')
        with cur.copy('COPY pg3_copy FROM STDIN') as cp:
            for i in range(20000, 40000):
                cp.write_row((i, f'tab\there {i}', bytes([i % 256]), now))
        with cur.copy('COPY pg3_copy FROM STDIN (FORMAT BINARY)') as cp:
            cp.set_types(['int4', 'text', 'bytea', 'timestamptz'])
            for i in range(40000, 60000):
                cp.write_row((i, f'bin {i}', bytes([i % 256, 0]), now))
        eq((60000, 60000 * 59999 // 2), cur.execute('SELECT count(*), sum(a) FROM pg3_copy').fetchone(), 'rows copied in')
        rows = []
        with cur.copy('COPY (SELECT a, b, c, d FROM pg3_copy ORDER BY a) TO STDOUT (FORMAT BINARY)') as cp:
            cp.set_types(['int4', 'text', 'bytea', 'timestamptz'])
            rows = list(cp.rows())
        eq(60000, len(rows), 'rows out (binary)')
        eq((20001, 'tab\there 20001', bytes([20001 % 256]), now), (rows[20001][0], rows[20001][1], bytes(rows[20001][2]), rows[20001][3]), 'row 20001')
        size = 0
        with cur.copy('COPY pg3_copy TO STDOUT') as cp:
            for chunk in cp:
                size += len(chunk)
        if size < 60000 * 20:
            raise AssertionError(f'text copy out too short: {size}')


@check('large result (200k rows, fetched whole) and server-side cursor (itersize 2000)')
def _():
    rows = conn.execute('SELECT id, h FROM pg3_big').fetchall()
    eq(200000, len(rows), 'rows')
    with connect() as c2:
        with c2.cursor(name='pg3_cursor') as sc:
            sc.itersize = 2000
            sc.execute('SELECT id FROM pg3_big ORDER BY id')
            n = s = 0
            for (i,) in sc:
                n += 1
                s += i
        eq((200000, 200000 * 200001 // 2), (n, s), 'server-side cursor')


@check('transactions: nested transaction() blocks are savepoints')
def _():
    with connect() as c2:
        with c2.transaction():
            c2.execute("INSERT INTO pg3_t (v, n) VALUES ('tx', -2)")
            try:
                with c2.transaction():
                    c2.execute("INSERT INTO pg3_t (v, n) VALUES ('tx', -3)")
                    raise RuntimeError('roll back the savepoint')
            except RuntimeError:
                pass
        eq(pq.TransactionStatus.IDLE, c2.info.transaction_status, 'idle')
    eq(([-2],), conn.execute('SELECT array_agg(n ORDER BY n) FROM pg3_t WHERE n < 0').fetchone(), 'committed rows')


@check('errors: SQLSTATE classes, diagnostics, aborted transaction (25P02)')
def _():
    expect_state('42601', lambda: conn.execute('SELEC 1'))
    expect_state('23505', lambda: conn.execute("INSERT INTO pg3_t (v, n) VALUES ('dup', 1)"))
    try:
        conn.execute('SELECT 1/0')
    except errors.DivisionByZero as e:
        eq(('division by zero', 'ERROR'), (e.diag.message_primary, e.diag.severity), 'diag')
    with connect() as c2:
        expect_state('42P01', lambda: c2.execute('SELECT * FROM no_such_table'))
        eq(pq.TransactionStatus.INERROR, c2.info.transaction_status, 'in error')
        expect_state('25P02', lambda: c2.execute('SELECT 1'))
        c2.rollback()
        eq((1,), c2.execute('SELECT 1').fetchone(), 'after rollback')


@check('notices and LISTEN/NOTIFY (payload, sender pid)')
def _():
    notices = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    conn.execute("DO $$ BEGIN RAISE NOTICE 'hello %', 42; END $$")
    eq(['hello 42'], notices, 'notices')
    with connect(autocommit=True) as lc, connect(autocommit=True) as nc:
        lc.execute('LISTEN pg3_chan')
        pid = nc.execute('SELECT pg_backend_pid()').fetchone()[0]
        nc.execute("NOTIFY pg3_chan, 'payload ü'")
        got = []
        t = threading.Timer(5, lambda: nc.execute("NOTIFY pg3_chan, 'timeout'"))
        t.start()
        for n in lc.notifies():
            got.append(n)
            break
        t.cancel()
        eq(('pg3_chan', 'payload ü', pid), (got[0].channel, got[0].payload, got[0].pid), 'notification')


@check('cancel (connection.cancel from another thread)')
def _():
    with connect() as c2:
        threading.Timer(0.5, c2.cancel).start()
        t0 = time.monotonic()
        expect_state('57014', lambda: c2.execute('SELECT pg_sleep(20)'))
        if time.monotonic() - t0 > 10:
            raise AssertionError('cancel took too long')
        c2.rollback()
        eq((1,), c2.execute('SELECT 1').fetchone(), 'after cancel')
