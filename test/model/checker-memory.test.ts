/** The model-based checker (see suite.ts) on the embedded memory broker. */

import { checkerSuite } from './suite.js';

checkerSuite('memory');
