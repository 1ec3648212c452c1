/** GET and DELETE /v1/channels/<channel>: channel info and reset (publisher auth). */

import { checkChannel } from '../names.js';
import type { HttpRequest } from '../uws.js';
import { type ServerContext, fail } from './context.js';
import { pathSegment } from './request.js';
import { type Res, sendJson } from '../respond.js';

const PREFIX = '/v1/channels/';

function checkPublisher(ctx: ServerContext, res: Res, req: HttpRequest): void {
  ctx.publisher.check({
    authorization: req.getHeader('authorization'),
    remoteAddress: new Uint8Array(res.getRemoteAddress()),
    forwarded: req.getHeader('forwarded') !== '' || req.getHeader('x-forwarded-for') !== '',
  });
}

export function channelAdmin(ctx: ServerContext, action: 'info' | 'delete') {
  return (res: Res, req: HttpRequest): void => {
    const ch = checkChannel(pathSegment(req.getUrl().slice(PREFIX.length)));
    checkPublisher(ctx, res, req);
    res.onAborted(() => {
      res.closed = true;
    });
    const work = action === 'info' ? ctx.broker.channelInfo(ch) : ctx.broker.deleteChannel(ch);
    work.then(
      (info) => sendJson(res, 200, { ch: info.ch, epoch: info.epoch, lastSeq: info.lastSeq, retained: info.retained, pollers: ctx.hub.registry.countOn(ch) }, { noStore: true }),
      (err) => fail(ctx, res, err),
    );
  };
}

export { checkPublisher };
