// JDBC checks for the differential harness (compiled with javac at run time against Debian's
// pgjdbc). Usage: java -cp postgresql.jar:. JdbcCheck <jdbc-url> <user> <password>
// Prints one JSON object per check: {"name":…,"ok":…,"detail":…,"ms":…}.
import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.sql.*;
import java.io.*;
import java.util.*;
import java.util.concurrent.*;
import org.postgresql.PGConnection;
import org.postgresql.PGNotification;
import org.postgresql.copy.CopyManager;
import org.postgresql.largeobject.LargeObject;
import org.postgresql.largeobject.LargeObjectManager;

public class JdbcCheck {
  static String url, user, password;

  interface Body { void run() throws Exception; }

  static Connection connect(String extra) throws SQLException {
    Properties p = new Properties();
    p.setProperty("user", user);
    p.setProperty("password", password);
    return DriverManager.getConnection(url + extra, p);
  }

  static Connection connect() throws SQLException { return connect(""); }

  static void check(String name, Body body) {
    long t0 = System.nanoTime();
    boolean ok = true;
    String detail = "";
    try { body.run(); } catch (Throwable e) {
      ok = false;
      detail = e.toString();
      if (e.getCause() != null) detail += " / cause: " + e.getCause();
    }
    long ms = (System.nanoTime() - t0) / 1_000_000;
    System.out.println("{\"name\":" + q(name) + ",\"ok\":" + ok + ",\"detail\":" + q(detail) + ",\"ms\":" + ms + "}");
    System.out.flush();
  }

  static String q(String s) {
    StringBuilder b = new StringBuilder("\"");
    for (char c : s.toCharArray()) {
      if (c == '"' || c == '\\') b.append('\\').append(c);
      else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
      else b.append(c);
    }
    return b.append('"').toString();
  }

  static void eq(Object want, Object got, String what) {
    if (!Objects.equals(want, got)) throw new AssertionError(what + ": want " + want + ", got " + got);
  }

  static void expectState(String state, Body body) throws Exception {
    try { body.run(); } catch (SQLException e) {
      eq(state, e.getSQLState(), "SQLSTATE (" + e.getMessage() + ")");
      return;
    }
    throw new AssertionError("expected SQLSTATE " + state + ", got no error");
  }

  static long one(Connection c, String sql) throws SQLException {
    try (Statement s = c.createStatement(); ResultSet r = s.executeQuery(sql)) { r.next(); return r.getLong(1); }
  }

