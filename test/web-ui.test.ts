// The web UI at /web, driven in real headless Chromium (Debian's chromium through playwright-core, no browser download):
// the Python console, a rollout with the scripted model (live phases, reward, trace viewer with logprob-coloured tokens),
// the trace browser and its JSONL download, the switch that turns the UI off, and the token.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { WebSocket as NodeWebSocket } from 'ws';
import { webServerFrameSchema, type WebServerFrame } from '../src/transports/http/web-protocol.js';
import { repoRoot } from './helpers/server.js';
import { startHttpServer, type HttpServerProcess } from './helpers/http-server.js';
import { exampleScript, exampleTask, startScripted, type ScriptedLlm } from './helpers/scripted.js';

// The page's globals, as far as the functions evaluated in it use them (the test project has no DOM lib).
interface PageElement {
  textContent: string | null;
  innerText: string;
}
declare const document: {
  querySelector(selector: string): PageElement | null;
  querySelectorAll(selector: string): { length: number };
  documentElement: { scrollWidth: number };
};
declare const window: { innerWidth: number; scrollTo(x: number, y: number): void };
declare const WebSocket: new (url: string) => { onopen: (() => void) | null; onclose: (() => void) | null };

const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOTS = path.join(repoRoot, '.test-tmp', 'screenshots');

async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  // From the top: the sticky header would otherwise be drawn where the page was scrolled to.
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

/** Types code into the console and runs it with Ctrl+Enter; returns the history entry once it finished. */
async function runPython(page: Page, code: string) {
  const before = await page.locator('#py-history > li[data-state]').count();
  await page.fill('#py-code', code);
  await page.press('#py-code', 'Control+Enter');
  await page.waitForFunction(
    (n) => document.querySelectorAll('#py-history > li[data-state]:not([data-state="running"])').length > n,
    before,
    {
      timeout: 120_000,
    },
  );
  return page.locator('#py-history > li[data-state]').first();
}

/** A raw client of /web/socket: every frame it receives must match the protocol's schema. */
async function openSocket(url: string) {
  const ws = new NodeWebSocket(url);
  const frames: WebServerFrame[] = [];
  const waiters: Array<() => void> = [];
  ws.on('message', (data: Buffer) => {
    frames.push(webServerFrameSchema.parse(JSON.parse(data.toString('utf8'))));
    for (const wake of waiters.splice(0)) wake();
  });
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  const next = async (predicate: (frame: WebServerFrame) => boolean): Promise<WebServerFrame> => {
    for (;;) {
      const found = frames.find(predicate);
      if (found) return found;
      await new Promise<void>((resolve) => waiters.push(resolve));
    }
  };
  return { ws, frames, next };
}

