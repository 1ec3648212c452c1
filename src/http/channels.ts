/** GET and DELETE /v1/channels/<channel>: channel info and reset (publisher auth). */

import { checkChannel } from '../names.js';
import type { HttpRequest } from '../uws.js';
import { type ServerContext, fail } from './context.js';
import { pathSegment } from './request.js';
import { type Res, sendJson } from '../respond.js';

const PREFIX = '/v1/channels/';

export function channelAdmin(ctx: ServerContext, action: 'info' | 'delete') {
  return (res: Res, req: HttpRequest): void => {
    const ch = checkChannel(pathSegment(req.getUrl().slice(PREFIX.length)));
    ctx.publisher.authorize(req, res);
    res.onAborted(() => {
      res.closed = true;
    });
    const work = action === 'info' ? ctx.channels.channelInfo(ch) : ctx.channels.deleteChannel(ch);
    work.then(
      (info) => sendJson(res, 200, { ch: info.ch, epoch: info.epoch, lastSeq: info.lastSeq, retained: info.retained, pollers: ctx.hub.registry.countOn(ch) }, { noStore: true }),
      (err) => fail(ctx, res, err),
    );
  };
}
