/** Renders a benchmark report: markdown tables with ratios, and an SVG of latency percentiles. */

interface Report {
  date: string;
  quick: boolean;
  runs?: number;
  instructions?: Record<string, Record<string, { perDelivery: number; mainPerDelivery: number }>> | undefined;
  machine: { cpus: number; model?: string; kernel: string; node: string; pinned: boolean };
  sizes: Record<string, number>;
  results: Record<string, Record<string, any>>;
  skipped: Record<string, string>;
  seconds: number;
}

const fmt = (v: unknown) =>
  typeof v === 'number' ? (Number.isInteger(v) ? v.toLocaleString('en') : v.toFixed(v < 10 ? 2 : 1)) : v === undefined ? '–' : String(v);

/** For each scenario: the columns shown, and the key metric the ratio column compares. */
const TABLES: Record<string, { title: string; cols: [string, string][]; key: string; higherIsBetter: boolean }> = {
  park: { title: 'Parked polls: server RSS per parked poll', cols: [['polls', 'polls'], ['serverCount', 'server count'], ['stillParkedAfterHold', 'still parked'], ['bytesPerPoll', 'bytes / poll']], key: 'bytesPerPoll', higherIsBetter: false },
  fanout: { title: 'Fan-out: one publish to every parked poll', cols: [['answered', 'answered'], ['firstMs', 'first ms'], ['p50Ms', 'p50 ms'], ['p99Ms', 'p99 ms'], ['lastMs', 'last ms'], ['deliveriesPerSec', 'deliveries/s']], key: 'deliveriesPerSec', higherIsBetter: true },
  inbox: { title: 'Inbox: one message to each of N channels', cols: [['answered', 'answered'], ['deliveriesPerSec', 'deliveries/s'], ['p50Ms', 'p50 ms'], ['p99Ms', 'p99 ms'], ['maxMs', 'max ms']], key: 'deliveriesPerSec', higherIsBetter: true },
  inboxBatch: { title: 'Inbox, published in batches of 100 (POST /v1/publish)', cols: [['answered', 'answered'], ['deliveriesPerSec', 'deliveries/s'], ['p50Ms', 'p50 ms'], ['p99Ms', 'p99 ms'], ['maxMs', 'max ms']], key: 'deliveriesPerSec', higherIsBetter: true },
  steady: { title: 'Steady state: clients re-poll with their cursor under a fixed publish rate', cols: [['clients', 'clients'], ['deliveriesPerSec', 'deliveries/s'], ['p50Ms', 'p50 ms'], ['p99Ms', 'p99 ms'], ['maxMs', 'max ms'], ['complete', 'complete'], ['missing', 'lost'], ['duplicates', 'doubled']], key: 'deliveriesPerSec', higherIsBetter: true },
  fastpath: { title: 'Fast path (reqloop, 50 keep-alive connections)', cols: [['pollsPerSec', 'polls/s (message waiting)'], ['answerBytes', 'answer bytes'], ['publishesPerSec', 'publishes/s']], key: 'pollsPerSec', higherIsBetter: true },
};

/**
 * The headline table: each figure for Holdfast (memory, Redis), Nchan (memory, Redis) and raw
 * uWS, with Holdfast's ratio to raw uWS and to Nchan on the same store.
 */
