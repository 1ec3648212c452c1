/**
 * A long-poll request while Holdfast holds it: a small state machine.
 *
 *   Setup ──(nothing to send)──> Parked ──(message, timeout, drain)──> Done
 *     │  ^                          │
 *     │  └────(re-read: wake that cannot be served from the notification)
 *     └──(messages or gap at once)─────────────────────────────────────> Done
 *   Done ──(socket full)──> Writing ──(drained)──> (closed) or ──(LP_WRITE_TIMEOUT_MS)──> closed as slow
 *   any state ──(client went away: onAborted)──> Done
 *
 * While in Setup the poll is already registered on its channels (interest before history), so
 * a notification that arrives mid-read sets `dirty` and the poll re-reads once parked.
 */

import type { Position } from '../cursor.js';
import type { Res } from '../respond.js';
import type { AnswerFormat } from '../render.js';
import type { WheelEntry } from '../timer-wheel.js';

export const enum PollState {
  Setup,
  Parked,
  /** Answered, but the socket has not taken the whole body yet. */
  Writing,
  Done,
}

export class Poll implements WheelEntry {
  state = PollState.Setup;
  /** A notification arrived while the poll was reading: re-read before trusting the result. */
  dirty = false;
  /**
   * Per channel, what the client has seen; filled in by the first read. Never mutated, only
   * replaced, so single-channel polls at the same place share one array (see PollRegistry).
   */
  positions: readonly Position[] = [];
  wheelSlot = -1;
  wheelPrev: WheelEntry | null = null;
  wheelNext: WheelEntry | null = null;

  constructor(
    readonly res: Res,
    /** Never mutated; the registry may swap in an equal shared array. */
    public channels: readonly string[],
    readonly max: number,
    readonly format: AnswerFormat,
    public deadline: number,
  ) {}
}
