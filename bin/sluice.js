#!/usr/bin/env -S node --max-semi-space-size=1 --liftoff-only --single-threaded-gc
// --max-semi-space-size=1: a small young generation keeps RSS bounded while streaming
// (TLS churns short-lived buffers): 1 GB through TLS on both legs peaked at 86 MB
// instead of 126 MB, at no measurable CPU cost per transaction (bench/pgbench.ts).
// --liftoff-only: WebAssembly (the Postgres parser, libpg-query) stays on V8's baseline
// compiler. Tiering its large module up to TurboFan took the gateway from 81 MB to 203 MB
// VmRSS after 300 distinct statements, for no steady-state gain (about 40 µs per uncached
// parse either way).
// --single-threaded-gc: no concurrent or parallel GC on V8's helper threads. Bulk streams
// allocate a fresh Buffer per socket read or SSH packet, and V8 then runs a major GC every few
// MB (--trace-gc: 59 mark-compacts of a 13 MB heap while 400 MB went through scp). Marking
// concurrently on four helper threads cost 1.5–2 ms of CPU per MB on this 2-core machine, where
// the relay's own thread spent 2.3–2.6; done on the main thread, it costs 0.3–0.5 ms/MB more there.
// Against the same build without the flag (bench/scp.ts, bench/large-result.ts, interleaved
// runs): scp through Sluice without recording 4.2–4.5 -> 3.0–3.2 ms of CPU per MB, with
// recording 9.1–10.0 -> 7.8–8.7; a large result through bare Sluice 1.67 -> 1.03 s per GB;
// pgbench -S and 1,000 idle sessions unchanged. The cost: a fully governed 3 GB stream to a
// slow reader peaks ~6 MB higher in anonymous memory (95–97 against 89–92 MB).
import { main } from '../dist/cli/main.js';
main(process.argv.slice(2)).then((code) => {
  if (typeof code === 'number') process.exitCode = code;
}, (err) => {
  process.stderr.write(`sluice: ${err && err.message ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