  public static void main(String[] args) throws Exception {
    url = args[0]; user = args[1]; password = args[2];
    try (Connection c = connect()) {
      try (Statement s = c.createStatement()) {
        s.execute("DROP TABLE IF EXISTS jdbc_t, jdbc_copy, jdbc_big");
        s.execute("CREATE TABLE jdbc_t (id serial PRIMARY KEY, v text, n int UNIQUE)");
        s.execute("CREATE TABLE jdbc_copy (a int, b text)");
        s.execute("CREATE TABLE jdbc_big AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 200000) g");
      }

      check("connect and server version", () -> {
        DatabaseMetaData md = c.getMetaData();
        if (md.getDatabaseMajorVersion() < 10) throw new AssertionError("version " + md.getDatabaseProductVersion());
        eq(1L, one(c, "SELECT 1"), "select 1");
      });

      check("prepared statement: server-side after prepareThreshold, binary transfer", () -> {
        try (PreparedStatement ps = c.prepareStatement("SELECT ?::int + 1, ?::text || 'x', ?::float8 * 2")) {
          for (int i = 0; i < 12; i++) {
            ps.setInt(1, i); ps.setString(2, "s" + i); ps.setDouble(3, i + 0.5);
            try (ResultSet r = ps.executeQuery()) {
              r.next();
              eq(i + 1, r.getInt(1), "int"); eq("s" + i + "x", r.getString(2), "text"); eq((i + 0.5) * 2, r.getDouble(3), "float8");
            }
          }
          if (!((org.postgresql.PGStatement) ps).isUseServerPrepare()) throw new AssertionError("not server-prepared after 12 executions");
        }
      });

      check("prepareThreshold=-1 (forced binary, named statements from the first use)", () -> {
        try (Connection c2 = connect("&prepareThreshold=-1"); PreparedStatement ps = c2.prepareStatement("SELECT ?::bigint, ?::numeric, ?::bytea")) {
          ps.setLong(1, Long.MAX_VALUE); ps.setBigDecimal(2, new BigDecimal("12345678901234567890.0123456789")); ps.setBytes(3, new byte[] {0, 1, 2, (byte) 255});
          try (ResultSet r = ps.executeQuery()) {
            r.next();
            eq(Long.MAX_VALUE, r.getLong(1), "bigint");
            eq(new BigDecimal("12345678901234567890.0123456789"), r.getBigDecimal(2), "numeric");
            eq("000102ff", HexFormat.of().formatHex(r.getBytes(3)), "bytea");
          }
        }
      });

      check("types round trip (date, timestamptz, uuid, jsonb, arrays, interval, bool, NULL)", () -> {
        try (PreparedStatement ps = c.prepareStatement(
            "SELECT ?::date, ?::timestamptz, ?::uuid, ?::jsonb, ?::int[], ?::text[], '1 day 02:03:04'::interval, ?::bool, ?::text")) {
          UUID u = UUID.fromString("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
          ps.setDate(1, java.sql.Date.valueOf("2024-02-29"));
          ps.setTimestamp(2, Timestamp.valueOf("2024-01-02 03:04:05.123456"));
          ps.setObject(3, u);
          ps.setString(4, "{\"a\": [1, 2, {\"b\": null}]}");
          ps.setArray(5, c.createArrayOf("int4", new Integer[] {1, null, 3}));
          ps.setArray(6, c.createArrayOf("text", new String[] {"a", "b,c", "\"q\""}));
          ps.setBoolean(7, true);
          ps.setNull(8, Types.VARCHAR);
          try (ResultSet r = ps.executeQuery()) {
            r.next();
            eq(java.sql.Date.valueOf("2024-02-29"), r.getDate(1), "date");
            eq(Timestamp.valueOf("2024-01-02 03:04:05.123456"), r.getTimestamp(2), "timestamptz");
            eq(u, r.getObject(3), "uuid");
            eq("{\"a\": [1, 2, {\"b\": null}]}", r.getString(4), "jsonb");
            eq(Arrays.asList(1, null, 3), Arrays.asList((Integer[]) r.getArray(5).getArray()), "int[]");
            eq(Arrays.asList("a", "b,c", "\"q\""), Arrays.asList((String[]) r.getArray(6).getArray()), "text[]");
            eq("1 day 02:03:04", r.getString(7), "interval");
            eq(true, r.getBoolean(8), "bool");
            r.getString(9); eq(true, r.wasNull(), "NULL");
          }
        }
      });

      check("unicode text (BMP, emoji, combining marks)", () -> {
        String s = "Grüße, Привет, 日本語, 🦆🚀, e\u0301";
        try (PreparedStatement ps = c.prepareStatement("SELECT ?::text, length(?::text)")) {
          ps.setString(1, s); ps.setString(2, s);
          try (ResultSet r = ps.executeQuery()) { r.next(); eq(s, r.getString(1), "text"); eq(s.codePointCount(0, s.length()), r.getInt(2), "length"); }
        }
      });

      check("batch insert (executeBatch)", () -> {
        try (PreparedStatement ps = c.prepareStatement("INSERT INTO jdbc_t (v, n) VALUES (?, ?)")) {
          for (int i = 0; i < 1000; i++) { ps.setString(1, "v" + i); ps.setInt(2, i); ps.addBatch(); }
          int[] counts = ps.executeBatch();
          eq(1000, counts.length, "batch results");
        }
        eq(1000L, one(c, "SELECT count(*) FROM jdbc_t"), "rows");
      });

      check("batch insert with reWriteBatchedInserts=true", () -> {
        try (Connection c2 = connect("&reWriteBatchedInserts=true"); PreparedStatement ps = c2.prepareStatement("INSERT INTO jdbc_t (v, n) VALUES (?, ?)")) {
          for (int i = 1000; i < 3000; i++) { ps.setString(1, "w" + i); ps.setInt(2, i); ps.addBatch(); }
          ps.executeBatch();
        }
        eq(3000L, one(c, "SELECT count(*) FROM jdbc_t"), "rows");
      });

      check("generated keys (INSERT … RETURNING)", () -> {
        try (PreparedStatement ps = c.prepareStatement("INSERT INTO jdbc_t (v, n) VALUES (?, ?)", Statement.RETURN_GENERATED_KEYS)) {
          ps.setString(1, "k"); ps.setInt(2, 99999);
          ps.executeUpdate();
          try (ResultSet r = ps.getGeneratedKeys()) { r.next(); if (r.getInt("id") <= 0) throw new AssertionError("no id"); }
        }
      });

      check("COPY FROM STDIN and COPY TO STDOUT (CopyManager)", () -> {
        CopyManager cm = ((PGConnection) c).getCopyAPI();
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < 50000; i++) sb.append(i).append('\t').append("row ").append(i).append(i % 7 == 0 ? "\\ttab" : "").append('\n');
        long n = cm.copyIn("COPY jdbc_copy FROM STDIN", new StringReader(sb.toString()));
        eq(50000L, n, "rows copied in");
        StringWriter w = new StringWriter();
        long out = cm.copyOut("COPY (SELECT * FROM jdbc_copy ORDER BY a) TO STDOUT", w);
        eq(50000L, out, "rows copied out");
        eq(sb.toString(), w.toString(), "copy round trip");
      });

      check("COPY error mid-stream (bad row) leaves the connection usable", () -> {
        CopyManager cm = ((PGConnection) c).getCopyAPI();
        expectState("22P02", () -> cm.copyIn("COPY jdbc_copy FROM STDIN", new StringReader("1\ta\nnot-a-number\tb\n")));
        eq(1L, one(c, "SELECT 1"), "after copy error");
      });

      check("large result (200k rows, fetched whole)", () -> {
        long sum = 0, rows = 0;
        try (Statement s = c.createStatement(); ResultSet r = s.executeQuery("SELECT id, h FROM jdbc_big")) {
          while (r.next()) { sum += r.getLong(1); rows++; if (r.getString(2).length() != 32) throw new AssertionError("md5 length"); }
        }
        eq(200000L, rows, "rows"); eq(200000L * 200001L / 2, sum, "sum");
      });

      check("cursor fetch (fetchSize 1000 in a transaction: Execute with a row limit, portal suspended)", () -> {
        c.setAutoCommit(false);
        long rows = 0, sum = 0;
        try (PreparedStatement s = c.prepareStatement("SELECT id FROM jdbc_big WHERE id > ? ORDER BY id")) {
          s.setFetchSize(1000); s.setInt(1, 0);
          try (ResultSet r = s.executeQuery()) { while (r.next()) { rows++; sum += r.getLong(1); } }
        } finally { c.commit(); c.setAutoCommit(true); }
        eq(200000L, rows, "rows"); eq(200000L * 200001L / 2, sum, "sum");
      });

      check("transactions: commit, rollback, savepoint", () -> {
        c.setAutoCommit(false);
        try (Statement s = c.createStatement()) {
          s.execute("INSERT INTO jdbc_t (v, n) VALUES ('tx', -1)");
          c.rollback();
          eq(0L, one(c, "SELECT count(*) FROM jdbc_t WHERE n = -1"), "after rollback");
          s.execute("INSERT INTO jdbc_t (v, n) VALUES ('tx', -2)");
          Savepoint sp = c.setSavepoint("sp1");
          s.execute("INSERT INTO jdbc_t (v, n) VALUES ('tx', -3)");
          c.rollback(sp);
          c.commit();
          eq(1L, one(c, "SELECT count(*) FROM jdbc_t WHERE n IN (-2, -3)"), "after savepoint rollback");
        } finally { c.setAutoCommit(true); }
      });

      check("errors: SQLSTATE, position, aborted transaction (25P02), connection still usable", () -> {
        expectState("42601", () -> c.createStatement().execute("SELEC 1"));
        expectState("23505", () -> c.createStatement().execute("INSERT INTO jdbc_t (v, n) VALUES ('dup', 1)"));
        expectState("22012", () -> c.prepareStatement("SELECT 1/0").executeQuery());
        c.setAutoCommit(false);
        try {
          expectState("42P01", () -> c.createStatement().execute("SELECT * FROM no_such_table"));
          expectState("25P02", () -> c.createStatement().execute("SELECT 1"));
          c.rollback();
        } finally { c.setAutoCommit(true); }
        try { c.createStatement().execute("SELECT 1/0"); } catch (SQLException e) {
          org.postgresql.util.ServerErrorMessage m = ((org.postgresql.util.PSQLException) e).getServerErrorMessage();
          eq("ERROR", m.getSeverity(), "severity"); eq("division by zero", m.getMessage(), "message");
        }
        eq(1L, one(c, "SELECT 1"), "after errors");
      });

      check("notices (RAISE NOTICE → SQLWarning)", () -> {
        try (Statement s = c.createStatement()) {
          s.execute("DO $$ BEGIN RAISE NOTICE 'hello %', 42; END $$");
          SQLWarning w = s.getWarnings();
          if (w == null) throw new AssertionError("no warning");
          eq("hello 42", w.getMessage(), "notice");
        }
      });

      check("multiple statements in one execute (getMoreResults)", () -> {
        try (Statement s = c.createStatement()) {
          boolean rs = s.execute("SELECT 1; SELECT 2, 3; UPDATE jdbc_t SET v = v WHERE n BETWEEN 0 AND 9");
          int results = 0, updates = -1;
          while (true) {
            if (rs) { try (ResultSet r = s.getResultSet()) { r.next(); results++; } }
            else { int u = s.getUpdateCount(); if (u == -1) break; updates = u; }
            rs = s.getMoreResults();
          }
          eq(2, results, "result sets"); eq(10, updates, "update count");
        }
      });

      check("LISTEN/NOTIFY between two connections (payload, sender pid)", () -> {
        try (Connection l = connect(); Connection n = connect()) {
          l.createStatement().execute("LISTEN jdbc_chan");
          long senderPid = one(n, "SELECT pg_backend_pid()");
          n.createStatement().execute("NOTIFY jdbc_chan, 'payload ü'");
          PGNotification[] got = null;
          for (int i = 0; i < 50 && (got == null || got.length == 0); i++) got = ((PGConnection) l).getNotifications(100);
          if (got == null || got.length == 0) throw new AssertionError("no notification");
          eq("jdbc_chan", got[0].getName(), "channel"); eq("payload ü", got[0].getParameter(), "payload");
          eq((int) senderPid, got[0].getPID(), "sender pid");
        }
      });

      check("cancel (Statement.cancel from another thread)", () -> {
        try (Connection c2 = connect(); Statement s = c2.createStatement()) {
          ScheduledExecutorService ex = Executors.newSingleThreadScheduledExecutor();
          ex.schedule(() -> { try { s.cancel(); } catch (SQLException e) { throw new RuntimeException(e); } }, 500, TimeUnit.MILLISECONDS);
          long t0 = System.nanoTime();
          expectState("57014", () -> s.execute("SELECT pg_sleep(20)"));
          ex.shutdown();
          if ((System.nanoTime() - t0) / 1e9 > 10) throw new AssertionError("cancel took too long");
          eq(1L, one(c2, "SELECT 1"), "after cancel");
        }
      });

      check("query timeout (setQueryTimeout uses cancel)", () -> {
        try (Statement s = c.createStatement()) {
          s.setQueryTimeout(1);
          expectState("57014", () -> s.execute("SELECT pg_sleep(20)"));
        }
      });

      check("large objects (LargeObjectManager)", () -> {
        c.setAutoCommit(false);
        try {
          LargeObjectManager lom = ((PGConnection) c).getLargeObjectAPI();
          long oid = lom.createLO(LargeObjectManager.READWRITE);
          byte[] data = new byte[300000];
          new Random(7).nextBytes(data);
          try (LargeObject lo = lom.open(oid, LargeObjectManager.READWRITE)) { lo.write(data); }
          try (LargeObject lo = lom.open(oid, LargeObjectManager.READ)) { eq(true, Arrays.equals(data, lo.read(data.length)), "bytes"); }
          lom.delete(oid);
          c.commit();
        } finally { c.setAutoCommit(true); }
      });

      check("callable statement and metadata (getTables, getColumns)", () -> {
        try (CallableStatement cs = c.prepareCall("{? = call upper(?)}")) {
          cs.registerOutParameter(1, Types.VARCHAR); cs.setString(2, "abc"); cs.execute();
          eq("ABC", cs.getString(1), "upper");
        }
        DatabaseMetaData md = c.getMetaData();
        try (ResultSet r = md.getTables(null, "public", "jdbc_t", new String[] {"TABLE"})) { eq(true, r.next(), "table found"); }
        int cols = 0;
        try (ResultSet r = md.getColumns(null, "public", "jdbc_t", null)) { while (r.next()) cols++; }
        eq(3, cols, "columns");
        try (PreparedStatement ps = c.prepareStatement("SELECT id, v FROM jdbc_t WHERE n = ?")) {
          ResultSetMetaData rm = ps.getMetaData();
          eq("text", rm.getColumnTypeName(2), "column type"); eq("int4", ps.getParameterMetaData().getParameterTypeName(1), "param type");
        }
      });
    }
  }
}
