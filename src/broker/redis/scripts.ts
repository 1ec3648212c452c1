/** The Lua scripts (one file each under lua/), with common.lua prepended, ready for defineCommand. */

import { readFileSync } from 'node:fs';

const dir = new URL('./lua/', import.meta.url);
const common = readFileSync(new URL('common.lua', dir), 'utf8');

function script(name: string): string {
  return `${common}\n${readFileSync(new URL(`${name}.lua`, dir), 'utf8')}`;
}

export const SCRIPTS = {
  hfPublish: { numberOfKeys: 4, lua: script('publish') },
  hfRead: { numberOfKeys: 3, lua: script('read') },
  hfDelete: { numberOfKeys: 2, lua: script('delete') },
  hfInfo: { numberOfKeys: 3, lua: script('info') },
  hfQueue: { numberOfKeys: 1, lua: script('queue') },
  hfAudit: { numberOfKeys: 3, lua: script('audit') },
} as const;
