"""psycopg2 checks for the differential harness (Debian's python3-psycopg2).

Usage: /usr/bin/python3 psycopg2_check.py '<libpq dsn>'   (password in PGPASSWORD)
Prints one JSON object per check: {"name", "ok", "detail", "ms"}.
"""
import datetime
import decimal
import io
import json
import select
import sys
import threading
import time
import traceback
import uuid

import psycopg2
import psycopg2.errorcodes
import psycopg2.extensions
import psycopg2.extras

DSN = sys.argv[1]


def connect(**kw):
    return psycopg2.connect(DSN, **kw)


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
    except psycopg2.Error as e:
        eq(state, e.pgcode, f'SQLSTATE ({e.pgerror})')
        return
    raise AssertionError(f'expected SQLSTATE {state}, got no error')


conn = connect()
conn.autocommit = True
cur = conn.cursor()
cur.execute('DROP TABLE IF EXISTS pg2_t, pg2_copy, pg2_big')
cur.execute('CREATE TABLE pg2_t (id serial PRIMARY KEY, v text, n int UNIQUE)')
cur.execute('CREATE TABLE pg2_copy (a int, b text, c bytea)')
cur.execute('CREATE TABLE pg2_big AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 200000) g')


@check('connect, server version, parameters with client-side binding')
def _():
    if conn.server_version < 100000:
        raise AssertionError(conn.server_version)
    cur.execute('SELECT %s + 1, %s, %s', (41, "it's", None))
    eq((42, "it's", None), cur.fetchone(), 'row')


@check('types round trip (numeric, timestamptz, date, interval, uuid, json, arrays, bytea, bool)')
def _():
    psycopg2.extras.register_uuid()
    ts = datetime.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=datetime.timezone.utc)
    vals = (decimal.Decimal('12345678901234567890.0123456789'), ts, datetime.date(2024, 2, 29), datetime.timedelta(days=1, seconds=7384),
            uuid.UUID('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'), psycopg2.extras.Json({'a': [1, 2, {'b': None}]}), [1, None, 3], ['a', 'b,c', '"q"'],
            psycopg2.Binary(bytes([0, 1, 2, 255])), True)
    cur.execute('SELECT %s::numeric, %s::timestamptz, %s::date, %s::interval, %s::uuid, %s::jsonb, %s::int[], %s::text[], %s::bytea, %s::bool', vals)
    r = cur.fetchone()
    eq(vals[0], r[0], 'numeric')
    eq(ts, r[1], 'timestamptz')
    eq(vals[2], r[2], 'date')
    eq(vals[3], r[3], 'interval')
    eq(vals[4], r[4], 'uuid')
    eq({'a': [1, 2, {'b': None}]}, r[5], 'jsonb')
    eq([1, None, 3], r[6], 'int[]')
    eq(['a', 'b,c', '"q"'], r[7], 'text[]')
    eq(bytes([0, 1, 2, 255]), bytes(r[8]), 'bytea')
    eq(True, r[9], 'bool')


@check('unicode text (BMP, emoji, combining marks)')
def _():
    s = 'Grüße, Привет, 日本語, 🦆🚀, e\u0301'
    cur.execute('SELECT %s::text, length(%s::text)', (s, s))
    eq((s, len(s)), cur.fetchone(), 'text')


@check('executemany and execute_values (batches)')
def _():
    cur.executemany('INSERT INTO pg2_t (v, n) VALUES (%s, %s)', [(f'v{i}', i) for i in range(500)])
    psycopg2.extras.execute_values(cur, 'INSERT INTO pg2_t (v, n) VALUES %s', [(f'w{i}', i) for i in range(500, 3000)], page_size=500)
    cur.execute('SELECT count(*) FROM pg2_t')
    eq(3000, cur.fetchone()[0], 'rows')


@check('COPY FROM STDIN and COPY TO STDOUT (copy_expert, text and binary)')
def _():
    data = ''.join(f'{i}\trow {i}{chr(92) + "ttab" if i % 7 == 0 else ""}\t\\\\x{i:04x}\n' for i in range(50000))
    cur.copy_expert('COPY pg2_copy FROM STDIN', io.StringIO(data))
    eq(50000, cur.rowcount, 'rows copied in')
    out = io.StringIO()
    cur.copy_expert('COPY (SELECT * FROM pg2_copy ORDER BY a) TO STDOUT', out)
    eq(data, out.getvalue(), 'text round trip')
    binout = io.BytesIO()
    cur.copy_expert('COPY pg2_copy TO STDOUT (FORMAT binary)', binout)
    cur.execute('CREATE TEMP TABLE pg2_copy2 (LIKE pg2_copy)')
    binout.seek(0)
    cur.copy_expert('COPY pg2_copy2 FROM STDIN (FORMAT binary)', binout)
    cur.execute('SELECT count(*) FROM (SELECT * FROM pg2_copy EXCEPT SELECT * FROM pg2_copy2) d')
    eq(0, cur.fetchone()[0], 'binary round trip')


@check('COPY error mid-stream leaves the connection usable')
def _():
    expect_state('22P02', lambda: cur.copy_expert('COPY pg2_copy (a, b) FROM STDIN', io.StringIO('1\ta\nnot-a-number\tb\n')))
    cur.execute('SELECT 1')
    eq((1,), cur.fetchone(), 'after copy error')


