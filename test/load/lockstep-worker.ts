/** Worker thread body for runLockstepInWorker: runs one lockstep load and posts its result. */

import { parentPort, workerData } from 'node:worker_threads';
import { type LockstepOptions, runLockstep } from './lockstep.js';

runLockstep(workerData as LockstepOptions).then(
  (result) => parentPort!.postMessage({ result }),
  (err: Error) => parentPort!.postMessage({ error: err.stack ?? String(err) }),
);
