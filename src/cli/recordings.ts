// The DBA's view of recordings: `sluice sessions list`, `sluice replay`,
// `sluice export`, `sluice recordings verify`, `sluice audit`. Everything is
// read from the recording store: the target may be offline.

import { createWriteStream } from 'node:fs';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import type { SluiceConfig } from '../config/types.js';
import { printTable } from './table.js';
import { openRecordingStore } from '../recording/open.js';
import { parseDuration } from '../config/units.js';
import { Dir, type Frame, type SessionIndexEntry } from '../recording/types.js';
import type { RecordingStore } from '../recording/store.js';
import { renderSession } from '../recording/replay.js';
import { protocolModules } from '../protocols/index.js';
import { playSsh } from '../protocols/ssh/replay.js';
import { toAsciicast } from '../protocols/ssh/asciicast.js';

type Load = (path: string) => Promise<SluiceConfig | null>;

/** "2026-11-22", an ISO time, or a duration ago ("2h", "7d"). */
function when(v: string | undefined, flag: string): Date | undefined {
  if (!v) return undefined;
  if (/^\d+(\.\d+)?\s*[a-z]+$/i.test(v)) return new Date(Date.now() - parseDuration(v));
  const d = new Date(v);
  if (Number.isNaN(d.getTime())) throw new Error(`${flag}: expected a date (2026-11-22, an ISO time) or a duration ago (2h, 7d), got "${v}"`);
  return d;
}

/** Options shared by `sessions list` and `audit`: which identity, target, decision and time window. */
function filterOptions(limit: string) {
  return {
    config: { type: 'string', short: 'c' },
    identity: { type: 'string' },
    target: { type: 'string' },
    decision: { type: 'string' },
    since: { type: 'string' },
    until: { type: 'string' },
    limit: { type: 'string', default: limit },
    json: { type: 'boolean', default: false },
  } as const;
}

function filterFrom(v: { identity?: string; target?: string; decision?: string; since?: string; until?: string; limit: string }) {
  return {
    sub: v.identity,
    target: v.target,
    decision: v.decision,
    since: when(v.since, '--since'),
    until: when(v.until, '--until'),
    limit: Number(v.limit),
  };
}


const fmtBytes = (n: number) => (n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} kB` : `${(n / (1 << 20)).toFixed(1)} MB`);

function duration(e: SessionIndexEntry): string {
  const end = e.ended_at ? new Date(e.ended_at).getTime() : Date.now();
  const s = Math.round((end - new Date(e.started_at).getTime()) / 1000);
  return s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m${s % 60}s` : `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
}

async function withStore<T>(cfg: SluiceConfig, fn: (store: RecordingStore) => Promise<T> | T): Promise<T> {
  const store = await openRecordingStore(cfg, { readOnly: true });
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/**
 * Loads the config, opens the store read-only and finds session `id`; runs `fn` on it.
 * Exit status 2 when the config does not load, 1 when there is no such session.
 */
async function withSession(
  config: string | undefined,
  id: string | undefined,
  load: Load,
  configPath: (v?: string) => string,
  fn: (store: RecordingStore, e: SessionIndexEntry) => Promise<number> | number,
): Promise<number> {
  const cfg = await load(configPath(config));
  if (!cfg) return 2;
  return withStore(cfg, (store) => {
    if (!id) {
      process.stderr.write('a session id is required (see `sluice sessions list`)\n');
      return 1;
    }
    const e = store.get(id);
    if (!e) {
      process.stderr.write(`no recorded session "${id}" (see \`sluice sessions list\`)\n`);
      return 1;
    }
    return fn(store, e);
  });
}

export async function sessionsCommand(args: string[], load: Load, configPath: (v?: string) => string): Promise<number> {
  const [sub, ...rest] = args;
  if (sub !== 'list') {
    process.stderr.write('Usage: sluice sessions list [--identity SUB] [--target T] [--since 2h|DATE] [--until DATE] [--decision deny|review|allow] [--status live|closed|interrupted] [--limit N] [--json]\n');
    return 2;
  }
  const { values } = parseArgs({ args: rest, options: { ...filterOptions('50'), status: { type: 'string' } } });
  const cfg = await load(configPath(values.config));
  if (!cfg) return 2;
  const list = await withStore(cfg, (store) => store.list({ ...filterFrom(values), status: values.status }));
  if (values.json) {
    process.stdout.write(JSON.stringify(list, (k, v) => (k === 'wrapped_key' ? undefined : v), 2) + '\n');
    return 0;
  }
  if (list.length === 0) {
    process.stdout.write('no recorded sessions match\n');
    return 0;
  }
  const rows = [['SESSION', 'STATUS', 'IDENTITY', 'TARGET', 'PROTO', 'CLIENT', 'STARTED', 'DURATION', 'STMTS', 'DENIED', 'TO CLIENT']];
  for (const e of list) {
    rows.push([
      e.id,
      e.status,
      e.sub,
      e.target,
      e.protocol,
      e.client,
      e.started_at.replace('T', ' ').slice(0, 19),
      duration(e),
      String(e.statements),
      String(e.decisions.deny ?? 0),
      fmtBytes(e.bytes_to_client),
    ]);
  }
  printTable(rows);
  return 0;
}

