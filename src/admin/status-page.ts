// GET /admin/ : the live status page, one self-contained HTML document (inline CSS and script, no CDN,
// no build step). It is served without data and without a guard: it holds nothing but code, and fetches
// the key and client tables from the (guarded) admin API itself. A CSP pins the inline script and style
// by hash and lets the page talk to this origin only.
import { createHash } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { STATUS_PAGE_SCRIPT } from './status-page-script.js';

const STYLE = `
:root { color-scheme: light; --fg: #1d2330; --muted: #687083; --line: #e3e6ec; --bg: #f6f7f9; --card: #fff;
  --ok: #1f8a4c; --cool: #b86e00; --unavail: #6d3fc0; --off: #c2352b; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; gap: 16px; align-items: baseline; padding: 14px 24px; background: var(--card); border-bottom: 1px solid var(--line); }
header h1 { font-size: 18px; margin: 0; }
.conn { font-size: 12px; padding: 2px 8px; border-radius: 10px; background: #eef0f4; }
.conn.ok { color: var(--ok); } .conn.bad { color: var(--off); } .conn.wait { color: var(--muted); }
#updated { color: var(--muted); font-size: 12px; margin-left: auto; }
main, #clients-section { padding: 0 24px; }
form#login { margin: 16px 24px; padding: 12px 16px; background: var(--card); border: 1px solid var(--line); border-radius: 8px; }
form#login input { font: inherit; padding: 4px 8px; width: 24em; }
form#login p { color: var(--muted); margin: 8px 0 0; }
h2 { font-size: 15px; margin: 20px 0 8px; display: flex; gap: 12px; align-items: baseline; }
.usummary { font-weight: normal; color: var(--muted); font-size: 13px; }
table { width: 100%; border-collapse: collapse; background: var(--card); border: 1px solid var(--line); border-radius: 8px; overflow: hidden; }
th, td { text-align: left; padding: 7px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: 12px; font-weight: 600; color: var(--muted); background: #fafbfc; }
tr:last-child td { border-bottom: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.kname { font-weight: 600; }
.kid, .reason, .hr, .model, .seen { color: var(--muted); font-size: 12px; }
.reason { margin-left: 6px; }
.badge { display: inline-block; min-width: 68px; text-align: center; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; color: #fff; }
.state-ok { background: var(--ok); } .state-cooling { background: var(--cool); }
.state-unavailable { background: var(--unavail); } .state-disabled { background: var(--off); } .state-unknown { background: var(--muted); }
.model-cooling { color: var(--cool); } .model-unavailable { color: var(--unavail); }
td.cooldown { width: 190px; white-space: nowrap; }
.bar { display: inline-block; width: 110px; height: 8px; background: #eceef2; border-radius: 4px; overflow: hidden; vertical-align: middle; }
.fill { height: 100%; background: var(--cool); width: 0; }
.left { margin-left: 8px; font-size: 12px; font-variant-numeric: tabular-nums; }
#no-clients { color: var(--muted); }
`;

const BODY = `<header><h1>keypool</h1><span id="conn" class="conn wait">connecting</span><span id="updated"></span></header>
<form id="login" hidden autocomplete="off"><label>Admin token <input id="token" type="password" autocomplete="off" required></label>
<button type="submit">Connect</button><p id="login-msg"></p></form>
<main id="upstreams"></main>
<section id="clients-section"><h2>Clients</h2>
<table id="clients"><thead><tr><th>Client</th><th>Requests</th><th>Req/min</th><th>In flight</th><th>Waiting</th><th>2xx</th><th>4xx</th><th>5xx</th><th>429s</th><th>Tokens in / out</th><th>Last seen</th></tr></thead><tbody></tbody></table>
<p id="no-clients">No client has been served yet.</p></section>`;

const hash = (text: string): string => `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;

export const STATUS_PAGE_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><link rel="icon" href="data:,"><title>keypool status</title>
<style>${STYLE}</style></head>
<body>
${BODY}
<script>${STATUS_PAGE_SCRIPT}</script>
</body></html>
`;

const CSP = [
  "default-src 'none'",
  `script-src ${hash(STATUS_PAGE_SCRIPT)}`,
  `style-src ${hash(STYLE)}`,
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

export function registerStatusPage(app: FastifyInstance): void {
  app.get('/admin/', async (_request, reply) =>
    reply
      .header('content-security-policy', CSP)
      .header('cache-control', 'no-store')
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .type('text/html; charset=utf-8')
      .send(STATUS_PAGE_HTML),
  );
  // Relative links in the page resolve against /admin/, so the bare path moves there.
  app.get('/admin', async (_request, reply) => reply.redirect('/admin/', 308));
}
