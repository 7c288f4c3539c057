// A large JSON response through the HTTP gateway with masking on: gateway RSS
// (sampled from /proc every 50 ms) and throughput, for a fast reader (curl to
// /dev/null) and a slow one. Target (#21): 1 GB through masking at < 100 MB RSS.
//
//   node --import tsx bench/http-large.ts [--mb 1024] [--recording]
//
// The upstream generates the body on the fly (fake customers with PII), so
// nothing is written to disk; the gateway runs the built bin (npm run build).
//
// 2026-12-06, this 2-core machine: 1 GiB through masking (curl to /dev/null): 55 MB/s,
// gateway RSS 83.7 MiB idle, peak 112.1 MiB (+28.4); with recording too: 43 MB/s, peak
// 176.8 MiB (+79.1, most of it the recording store's shared 64 MiB buffer). 64 MiB: +6.1 MiB.
// So memory does not follow the body's size, but the < 100 MiB target is missed by the
// gateway's own 84 MiB at rest plus old-generation garbage that waits for a full GC.
import http from 'node:http';
import fs from 'node:fs';
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { startSluice } from '../test/helpers/sluice.js';
import { fakeCustomer } from '../test/helpers/fake-pii.js';

const { values } = parseArgs({ options: { mb: { type: 'string', default: '1024' }, recording: { type: 'boolean', default: false }, slow: { type: 'boolean', default: false } } });
const total = Number(values.mb) << 20;

// ~64 KiB of customers, repeated with changing ids until `total` bytes were sent.
const block = Buffer.from(
  Array.from({ length: 100 }, (_, i) => JSON.stringify(fakeCustomer(i + 1))).join(',') + ',',
);
const upstream = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'application/json' });
  let sent = 0;
  res.write('{"customers":[');
  const pump = (): void => {
    while (sent < total) {
      sent += block.length;
      if (!res.write(block)) return void res.once('drain', pump);
    }
    res.end(JSON.stringify(fakeCustomer(1)) + ']}');
  };
  pump();
});
await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
const upPort = (upstream.address() as import('node:net').AddressInfo).port;

const teardown: (() => unknown)[] = [];
const gw = await startSluice(
  { teardown: (f) => teardown.push(f) },
  {
    quiet: true,
    http: 'plain',
    tls: false,
    config: {
      log: { level: 'info' },
      recording: { enabled: values.recording },
      targets: { big: { protocol: 'http', url: `http://127.0.0.1:${upPort}`, allow: ['*'] } },
      masking: [{ name: 'pii', match: { targets: ['big'] }, detectors: [{ name: 'email', strategy: 'partial' }, { name: 'credit_card', strategy: 'partial' }, { name: 'us_ssn', strategy: 'redact' }], fields: [{ path: '$.customers[*].phone', strategy: 'partial' }] }],
    },
  },
);
const token = await gw.mint('bench-large', ['ci']);
const rss = (): number => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${gw.proc.pid}/status`, 'utf8'))![1]) * 1024;
const before = rss();
let peak = before;
const sampler = setInterval(() => (peak = Math.max(peak, rss())), 50);
const t0 = performance.now();
const args = ['-sS', '-o', '/dev/null', '-w', '%{size_download} %{http_code}', '-H', `Authorization: Bearer ${token}`];
if (values.slow) args.push('--limit-rate', '20M');
const out = await new Promise<string>((resolve) => {
  const p = spawn('curl', [...args, `http://127.0.0.1:${gw.httpPort}/big/customers.json`]);
  let s = '';
  p.stdout.on('data', (d) => (s += d));
  p.on('close', () => resolve(s));
});
const secs = (performance.now() - t0) / 1000;
clearInterval(sampler);
const [size, code] = out.trim().split(' ');
const mb = (n: number) => (n / 1048576).toFixed(1);
console.log(
  `${values.mb} MiB JSON through masking${values.recording ? ' and recording' : ''}${values.slow ? ' to a 20 MB/s reader' : ''}: HTTP ${code}, ${mb(Number(size))} MiB delivered in ${secs.toFixed(1)} s ` +
    `(${(Number(size) / 1048576 / secs).toFixed(0)} MB/s); gateway RSS ${mb(before)} MiB before, peak ${mb(peak)} MiB (+${mb(peak - before)})`,
);
for (const f of teardown) await f();
upstream.close();
