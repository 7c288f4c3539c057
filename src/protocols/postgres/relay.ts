// The data path after authentication: both directions framed, forwarded as raw
// slices, with backpressure and one write per input chunk.

import type { Duplex } from 'node:stream';
import type { Session } from '../../session/session.js';
import { B, F, VALID_FRONTEND } from './constants.js';
import { Framer, ProtocolViolation, type FrameHandler } from './framer.js';
import { errorResponse, noticeResponse } from './messages.js';
import { PolicyGate } from './policy-gate.js';
import { Dir } from '../../recording/types.js';
import { PgMasker } from './masker.js';
import { CopyMasker } from './copy-masker.js';
import type { CatalogCache } from './catalog.js';
import { ClientText } from './encoding.js';
import { HOLD_APPROVAL, HOLD_DRAIN, HOLD_IO, HOLD_RECORDER } from '../kit/holds.js';

type Sock = Duplex & { setNoDelay?: (v: boolean) => void };


/** The close reason after the client's Terminate message (psql's \q, a driver's close()). */
export const CLIENT_TERMINATED = 'client ended the session';

/** Client bytes held behind a statement waiting for approval before the client is no longer read. */
const APPROVAL_HOLD_BYTES = 1 << 20;

export interface RelayOptions {
  maxMessage: number;
  onClose(reason: string): void;
  /**
   * Cancels whatever the upstream backend is running (a CancelRequest with the
   * upstream key). Called when the session ends while the server is still busy
   * with a request, so a client that vanishes mid-query (or a killed session)
   * does not leave its query running on the server.
   */
  cancelUpstream?(): void;
  /** Column names for masking rules; null when the target has none. */
  catalog?: CatalogCache | null;
  /** client_encoding as the server reported it at login (default UTF8). */
  clientEncoding?: string;
}

/**
 * Whether the server owes the client a ReadyForQuery: counts Query, Sync and
 * FunctionCall against ReadyForQuery, plus extended-protocol messages not yet
 * followed by a Sync (an Execute runs as soon as it arrives). After a Terminate
 * the client has left in order: what it sent before runs to completion, as it
 * would without Sluice.
 */
class Busy {
  pendingSyncs = 0;
  unsynced = false;
  terminated = false;
  get busy(): boolean {
    return !this.terminated && (this.pendingSyncs > 0 || this.unsynced);
  }
}

/** Frontend (client → server) inspection. Issue-level features hook in here. */
class FrontendHandler implements FrameHandler {
  /** Whether the policy gate asked for the message in progress (the COPY masker may have asked instead). */
  private gateWants = false;

  constructor(
    private readonly session: Session,
    private readonly state: Busy,
    private readonly gate: PolicyGate,
    private readonly copy: CopyMasker,
    /** The gate held the message for approval: the relay pauses the stream behind it. */
    private readonly onHold: () => void,
  ) {}

  wantsMessage(type: number, length: number): boolean {
    if (VALID_FRONTEND[type] !== 1) {
      throw new ProtocolViolation(`invalid frontend message type ${type} (0x${type.toString(16)})`);
    }
    // An Execute runs what its Parse (governed) prepared: counted here. A Query is counted by the gate.
    if (type === F.Execute) this.session.gov.pass();
    // Whether earlier requests may still change client_encoding before the server reads this one.
    this.gate.serverBusy = this.state.busy;
    if (type === F.Query || type === F.Sync || type === F.FunctionCall) {
      this.state.pendingSyncs++;
      this.state.unsynced = false;
    } else if (type === F.Parse || type === F.Bind || type === F.Execute || type === F.Describe || type === F.Close) {
      this.state.unsynced = true;
    } else if (type === F.Terminate) {
      this.state.terminated = true;
    }
    this.gateWants = this.gate.wants(type);
    if (this.gateWants || this.copy.wantsFrontend(type, length)) return true;
    this.gate.forwarded(type);
    this.copy.forwarded(type, null, 0, 0);
    return false;
  }

  onMessage(type: number, buf: Buffer, start: number, end: number): boolean {
    if (this.gateWants && !this.gate.onFrontend(type, buf, start, end)) {
      if (this.gate.held) this.onHold();
      return false;
    }
    this.gate.forwarded(type);
    this.copy.forwarded(type, buf, start, end);
    return true;
  }
}

