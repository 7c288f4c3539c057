// Real HTTP clients for the end-to-end tests, returning what the user sees:
//   curl(args)        the curl binary (HTTP/1.1, --http2, TLS options, --user, …)
//   pyRequest(opts)   Python requests (urllib3) with /usr/bin/python3, the
//                     Debian package (a pyenv python3 on PATH may lack it)
//   pyRequests(src)   any Python script, for sessions and streaming
//   rawHttp(port, …)  exact bytes on a socket and the exact bytes back, for
//                     malformed framing (smuggling, obfuscated headers)
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';

export const PYTHON = '/usr/bin/python3';

export interface HttpResult {
  /** The client's exit code (curl's: 0 ok, 7 refused, 52 empty reply, 56 recv failure, …). */
  code: number | null;
  /** HTTP status of the last response (0: none). */
  status: number;
  /** "1.1", "2", … of the last response. */
  httpVersion: string;
  /** The last response's headers in order, names lowercased. */
  headers: [string, string][];
  /** The first value of a header (name case-insensitive). */
  header(name: string): string | undefined;
  /** The body as the client delivered it (curl: decoded only with --compressed). */
  body: Buffer;
  text(): string;
  json<T = unknown>(): T;
  stderr: string;
}

function result(code: number | null, status: number, httpVersion: string, headers: [string, string][], body: Buffer, stderr: string): HttpResult {
  return {
    code,
    status,
    httpVersion,
    headers,
    header: (n) => headers.find(([k]) => k === n.toLowerCase())?.[1],
    body,
    text: () => body.toString('utf8'),
    json: <T>() => JSON.parse(body.toString('utf8')) as T,
    stderr,
  };
}

/** Header lines of the last response block in a `-D` dump (redirects and 1xx give several blocks). */
function lastHeaderBlock(dump: string): [string, string][] {
  const blocks = dump.split(/\r?\n\r?\n/).filter((b) => /^HTTP\//.test(b.trimStart()));
  const last = blocks.at(-1) ?? '';
  return last
    .split(/\r?\n/)
    .slice(1)
    .filter((l) => l.includes(':'))
    .map((l) => {
      const i = l.indexOf(':');
      return [l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim()] as [string, string];
    });
}

export interface ClientOptions {
  /** Sent on stdin (curl: use `--data-binary @-`). */
  input?: string | Buffer;
  timeoutMs?: number;
  env?: Record<string, string>;
}

function spawnCollect(cmd: string, args: string[], opts: ClientOptions): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { env: { ...process.env, ...(opts.env ?? {}) }, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let stderr = '';
    p.stdout.on('data', (c: Buffer) => out.push(c));
    p.stderr.on('data', (c) => (stderr += c));
    const timer = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out), stderr });
    });
    p.on('error', (e) => {
      clearTimeout(timer);
      resolve({ code: null, stdout: Buffer.alloc(0), stderr: String(e) });
    });
    p.stdin.on('error', () => {});
    p.stdin.end(opts.input ?? '');
  });
}

/**
 * Runs curl with `args` (the URL among them; e.g. ['--http2', '--cacert', ca, '-H', 'Authorization: Bearer …', url]).
 * Adds -sS, the header dump, the body file and the status; never rejects. One URL per call.
 */
