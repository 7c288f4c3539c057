// Approval webhooks: a signed JSON POST per approval event, retried with
// backoff. Webhooks only inform; nothing they answer can approve anything.
//
// Signature: `X-Sluice-Timestamp: <unix seconds>` and
// `X-Sluice-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`;
// receivers should reject timestamps older than a few minutes (replay).

import { createHmac } from 'node:crypto';
import { dirname } from 'node:path';
import type { SluiceConfig, WebhookConfig } from '../config/types.js';
import type { Logger } from '../observability/log.js';
import type { ApprovalView } from './approvals.js';
import { resolveSecret } from '../config/secrets.js';

export function signWebhook(secret: string, timestamp: number, body: string): string {
  return `v1=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/** A Slack-compatible message (incoming webhooks accept `text` plus `blocks`). */
function slackMessage(event: string, v: ApprovalView): Record<string, unknown> {
  const head =
    event === 'approval.requested'
      ? `:hourglass: *${v.sub}* asks to run a statement on *${v.target}* (rule ${v.rule}). Approve with \`sluice approvals approve ${v.id}\` or deny with \`sluice approvals deny ${v.id} --reason "..."\``
      : `Approval ${v.id} (${v.sub} on ${v.target}): *${v.status}*${v.reason ? ` (${v.reason})` : ''}`;
  const text = `${head}\n\`\`\`${v.statement.slice(0, 2800)}\`\`\``;
  return { text, blocks: [{ type: 'section', text: { type: 'mrkdwn', text } }] };
}

/** Webhook URLs often carry a token in their path (Slack): only the origin is logged. */
function origin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '(invalid URL)';
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms).unref());

export class WebhookSender {
  private readonly baseDir: string;

  constructor(
    private readonly cfg: SluiceConfig,
    private readonly log: Logger,
  ) {
    this.baseDir = dirname(cfg.source || '.');
  }

  /** Fire and forget: delivery runs in the background and is logged. */
  send(event: string, view: ApprovalView): void {
    for (const hook of this.cfg.approvals.webhooks) void this.deliver(hook, event, view);
  }

  private async deliver(hook: WebhookConfig, event: string, view: ApprovalView): Promise<void> {
    const payload = hook.format === 'slack' ? slackMessage(event, view) : { event, approval: view };
    const body = JSON.stringify(payload);
    let secret: string | undefined;
    try {
      secret = hook.secret ? await resolveSecret(hook.secret, this.baseDir, { label: `approvals.webhooks ${hook.url} secret` }) : undefined;
    } catch (err) {
      this.log.error({ event: 'webhook.failed', url: origin(hook.url), approval: view.id, err: (err as Error).message }, 'webhook not sent: its secret cannot be read');
      return;
    }
    let lastError = '';
    for (let attempt = 0; attempt <= hook.retries; attempt++) {
      if (attempt > 0) await sleep(Math.min(500 * 2 ** (attempt - 1), 30_000));
      const ts = Math.floor(Date.now() / 1000);
      const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'sluice-webhook/1', 'x-sluice-event': event, 'x-sluice-timestamp': String(ts) };
      if (secret) headers['x-sluice-signature'] = signWebhook(secret, ts, body);
      try {
        const res = await fetch(hook.url, { method: 'POST', headers, body, signal: AbortSignal.timeout(hook.timeout) });
        await res.arrayBuffer().catch(() => {});
        if (res.ok) {
          this.log.debug({ event: 'webhook.sent', url: origin(hook.url), approval: view.id, kind: event, attempt }, 'webhook delivered');
          return;
        }
        lastError = `HTTP ${res.status}`;
        // A client error other than rate limiting will not get better by retrying.
        if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) break;
      } catch (err) {
        lastError = (err as Error).message;
      }
    }
    this.log.error({ event: 'webhook.failed', url: origin(hook.url), approval: view.id, kind: event, err: lastError }, `webhook to ${origin(hook.url)} failed (${lastError}); approvers must use the CLI or the admin API`);
  }
}
