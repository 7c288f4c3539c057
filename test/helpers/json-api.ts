// A real REST upstream for the HTTP tests: json-server 0.17 (express) in this
// process, over a fresh in-memory db of fake customers with PII, on a free
// loopback port. It demands a credential (by default `X-API-Key: <key>`; 401
// otherwise), which is what Sluice injects, and records every request it
// received (before the credential check), so tests can assert that the
// caller's token never reached it and which credential arrived.
import { createRequire } from 'node:module';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fakeCustomers, type FakeCustomer } from './fake-pii.js';

const require = createRequire(import.meta.url);

// json-server ships no types; these are the few parts used here (express underneath).
type Req = http.IncomingMessage & { body?: unknown; originalUrl: string; query: Record<string, unknown> };
type Res = http.ServerResponse & { status(n: number): Res; json(v: unknown): void };
type Next = () => void;
type Middleware = (req: Req, res: Res, next: Next) => void;
interface JsonServer {
  create(): { use(...m: unknown[]): void; get(p: string, h: Middleware): void; listen(port: number, host: string, cb: () => void): http.Server };
  defaults(o: Record<string, unknown>): Middleware[];
  router(db: object): Middleware & { db: { getState(): unknown } };
  bodyParser: Middleware[];
}
const jsonServer = require('json-server') as JsonServer;

export interface ReceivedRequest {
  method: string;
  /** Path and query as received. */
  url: string;
  /** Node's lowercased header object (repeated headers joined or listed). */
  headers: http.IncomingHttpHeaders;
  /** Header names and values as they arrived on the wire, in order. */
  rawHeaders: [string, string][];
  /** The parsed body (JSON or form), when there was one. */
  body?: unknown;
}

/** What the API accepts as a credential: every given condition must hold. */
export interface ApiAuth {
  /** A header and its exact value (default: X-API-Key with `key`). */
  header?: [name: string, value: string];
  /** `Authorization: Bearer <bearer>`. */
  bearer?: string;
  /** `Authorization: Basic base64(user:password)`. */
  basic?: { user: string; password: string };
  /** A query parameter and its exact value. */
  query?: [name: string, value: string];
}

export interface JsonApi {
  host: string;
  port: number;
  url: string;
  /** The key X-API-Key must carry (the default credential). */
  key: string;
  /** The db at start: customers (with PII) and orders. */
  data: { customers: FakeCustomer[]; orders: { id: number; customerId: number; total: number; status: string }[] };
  /** Every request received, oldest first (also those answered 401). */
  received: ReceivedRequest[];
  /** The requests in which `secret` appears anywhere (URL, any header name or value, body): [] when it never arrived. */
  sawSecret(secret: string): ReceivedRequest[];
  /** Forgets what was received. */
  reset(): void;
  stop(): Promise<void>;
}

export interface JsonApiOptions {
  /** The credential (default `X-API-Key: <key>`). */
  auth?: ApiAuth;
  /** The default credential's key (default a fixed test value). */
  key?: string;
  /** How many customers (default 50). */
  customers?: number;
}

export const JSON_API_KEY = 'upstream-api-key-7f3a9c-never-shown-to-callers';

function authorized(req: Req, auth: ApiAuth): boolean {
  const h = (n: string) => req.headers[n.toLowerCase()];
  if (auth.header && h(auth.header[0]) !== auth.header[1]) return false;
  if (auth.bearer !== undefined && h('authorization') !== `Bearer ${auth.bearer}`) return false;
  if (auth.basic && h('authorization') !== `Basic ${Buffer.from(`${auth.basic.user}:${auth.basic.password}`).toString('base64')}`) return false;
  if (auth.query && new URL(req.originalUrl, 'http://x').searchParams.get(auth.query[0]) !== auth.query[1]) return false;
  return true;
}

export async function startJsonApi(t: { teardown(fn: () => unknown): void }, opts: JsonApiOptions = {}): Promise<JsonApi> {
  const key = opts.key ?? JSON_API_KEY;
  const auth = opts.auth ?? { header: ['X-API-Key', key] };
  const customers = fakeCustomers(opts.customers ?? 50);
  const orders = customers.flatMap((c) => [1, 2].map((k) => ({ id: c.id * 10 + k, customerId: c.id, total: ((c.id * 37 + k * 11) % 500) + 0.99, status: k === 1 ? 'shipped' : 'open' })));
  const data = { customers, orders };
  const received: ReceivedRequest[] = [];

  const app = jsonServer.create();
  // The db is a deep copy: writes through the API must not change `data`, which tests compare against.
  const router = jsonServer.router(structuredClone(data));
  app.use(jsonServer.defaults({ logger: false, noCors: true }));
  app.use(jsonServer.bodyParser);
  app.use(((req, _res, next) => {
    const raw: [string, string][] = [];
    for (let i = 0; i < req.rawHeaders.length; i += 2) raw.push([req.rawHeaders[i]!, req.rawHeaders[i + 1]!]);
    // A copy: json-server adds the id to the parsed body when it creates a record.
    const body = req.body && typeof req.body === 'object' && Object.keys(req.body).length ? req.body : undefined;
    received.push({ method: req.method!, url: req.originalUrl, headers: { ...req.headers }, rawHeaders: raw, ...(body ? { body: structuredClone(body) } : {}) });
    next();
  }) as Middleware);
  app.use(((req, res, next) => {
    if (authorized(req, auth)) return next();
    res.status(401).json({ error: 'missing or wrong API credential' });
  }) as Middleware);
  app.use(router);

  const server = await new Promise<http.Server>((resolve, reject) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
  const port = (server.address() as AddressInfo).port;
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  };
  t.teardown(stop);
  return {
    host: '127.0.0.1',
    port,
    url: `http://127.0.0.1:${port}`,
    key,
    data,
    received,
    sawSecret: (secret) => received.filter((r) => JSON.stringify([r.url, r.rawHeaders, r.body ?? null]).includes(JSON.stringify(secret).slice(1, -1))),
    reset: () => void received.splice(0),
    stop,
  };
}