export function renderSummary(r: Report): string {
  const R = r.results;
  const get = (scenario: string, target: string, key: string): number | undefined => {
    const v = R[scenario]?.[target];
    return v && !v.error && typeof v[key] === 'number' ? (v[key] as number) : undefined;
  };
  const ratio = (a?: number, b?: number, lowerIsBetter = false) => (a && b ? `${(lowerIsBetter ? b / a : a / b).toFixed(2)}` : '–');
  const HM = 'holdfast (memory)', HR = 'holdfast (redis)', NM = 'nchan (memory)', NR = 'nchan (redis)', U = 'raw uWS';
  const rows: string[] = [];
  const row = (label: string, scenario: string, key: string, opts: { lower?: boolean; uws?: boolean; nchanRef?: [string, string] } = {}) => {
    const [hm, hr, nm, nr, u] = [HM, HR, NM, NR, U].map((t) => get(scenario, t, key));
    const [nmRef, nrRef] = opts.nchanRef ? opts.nchanRef.map((s) => get(s, NM, key)) : [nm, nr];
    const cells = [hm, hr, nm, nr, u].map(fmt);
    const uws = opts.uws === false;
    rows.push(`| ${label} | ${cells.join(' | ')} | ${uws ? '–' : ratio(hm, u, opts.lower)} | ${ratio(hm, nmRef, opts.lower)} | ${uws ? '–' : ratio(hr, u, opts.lower)} | ${ratio(hr, opts.nchanRef ? get(opts.nchanRef[1], NR, key) : nrRef, opts.lower)} |`);
  };
  row(`fan-out deliveries/s, ${fmt(r.sizes.park)} polls`, 'fanout', 'deliveriesPerSec');
  row(`inbox deliveries/s, ${fmt(r.sizes.inbox)} channels`, 'inbox', 'deliveriesPerSec');
  row('inbox publish → delivery p99 ms', 'inbox', 'p99Ms', { lower: true });
  row('batch inbox deliveries/s (100 per publish; Nchan: its single-publish inbox)', 'inboxBatch', 'deliveriesPerSec', { uws: false, nchanRef: ['inbox', 'inbox'] });
  row('fast path polls/s (message waiting; raw uWS answers at once)', 'fastpath', 'pollsPerSec');
  row('RSS per parked poll, bytes', 'park', 'bytesPerPoll', { lower: true });
  const out = ['| figure | Holdfast (memory) | Holdfast (Redis) | Nchan (memory) | Nchan (Redis) | raw uWS | memory / raw uWS | memory / Nchan | Redis / raw uWS | Redis / Nchan-Redis |', '|---|---|---|---|---|---|---|---|---|---|', ...rows];
  out.push('', 'Ratios: above 1 means Holdfast is better (faster, or leaner / lower latency for bytes and p99). Batch inbox: Holdfast publishing 100 messages per request, against Nchan\'s single-publish inbox (Nchan has no batch publish).');
  return out.join('\n');
}

export function renderMarkdown(r: Report): string {
  const out: string[] = [];
  out.push(`Benchmark of ${r.date.slice(0, 10)}${r.quick ? ' (quick)' : ''}: ${r.machine.cpus} cores (${r.machine.model}), Linux ${r.machine.kernel}, Node ${r.machine.node}; ` +
    (r.machine.pinned ? 'server on core 0, load tools and Redis on core 1' : 'not pinned') +
    `; ${r.runs ?? 1} interleaved run${(r.runs ?? 1) > 1 ? 's, medians' : ''}; load = the 1-minute load average at each run (other work on this machine).`);
  out.push('', '### Summary', '', renderSummary(r));
  for (const [scenario, spec] of Object.entries(TABLES)) {
    const rows = r.results[scenario];
    if (!rows) continue;
    const ref = rows['holdfast (memory)']?.[spec.key] as number | undefined;
    const refRedis = rows['holdfast (redis)']?.[spec.key] as number | undefined;
    out.push('', `### ${spec.title}`, '');
    out.push(`| server | ${spec.cols.map(([, h]) => h).join(' | ')} | holdfast (memory) vs this | holdfast (redis) vs this | load |`);
    out.push(`|---|${spec.cols.map(() => '---').join('|')}|---|---|---|`);
    for (const [name, v] of Object.entries(rows)) {
      if (v.error) {
        out.push(`| ${name} | error: ${v.error} |`);
        continue;
      }
      const mine = v[spec.key] as number;
      const ratio = (h: number | undefined) => (h && mine ? `${(spec.higherIsBetter ? h / mine : mine / h).toFixed(2)}×` : '–');
      const load = Array.isArray(v.load) ? v.load.join(', ') : fmt(v.load);
      out.push(`| ${name} | ${spec.cols.map(([k]) => fmt(v[k])).join(' | ')} | ${ratio(ref)} | ${ratio(refRedis)} | ${load} |`);
    }
    out.push('', `Ratios compare ${spec.key}; above 1× means Holdfast is ${spec.higherIsBetter ? 'faster' : 'leaner'}.`);
  }
  if (r.instructions) {
    out.push('', '### Instructions per delivery (callgrind: user-space instructions of the server process)', '');
    const targets = ['holdfast (memory)', 'raw uWS'];
    out.push('| scenario | holdfast (memory) | raw uWS | holdfast / raw uWS | main thread: holdfast | main thread: raw uWS | holdfast / raw uWS |');
    out.push('|---|---|---|---|---|---|---|');
    for (const [scenario, rows] of Object.entries(r.instructions)) {
      const [h, u] = targets.map((t) => rows[t]);
      const ratio = (a?: number, b?: number) => (a && b ? `${(a / b).toFixed(2)}×` : '–');
      out.push(`| ${scenario} | ${fmt(h?.perDelivery)} | ${fmt(u?.perDelivery)} | ${ratio(h?.perDelivery, u?.perDelivery)} | ${fmt(h?.mainPerDelivery)} | ${fmt(u?.mainPerDelivery)} | ${ratio(h?.mainPerDelivery, u?.mainPerDelivery)} |`);
    }
    out.push('', 'Below 1× means Holdfast executes fewer instructions per delivery; fastpath is per answer. Kernel work (syscalls, TCP) is not counted.');
  }
  const streams = r.results.streams as { markdown?: string } | undefined;
  if (streams?.markdown) out.push('', streams.markdown);
  const skipped = Object.entries(r.skipped);
  if (skipped.length) out.push('', 'Skipped: ' + skipped.map(([n, why]) => `${n} (${why})`).join('; '));
  return out.join('\n') + '\n';
}