let browser: Browser;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium`);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
});

after(async () => {
  await browser?.close();
});

describe('the web UI', () => {
  let server: HttpServerProcess;
  let llm: ScriptedLlm;
  let page: Page;
  let rolloutId = '';

  before(async () => {
    [server, llm] = await Promise.all([startHttpServer(), startScripted(exampleScript('script.json'))]);
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('pageerror', (error) => console.error('page error:', error));
  });

  after(async () => {
    await page?.close();
    await Promise.allSettled([server?.stop(), llm?.close()]);
  });

  it('serves the page: / and /web redirect to /web/, files with their types, nothing outside resources/web', async () => {
    for (const from of ['/', '/web']) {
      const response = await fetch(`${server.url}${from}`, { redirect: 'manual' });
      assert.equal(response.status, 302, `${from} redirects`);
      assert.equal(response.headers.get('location'), '/web/', `${from} leads to /web/`);
    }
    const index = await fetch(`${server.url}/web/`);
    assert.equal(index.status, 200);
    assert.match(index.headers.get('content-type') ?? '', /^text\/html/);
    assert.equal(index.headers.get('cache-control'), 'no-cache');
    const etag = index.headers.get('etag');
    assert.ok(etag, 'an ETag for revalidation');
    assert.equal((await fetch(`${server.url}/web/`, { headers: { 'if-none-match': etag } })).status, 304, 'unchanged: 304');
    const script = await fetch(`${server.url}/web/app.js`);
    assert.match(script.headers.get('content-type') ?? '', /^text\/javascript/);
    assert.match((await fetch(`${server.url}/web/style.css`)).headers.get('content-type') ?? '', /^text\/css/);
    for (const sneaky of [
      '/web/..%2f..%2fpackage.json',
      '/web/%2e%2e/%2e%2e/package.json',
      '/web/.hidden',
      '/web/x%00.js',
      '/web/nope.js',
    ]) {
      assert.equal((await fetch(`${server.url}${sneaky}`)).status, 404, `${sneaky} is not served`);
    }
  });

  it('speaks its socket protocol: ready, results, and errors for bad frames, unknown tools and bad arguments', async () => {
    const socket = await openSocket(`${server.url.replace('http', 'ws')}/web/socket`);
    try {
      const ready = await socket.next((f) => f.type === 'ready');
      assert.ok(ready.type === 'ready' && ready.tools.includes('execute_python'), 'ready names the tools');
      socket.ws.send('not json');
      socket.ws.send(JSON.stringify({ type: 'call', id: 1 }));
      await socket.next((f) => f.type === 'error' && f.code === 'bad_frame' && socket.frames.filter((g) => g.type === 'error').length >= 2);
      socket.ws.send(JSON.stringify({ type: 'call', id: 'a', tool: 'execute_python', arguments: { code: 'print(1 + 1)' } }));
      socket.ws.send(JSON.stringify({ type: 'call', id: 'b', tool: 'no_such_tool', arguments: {} }));
      socket.ws.send(JSON.stringify({ type: 'call', id: 'c', tool: 'execute_python', arguments: { code: '' } }));
      const a = await socket.next((f) => f.type === 'result' && f.id === 'a');
      assert.ok(a.type === 'result' && a.ok && (a.value as { stdout: string }).stdout === '2\n', 'execute_python ran');
      const b = await socket.next((f) => f.type === 'result' && f.id === 'b');
      assert.ok(b.type === 'result' && !b.ok && b.error.class === 'invalid_input', 'unknown tool: invalid_input');
      const c = await socket.next((f) => f.type === 'result' && f.id === 'c');
      assert.ok(c.type === 'result' && !c.ok && /code/.test(c.error.message), 'invalid arguments name the field');
    } finally {
      socket.ws.terminate();
    }
  });

  it('runs Python in the console and keeps its state between runs', async () => {
    await page.goto(`${server.url}/web/#console`);
    await page.waitForSelector('#status[data-state="ready"]');
    let entry = await runPython(page, 'x = 41\nprint("set")');
    assert.equal(await entry.locator('.stdout').innerText(), 'set\n');
    entry = await runPython(page, 'print(x + 1)');
    assert.equal(await entry.locator('.stdout').innerText(), '42\n', 'x survived from the first run');
    assert.equal(await entry.getAttribute('data-exit-code'), '0');
    entry = await runPython(page, 'import sys\nprint("to stderr", file=sys.stderr)\n1 / 0');
    assert.equal(await entry.getAttribute('data-exit-code'), '1');
    assert.match(await entry.locator('.stderr').innerText(), /ZeroDivisionError/, 'stderr shown apart');
    await page.waitForFunction(() => document.querySelector('#py-state')?.textContent?.includes('step_count'));
    assert.match(await page.locator('#py-state').innerText(), /step_count\s+3/, 'get_state shown');
    await screenshot(page, 'console');
    await page.emulateMedia({ colorScheme: 'dark' });
    await screenshot(page, 'console-dark');
    await page.emulateMedia({ colorScheme: 'light' });

    await page.click('#py-reset');
    await page.waitForFunction(() => /step_count\s*0/.test(document.querySelector('#py-state')?.innerText ?? ''));
    entry = await runPython(page, 'print("x" in globals())');
    assert.equal(await entry.locator('.stdout').innerText(), 'False\n', 'reset discards the names');
  });

  it('runs a rollout with live phases, shows reward 1, and opens its trace with logprob-coloured tokens', async () => {
    const task = exampleTask();
    await page.goto(`${server.url}/web/#rollout`);
    await page.fill('#r-instruction', task.instruction as string);
    await page.fill('#r-base-url', llm.url);
    await page.fill('#r-model', 'scripted-model');
    await page.fill('#r-api-key', 'not-a-real-key');
    await page.fill('#r-test-script', task.test_script as string);
    await page.click('details.more > summary');
    await page.fill('#r-task-id', 'fizzbuzz');
    await page.check('#r-disable-thinking');
    await screenshot(page, 'rollout-form');
    await page.click('#rollout-run');

    // Live: a phase chip lights up and the log fills while the rollout runs, before any result.
    await page.waitForSelector('.phases li[data-state="active"]', { timeout: 60_000 });
    await page.waitForSelector('.log li.llm', { timeout: 300_000 });
    assert.equal(await page.locator('#rollout-result').count(), 0, 'progress arrived before the result');
    await screenshot(page, 'rollout-running');

    await page.waitForSelector('#rollout-result', { timeout: 600_000 });
    const log = await page.locator('.log').innerText();
    for (const phase of ['sandbox', 'agent', 'verify']) assert.match(log, new RegExp(`phase: ${phase}`), `the log shows phase ${phase}`);
    assert.equal(await page.locator('[data-testid="reward"] .value').innerText(), '1', 'reward 1');
    assert.match((await page.locator('[data-testid="reward"]').getAttribute('class')) ?? '', /tone-good/, 'coloured as a success');
    assert.equal(await page.locator('#rollout-result .error-box').count(), 0, 'no error');
    assert.ok(!(await page.content()).includes('not-a-real-key'), 'the API key is never echoed into the page');
    await screenshot(page, 'rollout-result');

    await page.click('text=Open trace →');
    await page.waitForSelector('#view-trace article.turn');
    rolloutId = decodeURIComponent(new URL(page.url()).hash.replace('#trace/', ''));
    assert.match(rolloutId, /^rollout-/);
    assert.ok((await page.locator('article.turn').count()) >= 3, 'the agent turns are shown');
    const tokens = page.locator('.tok[data-logprob]');
    assert.ok((await tokens.count()) > 0, 'completion tokens carry their logprobs');
    const first = tokens.first();
    assert.match((await first.getAttribute('style')) ?? '', /background/, 'tokens are shaded');
    assert.match((await first.getAttribute('title')) ?? '', /logprob -?\d/, 'the value is in the hover title');
    assert.ok((await page.locator('details.message[open]').count()) > 0, 'the last messages of a request are open');
    assert.ok((await page.locator('details.message:not([open])').count()) > 0, 'earlier messages are collapsed');
    assert.ok((await page.locator('.tool-call .name', { hasText: 'write' }).count()) > 0, 'tool calls are shown');
    await screenshot(page, 'trace-viewer');
    await page.emulateMedia({ colorScheme: 'dark' });
    await screenshot(page, 'trace-viewer-dark');
    await page.emulateMedia({ colorScheme: 'light' });
  });

  it('lists the trace in the browser and downloads it as JSONL', async () => {
    assert.ok(rolloutId, 'the rollout test ran first');
    await page.goto(`${server.url}/web/#traces`);
    const row = page.locator(`tr[data-rollout-id="${rolloutId}"]`);
    await row.waitFor();
    assert.match(await row.innerText(), /fizzbuzz/);
    await screenshot(page, 'trace-browser');
    const [download] = await Promise.all([page.waitForEvent('download'), row.locator('a[download]').click()]);
    assert.equal(download.suggestedFilename(), `${rolloutId}.jsonl`);
    const file = await download.path();
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
    const parsed = lines.map((line) => JSON.parse(line) as { type: string });
    assert.equal(parsed[0]?.type, 'header');
    assert.equal(parsed.at(-1)?.type, 'result');
    assert.ok(parsed.filter((line) => line.type === 'turn').length >= 3, 'every turn is a line');
    await row.locator('a', { hasText: 'View' }).click();
    await page.waitForSelector('#view-trace article.turn');
  });

  it('looks right on a phone', async () => {
    const phone = await browser.newPage({ viewport: { width: 390, height: 844 } });
    try {
      await phone.goto(`${server.url}/web/#rollout`);
      await phone.waitForSelector('#status[data-state="ready"]');
      const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `no sideways scrolling (${overflow}px too wide)`);
      await screenshot(phone, 'rollout-phone');
    } finally {
      await phone.close();
    }
  });
});

