// Lines every protocol's replay renderer shows the same way.

/** One line per approval event (`approval.*`): requested, each vote, the outcome. */
export function approvalLine(o: Record<string, unknown>): string {
  const id = String(o.approval ?? '?');
  const secs = typeof o.waited_ms === 'number' ? ` after ${(o.waited_ms / 1000).toFixed(1)} s` : '';
  const why = o.reason ? `: ${String(o.reason)}` : '';
  switch (o.event) {
    case 'approval.requested':
      return `approval ${id} requested (rule ${String(o.rule ?? '')})`;
    case 'approval.approved_by':
    case 'approval.denied_by': {
      const v = (o.vote ?? {}) as Record<string, unknown>;
      return `approval ${id}: ${String(v.sub)} ${o.event === 'approval.approved_by' ? 'approved' : 'denied'}${v.reason ? `: ${String(v.reason)}` : ''}`;
    }
    case 'approval.approved':
      return `approval ${id} approved by ${((o.approvers as string[]) ?? []).join(', ')}${secs}${o.grant ? ' (standing fingerprint approval)' : ''}`;
    default:
      return `approval ${id} ${String(o.event).slice('approval.'.length)}${secs}${why}`;
  }
}
