/** The model-based checker (see suite.ts) on a 3-master Redis Cluster. */

import { checkerSuite } from './suite.js';

checkerSuite('cluster');
