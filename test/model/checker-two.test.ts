/** The model-based checker (see suite.ts) on two servers sharing one Redis (publish on one, poll on either). */

import { checkerSuite } from './suite.js';

checkerSuite('two');
