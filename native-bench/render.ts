/**
 * Renders a saved benchmark report again (markdown and SVG), e.g. after the report's layout
 * changed:  node --import tsx native-bench/render.ts native-bench/results/<date>.json
 */

import { readFileSync, writeFileSync } from 'node:fs';
import { renderMarkdown, renderSvg } from './report.js';

const file = process.argv[2];
if (!file) {
  console.error('usage: node --import tsx native-bench/render.ts native-bench/results/<date>.json');
  process.exit(2);
}
const report = JSON.parse(readFileSync(file, 'utf8'));
const md = renderMarkdown(report);
writeFileSync(file.replace(/\.json$/, '.md'), md);
writeFileSync(file.replace(/\.json$/, '.svg'), renderSvg(report));
console.log(md);
