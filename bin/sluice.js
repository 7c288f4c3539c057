#!/usr/bin/env node
import { main } from '../dist/core/cli.js';
main(process.argv.slice(2)).then((code) => {
  if (typeof code === 'number') process.exitCode = code;
}, (err) => {
  process.stderr.write(`sluice: ${err && err.message ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