@check('large result (200k rows, fetched whole)')
def _():
    cur.execute('SELECT id, h FROM pg2_big')
    rows = cur.fetchall()
    eq(200000, len(rows), 'rows')
    eq(200000 * 200001 // 2, sum(r[0] for r in rows), 'sum')


@check('server-side (named) cursor, itersize 2000')
def _():
    with connect() as c2:
        with c2.cursor(name='pg2_cursor') as sc:
            sc.itersize = 2000
            sc.execute('SELECT id FROM pg2_big ORDER BY id')
            n = s = 0
            for (i,) in sc:
                n += 1
                s += i
        eq(200000, n, 'rows')
        eq(200000 * 200001 // 2, s, 'sum')
    c2.close()


@check('transactions: commit, rollback, savepoint')
def _():
    c2 = connect()
    k = c2.cursor()
    k.execute("INSERT INTO pg2_t (v, n) VALUES ('tx', -1)")
    c2.rollback()
    k.execute("INSERT INTO pg2_t (v, n) VALUES ('tx', -2)")
    k.execute('SAVEPOINT sp1')
    k.execute("INSERT INTO pg2_t (v, n) VALUES ('tx', -3)")
    k.execute('ROLLBACK TO SAVEPOINT sp1')
    c2.commit()
    eq(psycopg2.extensions.TRANSACTION_STATUS_IDLE, c2.get_transaction_status(), 'idle after commit')
    cur.execute('SELECT array_agg(n ORDER BY n) FROM pg2_t WHERE n < 0')
    eq([-2], cur.fetchone()[0], 'committed rows')
    c2.close()


@check('errors: SQLSTATE, diagnostics, aborted transaction (25P02), connection still usable')
def _():
    expect_state('42601', lambda: cur.execute('SELEC 1'))
    expect_state('23505', lambda: cur.execute("INSERT INTO pg2_t (v, n) VALUES ('dup', 1)"))
    try:
        cur.execute('SELECT 1/0')
    except psycopg2.errors.DivisionByZero as e:
        eq('division by zero', e.diag.message_primary, 'message')
        eq('ERROR', e.diag.severity, 'severity')
    c2 = connect()
    k = c2.cursor()
    expect_state('42P01', lambda: k.execute('SELECT * FROM no_such_table'))
    eq(psycopg2.extensions.TRANSACTION_STATUS_INERROR, c2.get_transaction_status(), 'in error')
    expect_state('25P02', lambda: k.execute('SELECT 1'))
    c2.rollback()
    k.execute('SELECT 1')
    eq((1,), k.fetchone(), 'after rollback')
    c2.close()


@check('notices (RAISE NOTICE)')
def _():
    del conn.notices[:]
    cur.execute("DO $$ BEGIN RAISE NOTICE 'hello %', 42; END $$")
    eq(['NOTICE:  hello 42\n'], conn.notices, 'notices')


@check('LISTEN/NOTIFY between two connections (payload, sender pid)')
def _():
    lc = connect()
    lc.autocommit = True
    lc.cursor().execute('LISTEN pg2_chan')
    nc = connect()
    nc.autocommit = True
    k = nc.cursor()
    k.execute('SELECT pg_backend_pid()')
    pid = k.fetchone()[0]
    k.execute("NOTIFY pg2_chan, 'payload ü'")
    deadline = time.monotonic() + 5
    while not lc.notifies and time.monotonic() < deadline:
        select.select([lc], [], [], 0.5)
        lc.poll()
    if not lc.notifies:
        raise AssertionError('no notification')
    n = lc.notifies[0]
    eq(('pg2_chan', 'payload ü', pid), (n.channel, n.payload, n.pid), 'notification')
    lc.close()
    nc.close()


@check('cancel (connection.cancel from another thread)')
def _():
    c2 = connect()
    k = c2.cursor()
    threading.Timer(0.5, c2.cancel).start()
    t0 = time.monotonic()
    expect_state('57014', lambda: k.execute('SELECT pg_sleep(20)'))
    if time.monotonic() - t0 > 10:
        raise AssertionError('cancel took too long')
    c2.rollback()
    k.execute('SELECT 1')
    eq((1,), k.fetchone(), 'after cancel')
    c2.close()


@check('asynchronous connection (async_=True, polling)')
def _():
    ac = psycopg2.connect(DSN, async_=True)

    def wait(c):
        while True:
            state = c.poll()
            if state == psycopg2.extensions.POLL_OK:
                return
            if state == psycopg2.extensions.POLL_READ:
                select.select([c.fileno()], [], [], 5)
            elif state == psycopg2.extensions.POLL_WRITE:
                select.select([], [c.fileno()], [], 5)
    wait(ac)
    k = ac.cursor()
    k.execute('SELECT count(*) FROM pg2_big')
    wait(ac)
    eq((200000,), k.fetchone(), 'count')
    ac.close()


@check('large objects (lobject)')
def _():
    c2 = connect()
    lo = c2.lobject(0, 'wb')
    data = bytes(range(256)) * 1200
    lo.write(data)
    oid = lo.oid
    lo.close()
    lo = c2.lobject(oid, 'rb')
    eq(data, lo.read(), 'bytes')
    lo.unlink()
    c2.commit()
    c2.close()
