// Replay is rendered by the protocol that recorded the session: one renderer
// per protocol behind this single entry point (SSH adds terminal playback).
import type { Frame } from './types.js';
import { renderPostgres, type ReplayOptions } from '../protocols/postgres/replay.js';
import { renderSsh } from '../protocols/ssh/replay.js';

export type Renderer = (frames: Iterable<Frame>, opts: ReplayOptions) => string[];

const renderers: Record<string, Renderer> = { postgres: renderPostgres, ssh: (frames) => renderSsh(frames) };

export function renderSession(protocol: string, frames: Iterable<Frame>, opts: ReplayOptions): string[] {
  const r = renderers[protocol];
  if (!r) return [`(no renderer for protocol ${protocol}; use --raw)`];
  return r(frames, opts);
}