/** Backend (server → client) inspection. */
class BackendHandler implements FrameHandler {
  constructor(
    private readonly state: Busy,
    private readonly gate: PolicyGate,
    private readonly masker: PgMasker,
    private readonly copy: CopyMasker,
    private readonly framer: () => Framer,
    private readonly onLookup: (p: Promise<void>) => void,
    /** A FATAL waiting for the next message boundary (kill switch mid-result), or null. */
    private readonly pendingKill: () => Buffer | null,
  ) {}

  /** The message being framed is the one a pending kill replaces. */
  private killing = false;

  wantsMessage(type: number): boolean {
    if (this.pendingKill()) {
      this.killing = true;
      return true;
    }
    if (this.copy.wantsBackend(type)) return true;
    if (type === B.ReadyForQuery) {
      if (this.state.pendingSyncs > 0) this.state.pendingSyncs--;
      this.gate.onReady();
      this.masker.flush();
      return false;
    }
    if (this.masker.wants(type)) return true;
    // Notifications pass unchanged: the client was given the backend's own pid.
    return type === B.ErrorResponse && this.gate.awaitingError;
  }

  /** Forwards the message unchanged (null) or a replacement instead. */
  private replace(r: Buffer | null): boolean {
    if (r === null) return true;
    this.framer().emit(r);
    return false;
  }

  onMessage(type: number, buf: Buffer, start: number, end: number): boolean {
    if (this.killing) {
      // The previous message is complete: the client gets the FATAL instead of this one.
      this.killing = false;
      const kill = this.pendingKill();
      if (kill) {
        this.framer().emit(kill);
        this.framer().pause();
      }
      return false;
    }
    if (this.copy.owns) {
      const r = this.copy.onBackend(type, buf, start, end);
      if (typeof r === 'boolean') return r;
      // The COPY's columns are being resolved: hold the stream (the masker emits the CopyOutResponse or an error).
      this.framer().pause();
      this.onLookup(r);
      return false;
    }
    switch (type) {
      case B.DataRow:
        return !this.masker.onDataRow(buf, start, end, this.framer().slab);
      case B.RowDescription: {
        const lookup = this.masker.onRowDescription(buf, start);
        if (lookup) {
          // Rows wait until their columns are known; the description itself goes out now.
          this.framer().pause();
          this.onLookup(lookup);
        }
        return true;
      }
      case B.ErrorResponse: {
        const mine = this.gate.awaitingError ? this.gate.replaceError(buf, start, end) : null;
        if (mine) return this.replace(mine);
        return this.replace(this.masker.onNotice(buf, start, end));
      }
      case B.NoticeResponse:
        return this.replace(this.masker.onNotice(buf, start, end));
    }
    return true;
  }
}

/** Writes a batch of slices as one writev; returns false when the destination is full. */
function writeBatch(dest: Sock, bufs: Buffer[]): boolean {
  if (bufs.length === 1) return dest.write(bufs[0]);
  dest.cork();
  let ok = true;
  for (const b of bufs) ok = dest.write(b);
  dest.uncork();
  return ok;
}

export class PgRelay {
  private readonly front: Framer;
  private readonly back: Framer;
  private closed = false;
  private serverGone = false;
  /** Set by terminate() while a server message is half relayed: sent at the next boundary. */
  private killAt: Buffer | null = null;
  private killReason = '';
  private readonly state = new Busy();
  private readonly gate: PolicyGate;

  constructor(
    private readonly client: Sock,
    private readonly server: Sock,
    private readonly session: Session,
    private readonly opts: RelayOptions,
  ) {
    // The client's encoding as the server reports it (the COPY masker follows ParameterStatus).
    const text = new ClientText(opts.clientEncoding);
    const masker = new PgMasker(session, opts.catalog ?? null, text);
    const copy = new CopyMasker(session, opts.catalog ?? null, masker, (b) => this.back.emit(b), { maxMessage: opts.maxMessage }, text);
    // The gate's marker statements reach the server too: the COPY masker counts them.
    const gate = new PolicyGate(
      session,
      {
        emit: (b) => {
          copy.forwarded(b[0]!, b, 0, b.length);
          this.front.emit(b);
        },
        notice: (b) => this.toClient(b),
        resumeClient: () => this.approvalSettled(),
      },
      text,
    );
    this.gate = gate;
    this.front = new Framer(new FrontendHandler(session, this.state, gate, copy, () => this.awaitApproval()), opts.maxMessage);
    // Backend messages are bounded by the server, not by our client limit (a row can be up to 1 GB).
    this.back = new Framer(
      new BackendHandler(this.state, gate, masker, copy, () => this.back, (p) => this.afterLookup(p), () => this.killAt),
      0x7fffffff,
    );
  }

