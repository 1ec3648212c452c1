/**
 * A long-poll request while Holdfast holds it: a small state machine. The state changes in
 * one place only (PollHub.setState), checked against ALLOWED below, which also keeps the
 * parked count, the registry membership and the deadline wheel in step with the state.
 *
 *   Setup ──(nothing to send)──> Parked ──(message, timeout, drain)──> Writing ──> Done
 *     │  ^                          │                                    (socket took it all,
 *     │  └────(re-read: a wake that cannot be served from the notification) slow reader closed)
 *     └──(messages or gap at once, or refused)───────────────> Writing | Done
 *   any state but Done ──(client went away: onAborted)──> Done
 *
 * While in Setup the poll is already registered on its channels (interest before history), so
 * a notification that arrives mid-read sets `dirty` and the poll re-reads once parked.
 */

import type { Position } from '../cursor.js';
import type { AnswerFormat } from '../render.js';
import type { Res } from '../respond.js';
import type { WheelEntry } from '../timer-wheel.js';
import type { PositionGroup } from './registry.js';

export const enum PollState {
  /** Registered on its channels, reading history. */
  Setup,
  /** Waiting for a message, its deadline, or a drain. */
  Parked,
  /** Answered; the socket has not taken the whole body yet (deadline: LP_WRITE_TIMEOUT_MS). */
  Writing,
  Done,
}

/** ALLOWED[from] lists the states a poll may move to from `from`. */
const ALLOWED: readonly (readonly PollState[])[] = [
  /* Setup   */ [PollState.Parked, PollState.Writing, PollState.Done],
  /* Parked  */ [PollState.Setup, PollState.Writing, PollState.Done],
  /* Writing */ [PollState.Done],
  /* Done    */ [],
];

export function canMove(from: PollState, to: PollState): boolean {
  return ALLOWED[from]!.includes(to);
}

const STATE_NAMES = ['Setup', 'Parked', 'Writing', 'Done'];

export function stateName(state: PollState): string {
  return STATE_NAMES[state]!;
}

export class Poll implements WheelEntry {
  state = PollState.Setup;
  /** A notification arrived while the poll was reading: re-read before trusting the result. */
  dirty = false;
  /**
   * Per channel, what the client has seen; filled in by the first read. Never mutated, only
   * replaced: a single-channel poll parked at a position shares its group's array.
   */
  positions: readonly Position[] = [];
  /** The group of polls parked at the same position of the same channel (single-channel polls). */
  group: PositionGroup | undefined = undefined;
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
