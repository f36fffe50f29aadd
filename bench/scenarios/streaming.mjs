// @ts-check
// Scenario 3: SSE streaming, one request at a time, direct / floor / keypool (/ Portkey) interleaved.
// Judged: time to first chunk keypool adds over the honest floor. The
// upstream sends STREAM_CHUNKS chunks STREAM_GAP_MS apart; a proxy that buffers shows up as a later
// first chunk (TTFB) or as one read carrying several chunks (coalesced).
import { jsonHeaders, keyNames, signed, STREAM_BODY, STREAM_CHUNKS, STREAM_GAP_MS, CHAT_PATH } from '../lib/common.mjs';
import { portkeyHeaders, startPortkey } from '../lib/peers.mjs';
import { streamClient, timedStream } from '../lib/sse.mjs';
import { fmt, median, percentile, sortedCopy } from '../lib/stats.mjs';
import { startFloor, startKeypool } from '../lib/targets.mjs';

/** Target from issue 15: time to the first streamed chunk keypool adds over the honest floor, ms. */
export const TTFB_TARGET_MS = 0.1;

/**
 * @param {import('../lib/common.mjs').Ctx} ctx
 * @returns {Promise<import('../lib/common.mjs').SectionResult>}
 */
export async function streaming(ctx) {
  const { P, up0 } = ctx;
  const keys = keyNames('sk-stream', 3);
  const floor = await startFloor({ origin: up0.url, keys, name: 'floor-stream' });
  const kp = await startKeypool({ dir: ctx.dir, name: 'keypool-stream', upstreamUrl: up0.url, keysFile: ctx.keysFile('stream3', 'sk-stream', 3) });
  // Commit on content (issue 13): the head is held until the first event shows the stream is no error.
  const kpc = await startKeypool({ dir: ctx.dir, name: 'keypool-commit', upstreamUrl: up0.url, keysFile: ctx.keysFile('stream3', 'sk-stream', 3), upstreamExtra: ['commitOnContent: true'] });
  const pk = ctx.peers ? await startPortkey({ name: 'portkey-stream' }) : undefined;
  /** @type {Record<string, string>} */
  const plain = jsonHeaders('sk-stream-0');
  /** @type {{ name: string, client: import('undici').Client, headers: Record<string, string> }[]} */
  const targets = [
    { name: 'direct', client: streamClient(up0.url), headers: plain },
    { name: 'floor', client: streamClient(floor.url), headers: plain },
    { name: 'keypool', client: streamClient(kp.url), headers: plain },
    { name: 'keypool, commit on content', client: streamClient(kpc.url), headers: plain },
  ];
  if (pk) targets.push({ name: 'portkey', client: streamClient(pk.url), headers: portkeyHeaders(up0.url, keys) });
  try {
    const req = (/** @type {typeof targets[number]} */ t) => ({ path: CHAT_PATH, headers: t.headers, body: STREAM_BODY });
    for (const t of targets) await timedStream(t.client, req(t)); // warm the connections
    /** @type {Record<string, import('../lib/sse.mjs').StreamSample[]>} */
    const runs = Object.fromEntries(targets.map((t) => [t.name, []]));
    for (let i = 0; i < P.streamRequests; i++) {
      for (const t of targets) runs[t.name].push(await timedStream(t.client, req(t)));
    }
    const stat = (/** @type {string} */ name) => {
      const s = runs[name];
      const gaps = sortedCopy(s.flatMap((x) => x.gapsMs));
      return {
        ttfb: median(s.map((x) => x.ttfbMs)),
        head: median(s.map((x) => x.headersMs)),
        // Paired per request against the direct request of the same iteration.
        addedTtfb: median(s.map((x, i) => x.ttfbMs - runs.direct[i].ttfbMs)),
        overFloorTtfb: median(s.map((x, i) => x.ttfbMs - runs.floor[i].ttfbMs)),
        overKeypoolTtfb: median(s.map((x, i) => x.ttfbMs - runs.keypool[i].ttfbMs)),
        gapP1: percentile(gaps, 1),
        gapP50: percentile(gaps, 50),
        gapP99: percentile(gaps, 99),
        gapMax: gaps.length ? gaps[gaps.length - 1] : NaN,
        minChunks: Math.min(...s.map((x) => x.chunks)),
        maxChunks: Math.max(...s.map((x) => x.chunks)),
        readsPerReq: median(s.map((x) => x.reads)),
        coalescedReads: s.reduce((a, x) => a + (x.maxPerRead > 1 ? 1 : 0), 0),
        maxPerRead: Math.max(...s.map((x) => x.maxPerRead)),
        bad: s.filter((x) => x.status !== 200).length,
      };
    };
    const st = Object.fromEntries(targets.map((t) => [t.name, stat(t.name)]));
    const kpOverFloor = st.keypool.overFloorTtfb;
    const neverCoalesced = st.keypool.maxPerRead <= 1 && st.keypool.minChunks === STREAM_CHUNKS && st.keypool.maxChunks === STREAM_CHUNKS;

    /** @type {string[]} */
    const notes = [];
    for (const [name, s] of Object.entries(st)) {
      if (s.bad > 0) notes.push(`streaming: ${name} answered ${s.bad} requests with a non-200 status`);
      if (s.minChunks !== STREAM_CHUNKS || s.maxChunks !== STREAM_CHUNKS) notes.push(`streaming: ${name} delivered ${s.minChunks}-${s.maxChunks} chunks per request, expected ${STREAM_CHUNKS}`);
    }
    const details = [
      `| target | head ms | first chunk ms | added first chunk ms | over the floor ms | gap p1 / p50 / p99 / max ms | reads with a chunk, per request | requests with a coalesced read | chunks per request |`,
      `|---|---|---|---|---|---|---|---|---|`,
      ...Object.entries(st).map(
        ([name, s]) =>
          `| ${name} | ${fmt(s.head, 2)} | ${fmt(s.ttfb, 2)} | ${name === 'direct' ? '' : signed(s.addedTtfb)} | ${name === 'direct' || name === 'floor' ? '' : signed(s.overFloorTtfb)} | ${fmt(s.gapP1, 1)} / ${fmt(s.gapP50, 1)} / ${fmt(s.gapP99, 1)} / ${fmt(s.gapMax, 1)} | ${fmt(s.readsPerReq)} | ${s.coalescedReads} of ${runs[name].length} | ${s.minChunks === s.maxChunks ? s.minChunks : `${s.minChunks}-${s.maxChunks}`} |`,
      ),
      '',
      `${P.streamRequests} sequential requests per target, interleaved; the upstream sends ${STREAM_CHUNKS} chunks ${STREAM_GAP_MS} ms apart, then \`[DONE]\`. "First chunk" is request start to the first body bytes; "added" is the median of per-request differences from the direct request of the same iteration. A read carrying more than one chunk is a coalesced read.`,
    ].join('\n');
    return {
      title: `3. Streaming: ${STREAM_CHUNKS} chunks, ${STREAM_GAP_MS} ms apart, sequential requests`,
      rows: [
        { section: '3', metric: 'Time to first chunk keypool adds over the floor (ms)', value: signed(kpOverFloor), target: `≤ ${TTFB_TARGET_MS}`, pass: kpOverFloor <= TTFB_TARGET_MS },
        {
          section: '3',
          metric: 'Commit on content (head held for the first event): first chunk over keypool without it (ms)',
          value: signed(st['keypool, commit on content'].overKeypoolTtfb),
          target: '',
          pass: null,
        },
        { section: '3', metric: 'Time to first chunk added over direct, keypool \\| floor (ms)', value: `${signed(st.keypool.addedTtfb)} \\| ${signed(st.floor.addedTtfb)}`, target: '', pass: null },
        {
          section: '3',
          metric: 'Chunks coalesced or lost, keypool',
          value: `${st.keypool.coalescedReads} of ${runs.keypool.length} requests coalesced; ${st.keypool.minChunks === st.keypool.maxChunks ? st.keypool.minChunks : `${st.keypool.minChunks}-${st.keypool.maxChunks}`}/${STREAM_CHUNKS} chunks each`,
          target: 'never',
          pass: neverCoalesced,
        },
        ...(pk
          ? [
              {
                section: '3',
                metric: 'Portkey: first chunk over the floor (ms); coalesced requests',
                value: `${signed(st.portkey.overFloorTtfb)}; ${st.portkey.coalescedReads} of ${runs.portkey.length}, ${st.portkey.minChunks === st.portkey.maxChunks ? st.portkey.minChunks : `${st.portkey.minChunks}-${st.portkey.maxChunks}`}/${STREAM_CHUNKS} chunks each`,
                target: '',
                pass: null,
              },
            ]
          : []),
      ],
      details,
      notes,
    };
  } finally {
    await Promise.allSettled(targets.map((t) => t.client.close()));
    await Promise.all([floor.stop(), kp.stop(), kpc.stop(), pk?.stop()]);
  }
}
