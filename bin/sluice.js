#!/usr/bin/env -S node --max-semi-space-size=1 --liftoff-only
// --max-semi-space-size=1: a small young generation keeps RSS bounded while streaming
// (TLS churns short-lived buffers): 1 GB through TLS on both legs peaked at 86 MB
// instead of 126 MB, at no measurable CPU cost per transaction (bench/pgbench.ts).
// --liftoff-only: WebAssembly (the Postgres parser, libpg-query) stays on V8's baseline
// compiler. Tiering its large module up to TurboFan took the gateway from 81 MB to 203 MB
// VmRSS after 300 distinct statements, for no steady-state gain (about 40 µs per uncached
// parse either way).
import { main } from '../dist/core/cli.js';
main(process.argv.slice(2)).then((code) => {
  if (typeof code === 'number') process.exitCode = code;
}, (err) => {
  process.stderr.write(`sluice: ${err && err.message ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