/** Grouped bars (log scale) of inbox delivery latency p50 / p99 / max per server. */
export function renderSvg(r: Report): string {
  const rows = Object.entries(r.results.inbox ?? {}).filter(([, v]) => !v.error);
  const W = 760, H = 360, left = 70, bottom = 90, top = 40;
  const plotH = H - top - bottom;
  const values = rows.flatMap(([, v]) => [v.p50Ms, v.p99Ms, v.maxMs]).filter((x) => x > 0);
  const lo = Math.pow(10, Math.floor(Math.log10(Math.min(...values, 1))));
  const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...values, 10))));
  const y = (ms: number) => top + plotH - (Math.log10(Math.max(ms, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo)) * plotH;
  const group = (W - left - 20) / Math.max(1, rows.length);
  const colors = ['#4c78a8', '#f58518', '#e45756'];
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  parts.push(`<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">Inbox delivery latency, publish → answer (ms, log scale), ${r.date.slice(0, 10)}</text>`);
  for (let d = lo; d <= hi; d *= 10) {
    parts.push(`<line x1="${left}" x2="${W - 20}" y1="${y(d)}" y2="${y(d)}" stroke="#ddd"/>`);
    parts.push(`<text x="${left - 6}" y="${y(d) + 4}" text-anchor="end">${d}</text>`);
  }
  rows.forEach(([name, v], i) => {
    const x0 = left + i * group + group * 0.15;
    const bw = (group * 0.7) / 3;
    [v.p50Ms, v.p99Ms, v.maxMs].forEach((ms: number, k: number) => {
      const yy = y(ms);
      parts.push(`<rect x="${x0 + k * bw}" y="${yy}" width="${bw - 2}" height="${top + plotH - yy}" fill="${colors[k]}"><title>${name} ${['p50', 'p99', 'max'][k]} ${ms.toFixed(2)} ms</title></rect>`);
    });
    parts.push(`<text x="${x0 + group * 0.35}" y="${top + plotH + 16}" text-anchor="middle">${name}</text>`);
  });
  ['p50', 'p99', 'max'].forEach((label, k) => {
    parts.push(`<rect x="${left + k * 70}" y="${H - 30}" width="12" height="12" fill="${colors[k]}"/><text x="${left + k * 70 + 16}" y="${H - 20}">${label}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}