function hexdump(f: Frame): string[] {
  const dir = f.dir === Dir.ClientToGateway ? 'client→gateway' : f.dir === Dir.GatewayToClient ? 'gateway→client' : 'event';
  const out = [`#${f.seq} +${(f.t_us / 1e6).toFixed(6)}s ${dir} ${f.payload.length} bytes`];
  for (let o = 0; o < f.payload.length; o += 16) {
    const b = f.payload.subarray(o, o + 16);
    const hex = [...b].map((x) => x.toString(16).padStart(2, '0')).join(' ');
    const asc = [...b].map((x) => (x >= 0x20 && x < 0x7f ? String.fromCharCode(x) : '.')).join('');
    out.push(`  ${o.toString(16).padStart(8, '0')}  ${hex.padEnd(47)}  |${asc}|`);
  }
  return out;
}

export async function replayCommand(args: string[], load: Load, configPath: (v?: string) => string): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      rows: { type: 'string', default: '20' },
      raw: { type: 'boolean', default: false },
      follow: { type: 'boolean', short: 'f', default: false },
      speed: { type: 'string', default: '1' },
      'no-wait': { type: 'boolean', default: false },
    },
  });
  const speed = Number(values.speed);
  if (!(speed > 0)) {
    process.stderr.write(`sluice replay: --speed must be a positive number, got "${values.speed}"\n`);
    return 2;
  }
  return withSession(values.config, positionals[0], load, configPath, async (store, e) => {
    process.stdout.write(
      `session ${e.id}  ${e.protocol} → ${e.target}  identity ${e.sub}${e.groups.length ? ` (${e.groups.join(', ')})` : ''}  from ${e.client}\n` +
        `started ${e.started_at}${e.ended_at ? `  ended ${e.ended_at} (${e.close_reason ?? ''})` : `  ${e.status}`}\n\n`,
    );
    const frames: Frame[] = [...store.frames(e.id)];
    if (e.protocol === 'ssh' && !values.raw && !values.follow) {
      // Terminal playback at the recorded pace (SSH shells are best watched, not read).
      await playSsh(frames, { speed, wait: !values['no-wait'] }, (s) => process.stdout.write(s));
      return 0;
    }
    let printed = 0;
    const emit = () => {
      const lines = values.raw ? frames.flatMap(hexdump) : renderSession(protocolModules, e.protocol, frames, { rows: Number(values.rows), startedAt: new Date(e.started_at) });
      // In follow mode the last statement may still grow: hold back its lines until more arrive.
      for (; printed < lines.length; printed++) process.stdout.write(lines[printed] + '\n');
    };
    emit();
    while (values.follow && store.get(e.id)?.status === 'live') {
      await new Promise((r) => setTimeout(r, 500));
      const more = [...store.frames(e.id, { fromSeq: frames.length })];
      if (more.length) {
        frames.push(...more);
        emit();
      }
    }
    return 0;
  });
}

