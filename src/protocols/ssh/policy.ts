// What the statement policy says about an SSH session: decisions on command
// lines (exec and lines typed in a shell, analysed by src/policy/shell-facts.ts)
// and the per-policy `ssh:` options (shell, sftp mode, forwarding kinds), which
// src/policy/engine.ts resolves across the policies that apply.

import type { Session } from '../../session/session.js';
import { sshOptions as resolve, type SshOptions } from '../../policy/engine.js';
import { analyzeShell, isCommandFacts } from '../../policy/shell/facts.js';

export type { SshOptions };

/** The session's ssh options (re-read per request: a config reload applies to new channels). */
export function sshOptions(session: Session): SshOptions {
  return resolve(session.policy());
}

/**
 * Whether a command runs a shell or interpreter that reads its program from the
 * session's stdin (`bash`, `sh -s`): its input lines are then decided like a
 * shell's. Uses the facts of the decision just taken, when a policy decided it.
 */
export function readsCodeFromStdin(session: Session, line: string): boolean {
  const facts = session.gov.deciding && session.lastFacts ? session.lastFacts : analyzeShell(line);
  return facts.statements.some((s) => isCommandFacts(s) && s.stdin_code);
}

/** A legacy scp transfer (`scp -t DIR` upload, `scp -f FILE` download) with nothing else in the command. */
export function legacyScp(command: string): 'upload' | 'download' | null {
  if (!/^\s*scp\s/.test(command) || /[;&|`$<>(){}\n\\]/.test(command)) return null;
  const words = command.trim().split(/\s+/);
  let to = false;
  let from = false;
  for (const w of words.slice(1)) {
    if (w === '--') break;
    if (/^-[a-zA-Z]+$/.test(w)) {
      if (w.includes('t')) to = true;
      if (w.includes('f')) from = true;
    }
  }
  if (to === from) return null;
  return to ? 'upload' : 'download';
}
