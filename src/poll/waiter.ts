/**
 * A waiter: something the hub delivers to while it follows channels from a cursor. A long
 * poll is answered once; an SSE or WebSocket stream stays, re-armed at its new position after
 * every delivery. Its state changes in one place only (PollHub.setState), checked against
 * ALLOWED below, which also keeps the parked count, the registry membership and the deadline
 * wheel in step with the state.
 *
 *   Setup ──(nothing to send)──> Parked ──(message, timeout, drain)──> Writing ──> Done
 *     │  ^                        │  ^ │                               (socket took it all,
 *     │  └──(re-read: a wake the   │  └─┘ stream: delivered,            slow reader closed)
 *     │     notification cannot    │      re-armed at its new position
 *     │     serve)                 └──(stream ended: deadline, drain, backpressure)──> Done
 *     └──(messages or gap at once, or refused)────────────────> Writing | Parked | Done
 *   any state but Done ──(client went away)──> Done
 *
 * While in Setup the waiter is already registered on its channels (interest before history),
 * so a notification that arrives mid-read is seen (the channels' wake stamp moved) and the
 * waiter re-reads before it parks.
 */

import type { Position } from '../cursor.js';
import type { AnswerFormat } from '../render.js';
import type { HoldfastError } from '../errors.js';
import type { Sent } from '../respond.js';
import type { WheelEntry } from '../timer-wheel.js';
import type { PositionGroup } from './registry.js';

export const enum WaiterState {
  /** Registered on its channels, reading history. */
  Setup,
  /** Waiting for a message, its deadline, or a drain. */
  Parked,
  /**
   * A poll answered: off the registry and the wheel while its body is written; back on the
   * wheel at LP_WRITE_TIMEOUT_MS when its socket could not take the whole body at once.
   */
  Writing,
  Done,
}

/** ALLOWED[from] lists the states a waiter may move to from `from`. */
const ALLOWED: readonly (readonly WaiterState[])[] = [
  /* Setup   */ [WaiterState.Parked, WaiterState.Writing, WaiterState.Done],
  /* Parked  */ [WaiterState.Setup, WaiterState.Parked, WaiterState.Writing, WaiterState.Done],
  /* Writing */ [WaiterState.Done],
  /* Done    */ [],
];
/** The same table as bit masks (checked on every answer). */
const ALLOWED_MASKS: readonly number[] = ALLOWED.map((tos) => tos.reduce((mask, to) => mask | (1 << to), 0));

export function canMove(from: WaiterState, to: WaiterState): boolean {
  return ((ALLOWED_MASKS[from]! >>> to) & 1) === 1;
}

const STATE_NAMES = ['Setup', 'Parked', 'Writing', 'Done'];

export function stateName(state: WaiterState): string {
  return STATE_NAMES[state]!;
}

/** Why a stream ends without an error of its own. */
export type EndReason = 'expired' | 'drain';

/**
 * How the hub talks to one kind of waiter (long poll, SSE, WebSocket): given by the HTTP
 * layer, so the hub imports no HTTP code. One object per kind, shared by its waiters.
 */
export interface Transport<W extends Waiter = Waiter> {
  readonly kind: 'poll' | 'sse' | 'ws';
  /** A stream stays registered after a delivery; a poll is answered once. */
  readonly streams: boolean;
  /** The first read succeeded: a stream may open (SSE writes its headers); nothing for polls. */
  start(w: W): void;
  /**
   * Writes an answer rendered in `w.format`. Pending (a poll whose socket could not take it
   * all) keeps it in Writing; a stream never answers Pending: it closes a slow reader itself
   * and answers SlowClosed.
   */
  write(w: W, body: Buffer): Sent;
  /** Ends a waiter that never got an answer with an error (503, LP_MAX_PARKED). */
  reject(w: W, err: HoldfastError): void;
  /** Ends a stream: its deadline (LP_STREAM_MAX_S, token expiry) passed, or the server drains. */
  end(w: W, why: EndReason): void;
  /** A poll's answer was not written within LP_WRITE_TIMEOUT_MS: close it. True if it was open. */
  closeSlow(w: W): boolean;
}

export abstract class Waiter implements WheelEntry {
  state = WaiterState.Setup;
  /** The registry's wake stamp of its channels when its read began (see PollRegistry.wakes). */
  readStamp = 0;
  /**
   * Per channel, what the client has seen; filled in by the first read. Never mutated, only
   * replaced: a single-channel waiter parked at a position shares its group's array.
   */
  positions: readonly Position[] = [];
  /** The group of waiters parked at the same position of the same channel (single channel). */
  group: PositionGroup | undefined = undefined;
  /** Links in the group's member list. */
  groupPrev: Waiter | null = null;
  groupNext: Waiter | null = null;
  wheelSlot = -1;
  wheelPrev: WheelEntry | null = null;
  wheelNext: WheelEntry | null = null;

  constructor(
    readonly transport: Transport,
    /** Never mutated; the registry may swap in an equal shared array. */
    public channels: readonly string[],
    readonly max: number,
    readonly format: AnswerFormat,
    /** A poll's hold; a stream's end (LP_STREAM_MAX_S or its token's expiry). */
    public deadline: number,
  ) {}
}
