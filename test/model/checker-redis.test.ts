/** The model-based checker (see suite.ts) on one server on Redis. */

import { checkerSuite } from './suite.js';

checkerSuite('redis');