export async function curl(args: string[], opts: ClientOptions = {}): Promise<HttpResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-curl-'));
  try {
    const hdr = path.join(dir, 'headers');
    const bodyFile = path.join(dir, 'body');
    const r = await spawnCollect('curl', ['-sS', '-D', hdr, '-o', bodyFile, '-w', '%{http_code} %{http_version}', ...args], opts);
    const [status, version] = r.stdout.toString().trim().split(' ');
    const dump = fs.existsSync(hdr) ? fs.readFileSync(hdr, 'latin1') : '';
    const body = fs.existsSync(bodyFile) ? fs.readFileSync(bodyFile) : Buffer.alloc(0);
    return result(r.code, Number(status) || 0, version ?? '', lastHeaderBlock(dump), body, r.stderr);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs a Python script with the system python3 (requests importable); never rejects. */
export function pyRequests(script: string, args: string[] = [], opts: ClientOptions = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return spawnCollect(PYTHON, ['-c', script, ...args], opts).then((r) => ({ code: r.code, stdout: r.stdout.toString('utf8'), stderr: r.stderr }));
}

export interface PyRequestOptions {
  url: string;
  method?: string;
  headers?: Record<string, string>;
  /** Request body (bytes as given). */
  body?: string;
  /** requests' `json=`: serialised by requests, with its content-type. */
  json?: unknown;
  /** Basic auth (requests' `auth=(user, password)`). */
  auth?: [string, string];
  /** TLS: a CA file to verify with, or false to skip verification (default: requests' default). */
  verify?: string | false;
  /** The same request this many times on one requests.Session (keep-alive); the last response is returned. */
  repeat?: number;
  timeoutMs?: number;
}

const PY_REQUEST = `
import base64, json, sys, requests
o = json.loads(sys.stdin.read())
s = requests.Session()
kw = {'headers': o.get('headers') or {}, 'timeout': o.get('timeout', 30)}
if 'body' in o: kw['data'] = o['body'].encode('utf-8')
if 'json' in o: kw['json'] = o['json']
if 'auth' in o: kw['auth'] = tuple(o['auth'])
if 'verify' in o: kw['verify'] = o['verify']
try:
    for _ in range(o.get('repeat', 1)):
        r = s.request(o.get('method', 'GET'), o['url'], **kw)
    v = {10: '1.0', 11: '1.1', 20: '2'}.get(r.raw.version, str(r.raw.version))
    print(json.dumps({'status': r.status_code, 'version': v, 'headers': [[k.lower(), val] for k, val in r.headers.items()], 'body': base64.b64encode(r.content).decode()}))
except requests.RequestException as e:
    print(json.dumps({'error': type(e).__name__ + ': ' + str(e)}))
    sys.exit(3)
`;

/** One request with Python requests (bodies decoded as requests decodes them: gzip undone). Never rejects. */
export async function pyRequest(o: PyRequestOptions): Promise<HttpResult & { error?: string }> {
  const { timeoutMs, ...rest } = o;
  const payload = JSON.stringify({ ...rest, timeout: (timeoutMs ?? 30_000) / 1000 });
  const r = await spawnCollect(PYTHON, ['-c', PY_REQUEST], { input: payload, timeoutMs: (timeoutMs ?? 30_000) + 10_000 });
  let j: { status?: number; version?: string; headers?: [string, string][]; body?: string; error?: string } = {};
  try {
    j = JSON.parse(r.stdout.toString('utf8').trim().split('\n').at(-1) ?? '{}');
  } catch {
    j = { error: `no JSON from python: ${r.stdout.toString().slice(0, 500)}` };
  }
  const res = result(r.code, j.status ?? 0, j.version ?? '', j.headers ?? [], Buffer.from(j.body ?? '', 'base64'), r.stderr);
  return j.error ? { ...res, error: j.error } : res;
}

export interface RawOptions {
  /** TLS to the port (certificate not verified unless `ca` is given). */
  tls?: boolean;
  ca?: string | Buffer;
  servername?: string;
  /** ALPN protocols offered (default ['http/1.1']). */
  alpn?: string[];
  /** Pause between the parts of a chunk list (default 20 ms): splits requests across TCP segments. */
  gapMs?: number;
  /** Half-close after the last byte (default false: wait for the server, as a keep-alive client). */
  end?: boolean;
  /** Stop reading after this long without new bytes (default 1000 ms). */
  idleMs?: number;
  /** Give up after this long in all (default 10 s). */
  timeoutMs?: number;
}

export interface RawResult {
  /** Every byte the server sent. */
  raw: Buffer;
  text: string;
  /** The server closed the connection (as opposed to us giving up when idle). */
  closedByServer: boolean;
  /** A socket error (ECONNRESET, TLS failure…), if any. */
  error?: string;
  /** The responses found in `raw` (HTTP/1.x framing: content-length, chunked or to close). */
  responses: RawResponse[];
}

export interface RawResponse {
  status: number;
  reason: string;
  version: string;
  headers: [string, string][];
  body: Buffer;
}

/** Sends exact bytes (a list: each part written separately, `gapMs` apart) and returns exactly what came back. */
export function rawHttp(port: number, bytes: string | Buffer | (string | Buffer)[], opts: RawOptions = {}): Promise<RawResult> {
  const parts = (Array.isArray(bytes) ? bytes : [bytes]).map((b) => (typeof b === 'string' ? Buffer.from(b, 'latin1') : b));
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let error: string | undefined;
    let closedByServer = false;
    let done = false;
    const sock: net.Socket = opts.tls
      ? tls.connect({ host: '127.0.0.1', port, ca: opts.ca, servername: opts.servername ?? 'localhost', rejectUnauthorized: !!opts.ca, ALPNProtocols: opts.alpn ?? ['http/1.1'] })
      : net.connect(port, '127.0.0.1');
    let idle: NodeJS.Timeout | undefined;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(idle);
      clearTimeout(overall);
      sock.destroy();
      const raw = Buffer.concat(chunks);
      resolve({ raw, text: raw.toString('latin1'), closedByServer, error, responses: parseResponses(raw) });
    };
    const armIdle = () => {
      clearTimeout(idle);
      idle = setTimeout(finish, opts.idleMs ?? 1000);
    };
    const overall = setTimeout(finish, opts.timeoutMs ?? 10_000);
    sock.on('data', (c: Buffer) => {
      chunks.push(c);
      armIdle();
    });
    sock.on('end', () => {
      closedByServer = true;
      finish();
    });
    sock.on('close', () => finish());
    sock.on('error', (e) => {
      error = (e as NodeJS.ErrnoException).code ?? e.message;
      finish();
    });
    sock.once(opts.tls ? 'secureConnect' : 'connect', async () => {
      for (let i = 0; i < parts.length && !done; i++) {
        if (i) await new Promise((r) => setTimeout(r, opts.gapMs ?? 20));
        if (!done) sock.write(parts[i]!);
      }
      if (opts.end && !done) sock.end();
      armIdle();
    });
  });
}

