/**
 * A long poll while Holdfast holds it: a waiter answered once, on its own HTTP response.
 * The state machine it follows is the waiter's (see waiter.ts).
 */

import type { Encoding } from '../compress/accept.js';
import type { AnswerFormat } from '../render.js';
import type { Res } from '../respond.js';
import { type Transport, Waiter } from './waiter.js';

export class Poll extends Waiter {
  constructor(
    transport: Transport<Poll>,
    readonly res: Res,
    channels: readonly string[],
    max: number,
    format: AnswerFormat,
    deadline: number,
    /** The compression the client accepts (Accept-Encoding), if any. */
    readonly encoding: Encoding | undefined = undefined,
  ) {
    super(transport as Transport, channels, max, format, deadline);
  }
}
