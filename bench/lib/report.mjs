// @ts-check
// The markdown report: machine header, one summary table with a pass/miss column, then each
// scenario's detail table and any anomalies seen.

/**
 * @param {{
 *   startedAt: Date, seconds: number, quick: boolean, only: string[], peers: string | undefined,
 *   machine: { node: string, nproc: string, cpu: string, revision: string },
 *   busyBefore: number, foreignCores: number,
 *   sections: import('./common.mjs').SectionResult[],
 *   failures: { name: string, error: string }[],
 * }} r
 */
export function renderReport(r) {
  const rows = r.sections.flatMap((s) => s.rows);
  const verdict = (/** @type {boolean|null} */ p) => (p === null ? '' : p ? 'pass' : '**miss**');
  const lines = [
    `# keypool bench${r.quick ? ' (BENCH_QUICK: harness check, short runs)' : ''}`,
    '',
    `- date: ${r.startedAt.toISOString()}; keypool ${r.machine.revision}`,
    `- node ${r.machine.node}, nproc ${r.machine.nproc}, CPU ${r.machine.cpu}`,
    `- the floor is bench/floor.mjs, the cheapest correct pass-through doing keypool's job (see bench/README.md); it passed its self-check (plain, stream, 429, cancel) before this run`,
    `- peers: ${r.peers ?? 'none (\`npm run bench -- --peers\` adds Portkey)'}`,
    `- load generator, fake upstream, floor and keypool share these cores; absolute rates swing between runs, the ratios (measured in one run, interleaved) are what count`,
    `- wall time ${Math.round(r.seconds)} s${r.only.length ? `; scenarios run: ${r.only.join(', ')}` : ''}`,
    `- other processes on the machine: ${r.busyBefore.toFixed(2)} cores busy in the second before the run, ${r.foreignCores.toFixed(2)} cores on average during it (figures near 0 mean the bench had the machine to itself)`,
    '',
    '| # | measure | value | target | result |',
    '|---|---|---|---|---|',
    ...rows.map((x) => `| ${x.section} | ${x.metric} | ${x.value} | ${x.target} | ${verdict(x.pass)} |`),
    ...r.failures.map((f) => `| – | scenario "${f.name}" failed | ${oneLine(f.error)} | | **error** |`),
    '',
  ];
  for (const s of r.sections) {
    lines.push(`## ${s.title}`, '', s.details, '');
    if (s.notes.length) lines.push(...s.notes.map((n) => `- note: ${n}`), '');
  }
  if (r.failures.length) {
    lines.push('## Failures', '');
    for (const f of r.failures) lines.push(`### ${f.name}`, '', '```', f.error, '```', '');
  }
  return lines.join('\n');
}

/** @param {string} s */
function oneLine(s) {
  const first = s.split('\n')[0] ?? '';
  return (first.length > 120 ? `${first.slice(0, 117)}...` : first).replace(/\|/g, '\\|');
}