export async function exportCommand(args: string[], load: Load, configPath: (v?: string) => string): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { config: { type: 'string', short: 'c' }, format: { type: 'string', default: 'jsonl' }, out: { type: 'string', short: 'o' } },
  });
  if (values.format !== 'jsonl' && values.format !== 'asciicast' && values.format !== 'har') {
    process.stderr.write(`sluice export: unknown --format "${values.format}" (supported: jsonl, asciicast, har)\n`);
    return 2;
  }
  return withSession(values.config, positionals[0], load, configPath, async (store, e) => {
    if (values.format === 'asciicast' && e.protocol !== 'ssh') {
      process.stderr.write(`sluice export: --format asciicast is for SSH sessions; ${e.id} is a ${e.protocol} session (use jsonl)\n`);
      return 2;
    }
    // HAR comes from the session's protocol module (ProtocolModule.export), so this file names no exporter.
    const har = values.format === 'har' ? protocolModules.find((m) => m.protocol === e.protocol)?.export?.har : undefined;
    if (values.format === 'har' && !har) {
      process.stderr.write(
        e.protocol === 'http'
          ? `sluice export: this build's http module has no HAR exporter\n`
          : `sluice export: --format har is for HTTP sessions; ${e.id} is a ${e.protocol} session (use jsonl${e.protocol === 'ssh' ? ' or asciicast' : ''})\n`,
      );
      return 2;
    }
    const out: NodeJS.WritableStream = values.out ? createWriteStream(values.out) : process.stdout;
    if (har) {
      const version = createRequire(import.meta.url)('../../package.json').version as string;
      const doc = har(store.frames(e.id), { id: e.id, target: e.target, sub: e.sub, started_at: e.started_at, version });
      out.write(JSON.stringify(doc, null, 2) + '\n');
      if (out !== process.stdout) await new Promise<void>((r) => out.end(() => r()));
      return 0;
    }
    if (values.format === 'asciicast') {
      for (const line of toAsciicast(store.frames(e.id), e)) {
        if (!out.write(line + '\n')) await new Promise<void>((r) => out.once('drain', () => r()));
      }
      if (out !== process.stdout) await new Promise<void>((r) => out.end(() => r()));
      return 0;
    }
    const { wrapped_key: _k, ...meta } = e;
    out.write(JSON.stringify({ type: 'session', ...meta }) + '\n');
    for (const f of store.frames(e.id)) {
      const base = { type: 'frame', seq: f.seq, t_us: f.t_us };
      const line =
        f.dir === Dir.Event
          ? { ...base, dir: 'event', event: JSON.parse(f.payload.toString('utf8')) }
          : { ...base, dir: f.dir === Dir.ClientToGateway ? 'client' : 'server', bytes: f.payload.length, data_b64: f.payload.toString('base64') };
      if (!out.write(JSON.stringify(line) + '\n')) await new Promise<void>((r) => out.once('drain', () => r()));
    }
    if (out !== process.stdout) await new Promise<void>((r) => out.end(() => r()));
    return 0;
  });
}

export async function recordingsCommand(args: string[], load: Load, configPath: (v?: string) => string): Promise<number> {
  const [sub, ...rest] = args;
  if (sub !== 'verify') {
    process.stderr.write('Usage: sluice recordings verify <session-id> [--config sluice.yaml]\n');
    return 2;
  }
  const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { config: { type: 'string', short: 'c' } } });
  return withSession(values.config, positionals[0], load, configPath, (store, e) => {
    const r = store.verify(e.id);
    if (r.ok) {
      process.stdout.write(`intact: ${r.frames} frames, hash chain complete${e.head?.signature ? `, head signed by ${e.head.kid}` : ''} (${e.status})\n`);
      return 0;
    }
    process.stdout.write(`TAMPERED: first bad frame #${r.firstBadSeq} of ${r.frames}: ${r.reason}\n`);
    return 1;
  });
}

export async function auditCommand(args: string[], load: Load, configPath: (v?: string) => string): Promise<number> {
  const { values } = parseArgs({ args, options: filterOptions('100') });
  const cfg = await load(configPath(values.config));
  if (!cfg) return 2;
  const events = await withStore(cfg, (store) => store.audit(filterFrom(values)));
  if (values.json) {
    for (const ev of events) process.stdout.write(JSON.stringify(ev) + '\n');
    return 0;
  }
  if (!events.length) {
    process.stdout.write('no audit events match\n');
    return 0;
  }
  const rows = [['TIME', 'EVENT', 'IDENTITY', 'TARGET', 'SESSION', 'DETAIL']];
  for (const ev of events) {
    const detail =
      ev.event === 'policy.decision'
        ? `${ev.decision} by ${ev.policy ?? ''} ${ev.rule ?? ''}: ${String(ev.query ?? '').slice(0, 60)}`
        : ev.event === 'session.close'
          ? String(ev.reason ?? '')
          : '';
    rows.push([String(ev.time ?? '').replace('T', ' ').slice(0, 19), String(ev.event), String(ev.sub ?? ''), String(ev.target ?? ''), String(ev.session ?? ''), detail]);
  }
  printTable(rows);
  return 0;
}
