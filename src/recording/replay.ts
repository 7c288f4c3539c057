// Replay is rendered by the protocol that recorded the session: each protocol
// module brings its renderer (ProtocolModule.render); this is the single entry
// point, given the modules, so the recording layer imports no protocol.
import type { Frame } from './types.js';
import type { ProtocolModule, ReplayOptions } from '../protocols/kit/module.js';

export function renderSession(modules: readonly ProtocolModule[], protocol: string, frames: Iterable<Frame>, opts: ReplayOptions): string[] {
  const m = modules.find((x) => x.protocol === protocol);
  if (!m) return [`(no renderer for protocol ${protocol}; use --raw)`];
  return m.render(frames, opts);
}
