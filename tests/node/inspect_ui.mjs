// Drives the agent's inspection UI in headless Chromium, as a person would:
// list, detail, JSON pretty-printing and syntax errors, filters, replay and
// replay with modifications (rows arriving over the event stream), and the
// status page.
//
// Usage: node inspect_ui.mjs --web http://127.0.0.1:PORT --screenshot OUT.png
//          [--status-screenshot STATUS.png] [--timeout-ms 15000]
// Expects the agent to have captured, before it runs: POST /items?color=blue
// (JSON body with "name": "widget"), GET /health, and POST /broken with the
// invalid JSON body {"a": 1,, "b": 2}.
// Prints {"ok":true,...} on success; on a mismatch prints the failing step
// to stderr, saves OUT-failure.png, and exits 1.
// Chromium: $CHROMIUM or /usr/bin/chromium (Debian's package).

import { chromium } from 'playwright-core';

function parseArgs(argv) {
  const out = { timeoutMs: 15000 };
  const keys = { '--web': 'web', '--screenshot': 'screenshot', '--status-screenshot': 'statusScreenshot', '--timeout-ms': 'timeoutMs' };
  for (let i = 0; i < argv.length; i += 2) {
    const key = keys[argv[i]];
    if (!key || argv[i + 1] === undefined) throw new Error(`unknown or incomplete argument ${argv[i]}`);
    out[key] = key === 'timeoutMs' ? Number(argv[i + 1]) : argv[i + 1];
  }
  if (!out.web || !out.screenshot) throw new Error('usage: inspect_ui.mjs --web URL --screenshot PATH [--status-screenshot PATH]');
  out.web = out.web.replace(/\/+$/, '');
  return out;
}

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (e) {
  console.error(`inspect_ui: ${e.message}`);
  process.exit(2);
}
let step = 'start';
const pageErrors = [];   // uncaught exceptions: fail the run
const consoleErrors = []; // reported with a failure, for diagnosis

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

/**
 * Polls `fn` until it returns a truthy value; on timeout fails naming
 * `what` and, if given, what `seen()` reports (e.g. the rows shown).
 */