describe('the web UI switched off', () => {
  let server: HttpServerProcess;
  before(async () => {
    server = await startHttpServer({ ENABLE_WEB_INTERFACE: 'false' });
  });
  after(async () => {
    await server?.stop();
  });

  it('answers 404 at /web, /web/ and its API', async () => {
    for (const route of ['/web', '/web/', '/web/app.js', '/web/api/traces']) {
      assert.equal((await fetch(`${server.url}${route}`)).status, 404, `${route} is 404`);
    }
    assert.equal((await fetch(`${server.url}/health`)).status, 200, 'the rest of the server runs');
  });
});

describe('the web UI with a token', () => {
  const token = 'web-ui-test-token';
  let server: HttpServerProcess;
  let page: Page;
  before(async () => {
    server = await startHttpServer({ OPENCODE_ENV_TOKEN: token });
    page = await browser.newPage();
  });
  after(async () => {
    await page?.close();
    await server?.stop();
  });

  it('refuses the page, its files, its API and its socket without the token', async () => {
    for (const route of ['/web/', '/web/app.js', '/web/api/traces']) {
      assert.equal((await fetch(`${server.url}${route}`)).status, 401, `${route} wants the token`);
      assert.equal((await fetch(`${server.url}${route}?token=wrong`)).status, 401, `${route} refuses a wrong token`);
    }
    await page.goto(`${server.url}/web/`);
    assert.match(await page.content(), /token/, 'the 401 says what is missing');
    const socket = await page.evaluate(
      (url) =>
        new Promise<string>((resolve) => {
          const ws = new WebSocket(url);
          ws.onopen = () => resolve('open');
          ws.onclose = () => resolve('refused');
        }),
      `${server.url.replace('http', 'ws')}/web/socket`,
    );
    assert.equal(socket, 'refused', 'the socket is refused without the token');
  });

  it('works when opened with ?token=', async () => {
    await page.goto(`${server.url}/web/?token=${token}#console`);
    await page.waitForSelector('#status[data-state="ready"]');
    const entry = await runPython(page, 'print(6 * 7)');
    assert.equal(await entry.locator('.stdout').innerText(), '42\n');
    await page.click('a[data-tab="traces"]');
    await page.waitForSelector('#traces-empty:not([hidden])');
    assert.equal(await page.locator('#traces-table .form-error').count(), 0, 'the trace API took the token');
    assert.ok(page.url().includes(`token=${token}`), 'the token stays in the URL across views');
  });
});
