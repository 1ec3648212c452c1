/**
 * Is Redis answering? A connection can stay open while Redis answers nothing (a stopped
 * process, a frozen host, a partition that drops packets): ioredis then sees no error, only
 * commands that never return. Liveness turns that into a state:
 *
 *   answering ──(a command timed out, or a probe did)──> silent ──(a probe answered)──> answering
 *
 * A PING probe runs every second while answering (so /readyz notices a frozen Redis with no
 * traffic) and every 250 ms while silent (so recovery is noticed quickly). Probes that fail
 * for any other reason (the connection is down) change nothing: the connection's own state
 * says that.
 */

import type { Logger } from 'pino';
import { failureKind } from './failures.js';

const ANSWERING_PROBE_MS = 1000;
const SILENT_PROBE_MS = 250;

export interface LivenessEvents {
  /** Redis stopped answering. */
  silent(): void;
  /** Redis answers again after `awayMs` of silence. */
  answering(awayMs: number): void;
}

export class Liveness {
  private silentSince = 0;
  private probing = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    /** Sends a PING to every node that serves commands; rejects like a command. */
    private readonly probe: () => Promise<unknown>,
    private readonly timeoutMs: number,
    private readonly events: LivenessEvents,
    private readonly log: Logger | undefined,
    private readonly now: () => number = Date.now,
  ) {}

  get answering(): boolean {
    return this.silentSince === 0;
  }

  /** How long Redis has been silent (0 while it answers). */
  silentForMs(): number {
    return this.silentSince === 0 ? 0 : this.now() - this.silentSince;
  }

  start(): void {
    this.schedule();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** A command (not a probe) timed out. */
  timedOut(): void {
    if (this.silentSince !== 0) return;
    this.silentSince = this.now();
    this.log?.warn({ timeoutMs: this.timeoutMs }, 'redis stopped answering (LP_REDIS_COMMAND_TIMEOUT_MS passed); refusing requests until it answers');
    this.events.silent();
    this.reschedule();
  }

  private answered(): void {
    if (this.silentSince === 0) return;
    const awayMs = this.now() - this.silentSince;
    this.silentSince = 0;
    this.log?.warn({ awayMs }, 'redis answers again');
    this.events.answering(awayMs);
    this.reschedule();
  }

  private reschedule(): void {
    if (!this.timer) return;
    this.stop();
    this.schedule();
  }

  private schedule(): void {
    this.timer = setTimeout(() => this.tick(), this.silentSince === 0 ? ANSWERING_PROBE_MS : SILENT_PROBE_MS);
    this.timer.unref();
  }

  private tick(): void {
    this.timer = undefined;
    if (!this.probing) {
      this.probing = true;
      this.probe().then(
        () => {
          this.probing = false;
          this.answered();
        },
        (err: Error) => {
          this.probing = false;
          if (failureKind(err) === 'timeout') this.timedOut();
        },
      );
    }
    if (this.timer === undefined) this.schedule();
  }
}