/**
 * Splits a byte stream into HTTP/1.x responses (keep-alive or pipelined): status line, headers,
 * then a body framed by chunked encoding, content-length, or (without either) to the end.
 * 1xx, 204 and 304 have no body. Stops at the first thing it cannot parse.
 * Responses to HEAD have no body either: pass `headRequests` = indexes of those.
 */
export function parseResponses(raw: Buffer, headRequests: number[] = []): RawResponse[] {
  const out: RawResponse[] = [];
  let at = 0;
  while (at < raw.length) {
    const end = raw.indexOf('\r\n\r\n', at, 'latin1');
    if (end < 0) break;
    const lines = raw.subarray(at, end).toString('latin1').split('\r\n');
    const m = /^HTTP\/(\d\.\d) (\d{3})(?: (.*))?$/.exec(lines[0]!);
    if (!m) break;
    const headers = lines.slice(1).map((l) => {
      const i = l.indexOf(':');
      return [l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim()] as [string, string];
    });
    const status = Number(m[2]);
    const get = (n: string) => headers.find(([k]) => k === n)?.[1];
    let pos = end + 4;
    let body: Buffer = Buffer.alloc(0);
    const noBody = (status >= 100 && status < 200) || status === 204 || status === 304 || headRequests.includes(out.length);
    if (!noBody) {
      if (/chunked/i.test(get('transfer-encoding') ?? '')) {
        const parts: Buffer[] = [];
        for (;;) {
          const nl = raw.indexOf('\r\n', pos, 'latin1');
          if (nl < 0) return [...out, { status, reason: m[3] ?? '', version: m[1]!, headers, body: Buffer.concat(parts) }];
          const size = parseInt(raw.subarray(pos, nl).toString('latin1'), 16);
          pos = nl + 2;
          if (!Number.isFinite(size)) break;
          if (size === 0) {
            // trailers end with an empty line
            const te = raw.indexOf('\r\n\r\n', pos - 2, 'latin1');
            pos = te < 0 ? raw.length : te + 4;
            break;
          }
          parts.push(raw.subarray(pos, pos + size));
          pos += size + 2;
        }
        body = Buffer.concat(parts);
      } else if (get('content-length') !== undefined) {
        const n = Number(get('content-length'));
        body = raw.subarray(pos, pos + n);
        pos += n;
      } else {
        body = raw.subarray(pos);
        pos = raw.length;
      }
    }
    out.push({ status, reason: m[3] ?? '', version: m[1]!, headers, body });
    at = pos;
  }
  return out;
}