async function until(what, fn, seen) {
  const timeoutMs = opts.timeoutMs;
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e.message;
    }
    if (Date.now() > deadline) {
      const context = seen ? await seen().catch((e) => e.message) : last;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (saw: ${JSON.stringify(context)})`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Rows as shown, top to bottom. */
const rows = (page) => page.$$eval('[data-testid="request-row"]', (els) => els.map((e) => ({
  id: e.dataset.id, method: e.dataset.method, uri: e.dataset.uri, status: e.dataset.status,
})));
const text = (page, testid) => page.$eval(`[data-testid="${testid}"]`, (e) => e.textContent).catch(() => null);
const isItems = (r) => r.uri.split('?')[0] === '/items';

async function clickRow(page, id) {
  await page.click(`[data-testid="request-row"][data-id="${id}"]`);
  await until(`the detail pane to show request ${id}`, async () => (await text(page, 'detail-id')) === id);
}

async function run(browser) {
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });

  step = '1: open /inspect/http and wait for 3 rows';
  await page.goto(`${opts.web}/inspect/http`);
  const first = await until('at least 3 request rows', async () => {
    const r = await rows(page);
    return r.length >= 3 && r;
  }, () => rows(page));
  await page.evaluate(() => { window.__notReloaded = true; });

  step = '2: POST /items detail shows pretty JSON and the query parameter';
  const items = first.find((r) => r.method === 'POST' && isItems(r));
  check(items, `no POST /items row among ${JSON.stringify(first)}`);
  await clickRow(page, items.id);
  await page.click('[data-testid="request-tab-pretty"]');
  const body = await until('the request body to be pretty JSON', async () => {
    const t = await text(page, 'request-body');
    return t && t.includes('"name": "widget"') && t;
  });
  check(body.includes('\n  "'), `request body is not indented with 2 spaces: ${JSON.stringify(body)}`);
  const params = await page.$$eval('[data-testid="query-params"] tbody tr',
    (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
  check(params.some(([k, v]) => k === 'color' && v === 'blue'), `query params table lacks color=blue: ${JSON.stringify(params)}`);

  step = '3: /broken detail marks the JSON syntax error';
  const broken = first.find((r) => r.uri.split('?')[0] === '/broken');
  check(broken, `no /broken row among ${JSON.stringify(first)}`);
  await clickRow(page, broken.id);
  await until('a <mark> in the request body', () => page.$('[data-testid="request-body"] mark'));
  const err = await page.$eval('[data-testid="request-body"]', (box) => ({
    message: box.querySelector('[data-testid="request-body-error"]')?.textContent || '',
    source: box.querySelector('pre')?.textContent || '',
    mark: box.querySelector('mark').textContent,
  }));
  // The error is at the second comma of ",,": its line and column in the body as sent.
  const at = err.source.indexOf(',,') + 1;
  check(at > 0, `the body shown lacks ",,": ${JSON.stringify(err.source)}`);
  const before = err.source.slice(0, at);
  const line = before.split('\n').length;
  const column = at - before.lastIndexOf('\n');
  check(err.mark === ',', `the mark is around ${JSON.stringify(err.mark)}, not the second comma`);
  check(err.message.includes(`line ${line}, column ${column}`),
    `error message ${JSON.stringify(err.message)} does not say line ${line}, column ${column}`);

  step = '4: filters';
  const all = await rows(page);
  const wantItems = all.filter(isItems).map((r) => r.id).sort();
  await page.fill('[data-testid="filter"]', 'path:/items');
  await until(`only the ${wantItems.length} /items rows`, async () => {
    const ids = (await rows(page)).map((r) => r.id).sort();
    return JSON.stringify(ids) === JSON.stringify(wantItems);
  }, () => rows(page));
  await page.fill('[data-testid="filter"]', 'path:/items method:GET');
  await until('no rows for path:/items method:GET', async () => (await rows(page)).length === 0, () => rows(page));
  await page.fill('[data-testid="filter"]', '');
  await until(`all ${all.length} rows back`, async () => (await rows(page)).length === all.length);

  step = '5: replay POST /items';
  const known = new Set(all.map((r) => r.id));
  await clickRow(page, items.id);
  await page.click('[data-testid="replay"]');
  const replayed = await until('a new POST /items row from the event stream', async () => {
    const now = await rows(page);
    const fresh = now.filter((r) => !known.has(r.id));
    return now.length === all.length + 1 && fresh.length === 1 && fresh[0].method === 'POST' && isItems(fresh[0]) && fresh[0];
  }, () => rows(page));
  known.add(replayed.id);
  check(await page.evaluate(() => window.__notReloaded === true), 'the page reloaded');
  check((await rows(page))[0].id === replayed.id, 'the replayed row is not at the top');

  step = '6: replay with modifications';
  await page.click('[data-testid="replay-modified"]');
  await page.waitForSelector('[data-testid="edit-method"]', { timeout: opts.timeoutMs });
  await page.fill('[data-testid="edit-method"]', 'PUT');
  await page.fill('[data-testid="edit-uri"]', '/replayed?via=ui');
  const headers = await page.inputValue('[data-testid="edit-headers"]');
  await page.fill('[data-testid="edit-headers"]', `${headers.trimEnd()}\nX-Replay: modified`);
  await page.fill('[data-testid="edit-body"]', '{"name":"changed"}');
  await page.click('[data-testid="edit-send"]');
  const modified = await until('a new PUT /replayed?via=ui row', async () => {
    const banner = await page.$eval('[data-testid="error"]', (e) => (e.hidden ? '' : e.textContent));
    if (banner) throw new Error(`error banner: ${banner.trim()}`);
    return (await rows(page)).find((r) => !known.has(r.id) && r.method === 'PUT' && r.uri === '/replayed?via=ui');
  }, () => rows(page));
  await clickRow(page, modified.id);
  await page.click('[data-testid="request-tab-headers"]');
  const replayHeader = await until('X-Replay in the request headers', async () => {
    const pairs = await page.$$eval('[data-testid="request-headers"] tbody tr',
      (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
    return pairs.find(([k]) => k.toLowerCase() === 'x-replay');
  });
  check(replayHeader[1] === 'modified', `X-Replay is ${JSON.stringify(replayHeader[1])}, not "modified"`);
  await page.click('[data-testid="request-tab-pretty"]');
  await until('the modified body', async () => ((await text(page, 'request-body')) || '').includes('"name": "changed"'));
  const finalRows = (await rows(page)).length;

  step = '7: screenshots and the status page';
  await page.screenshot({ path: opts.screenshot, fullPage: true });
  await page.click('[data-testid="nav-status"]');
  await until('the /status path', async () => new URL(page.url()).pathname === '/status');
  await page.waitForSelector('[data-testid="tunnel-card"]', { timeout: opts.timeoutMs });
  const session = await text(page, 'session-status');
  check(session && session.trim(), 'the status page shows no session status');
  check(await page.evaluate(() => window.__notReloaded === true), 'going to /status reloaded the page');
  if (opts.statusScreenshot) await page.screenshot({ path: opts.statusScreenshot, fullPage: true });

  step = 'page errors';
  check(!pageErrors.length, `the page reported errors: ${pageErrors.join(' | ')}`);
  return { ok: true, rows: finalRows, replayed: replayed.id, modified: modified.id, session: session.trim() };
}

let browser;
let page;
try {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  const summary = await run(browser);
  console.log(JSON.stringify(summary));
  await browser.close();
  process.exit(0);
} catch (e) {
  console.error(`inspect_ui: FAIL at step ${step}: ${e.message}`);
  if (pageErrors.length) console.error(`inspect_ui: page errors: ${pageErrors.join(' | ')}`);
  if (consoleErrors.length) console.error(`inspect_ui: console errors: ${consoleErrors.join(' | ')}`);
  if (browser) {
    for (const ctx of browser.contexts()) for (const p of ctx.pages()) page = p;
    if (page) await page.screenshot({ path: opts.screenshot.replace(/(\.png)?$/, '-failure.png'), fullPage: true }).catch(() => {});
    await browser.close().catch(() => {});
  }
  process.exit(1);
}