  start(clientLeftover: Buffer, serverLeftover: Buffer): void {
    const { client, server } = this;
    client.on('data', (chunk: Buffer) => this.fromClient(chunk));
    server.on('data', (chunk: Buffer) => this.fromServer(chunk));
    client.on('end', () => this.socketClosed('client disconnected'));
    client.on('close', () => this.socketClosed('client disconnected'));
    client.on('error', (e: Error) => this.socketClosed(`client error: ${e.message}`));
    server.on('end', () => this.serverClosed('server closed the connection'));
    server.on('close', () => this.serverClosed('server closed the connection'));
    server.on('error', (e: Error) => this.serverClosed(`server error: ${e.message}`));
    if (serverLeftover.length) this.fromServer(serverLeftover);
    if (clientLeftover.length) this.fromClient(clientLeftover);
  }

  private fromClient(chunk: Buffer): void {
    this.session.bytesFromClient += chunk.length;
    // Exactly the bytes the client sent (copied into the recorder's batch).
    const rec = this.session.recorder;
    if (rec) {
      rec.record(Dir.ClientToGateway, chunk);
      if (rec.pressure) this.waitForRecorder();
    }
    try {
      this.front.push(chunk);
    } catch (err) {
      this.violation(err as Error);
      return;
    }
    const out = this.front.take();
    if (out.length && !writeBatch(this.server, out)) this.throttle(this.client, this.server);
    if (this.gate.held && this.front.heldBytes > APPROVAL_HOLD_BYTES) this.hold(this.client, HOLD_APPROVAL);
  }

  /**
   * The gate holds a statement for approval: the client stream stops behind it
   * (later messages wait in the framer, in order) until the pipeline settles it.
   * The client is still read, so a disconnect withdraws the request at once.
   */
  private awaitApproval(): void {
    this.front.pause();
  }

  /** The held statement was run or refused: the client's stream goes on. */
  private approvalSettled(): void {
    if (this.closed) return;
    try {
      this.front.resume();
    } catch (err) {
      this.violation(err as Error);
      return;
    }
    const out = this.front.take();
    this.release(this.client, HOLD_APPROVAL);
    if (out.length && !writeBatch(this.server, out)) this.throttle(this.client, this.server);
  }

  /** A CancelRequest for this session: withdraws a statement waiting for approval. True when it did. */
  cancelApproval(): boolean {
    const h = this.gate.held;
    if (!h || this.closed) return false;
    h.handle.withdraw('cancelled by the client');
    return true;
  }

  /** A message Sluice originates for the client, sent between server messages. */
  private toClient(buf: Buffer): void {
    if (this.closed) return;
    if (!this.back.idle) {
      // A server message is half relayed (a pipelined result): try again shortly.
      setTimeout(() => this.toClient(buf), 20).unref();
      return;
    }
    this.session.bytesToClient += buf.length;
    this.session.recorder?.record(Dir.GatewayToClient, buf);
    this.client.write(buf);
  }

  private fromServer(chunk: Buffer): void {
    try {
      this.back.push(chunk);
    } catch (err) {
      this.close(`server protocol error: ${(err as Error).message}`);
      return;
    }
    this.flushBack();
  }

  private flushBack(): void {
    const bytes = this.back.outBytes;
    const out = this.back.take();
    this.session.bytesToClient += bytes;
    // Exactly the bytes the client receives: after masking and policy errors.
    const rec = this.session.recorder;
    if (rec) {
      for (const b of out) rec.record(Dir.GatewayToClient, b);
      if (rec.pressure && !this.killAt) this.waitForRecorder();
    }
    if (out.length && !writeBatch(this.client, out)) this.throttle(this.server, this.client);
    if (this.killAt && this.back.isPaused) {
      // The FATAL went out at a message boundary: end the session now.
      this.killAt = null;
      this.client.end();
      this.close(this.killReason);
      return;
    }
    if (this.back.isPaused) this.hold(this.server, HOLD_IO);
  }

  /** A catalog lookup paused the server stream; continue once it settles. */
  private afterLookup(p: Promise<void>): void {
    p.then(
      () => {
        if (this.closed) return;
        this.back.resume();
        this.flushBack();
        if (!this.back.isPaused) this.release(this.server, HOLD_IO);
      },
      (err: Error) => {
        this.session.init.terminate(`masking could not resolve result columns (${err.message}); no unmasked data was sent`);
      },
    );
  }

  /** The recorder's buffer is filling: stop reading both sides until the writer catches up. */
  private waitForRecorder(): void {
    if ((this.holds.get(this.server) ?? 0) & HOLD_RECORDER) return;
    this.hold(this.server, HOLD_RECORDER);
    this.hold(this.client, HOLD_RECORDER);
    this.session.recorder!.whenDrained(() => {
      this.release(this.server, HOLD_RECORDER);
      this.release(this.client, HOLD_RECORDER);
    });
  }

  // Why a socket is not being read: bit flags, so backpressure and a pending
  // lookup (or approval) never resume each other's pause.
  private readonly holds = new Map<Sock, number>();

  private hold(src: Sock, why: number): void {
    const h = this.holds.get(src) ?? 0;
    if (h & why) return;
    this.holds.set(src, h | why);
    if (h === 0) src.pause();
  }

  private release(src: Sock, why: number): void {
    const h = (this.holds.get(src) ?? 0) & ~why;
    this.holds.set(src, h);
    if (h === 0 && !this.closed) src.resume();
  }

  /** Stops reading `src` until `dest` drains: a slow reader slows the sender, memory stays bounded. */
  private throttle(src: Sock, dest: Sock): void {
    if ((this.holds.get(src) ?? 0) & HOLD_DRAIN) return;
    this.hold(src, HOLD_DRAIN);
    dest.once('drain', () => this.release(src, HOLD_DRAIN));
  }

  private violation(err: Error): void {
    if (this.closed) return;
    const msg = errorResponse({ severity: 'FATAL', code: '08P01', message: `protocol violation: ${err.message}` });
    this.client.end(msg);
    this.close(`protocol violation: ${err.message}`);
  }

  /**
   * Ends the session from outside (kill switch, shutdown). The client gets a FATAL
   * message when that can be sent at a message boundary.
   */
  terminate(reason: string, sqlstate = '57P01'): void {
    if (this.closed) return;
    const fatal = errorResponse({ severity: 'FATAL', code: sqlstate, message: `terminating connection: ${reason}` });
    if (this.back.idle) {
      this.session.recorder?.record(Dir.GatewayToClient, fatal);
      this.client.end(fatal);
      this.close(reason);
      return;
    }
    // Mid-message: let the server's current message finish, then send the FATAL
    // in place of the next one. Reading resumes so that boundary comes; if it
    // does not come within a second, the connection is cut without a message.
    if (this.killAt) return;
    this.killAt = fatal;
    this.killReason = reason;
    for (const src of [this.server, this.client]) {
      this.holds.set(src, 0);
      src.resume();
    }
    setTimeout(() => {
      if (this.closed) return;
      this.client.end();
      this.close(reason);
    }, 1000).unref();
  }

  private serverClosed(reason: string): void {
    this.serverGone = true;
    this.socketClosed(reason);
  }

  /**
   * A socket ended. After the client's Terminate the server closes as soon as it
   * reads it, so either side's close may come first: both mean the client ended
   * the session. Without a Terminate, the first close names its side.
   */
  private socketClosed(reason: string): void {
    this.close(this.state.terminated ? CLIENT_TERMINATED : reason);
  }

  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    // Closing the socket does not stop a running query (Postgres notices a gone
    // client only when it next reads or writes), so cancel it first.
    if (!this.serverGone && this.state.busy) this.opts.cancelUpstream?.();
    this.server.destroy();
    // Let an already-queued FATAL reach the client, then drop it.
    if (!this.client.destroyed) {
      this.client.end();
      setTimeout(() => this.client.destroy(), 2000).unref();
    }
    this.opts.onClose(reason);
  }
}
