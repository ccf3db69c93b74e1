// Runs one opencode agent through `opencode serve`, warmed before the prompt is known (the warm pool's in-sandbox end).
//
//   node opencode-serve-driver.mjs <opencode> <workdir> <warm-up dir>
//
// Starts `opencode serve` on a free loopback port (its environment: this process's, with the LLM URL already filled
// in by the bridge around it) and warms it on a project instance of its own, for <warm-up dir>: everything opencode
// loads once per process is loaded, but <workdir>'s instance, which reads the configuration (and so the model), is not
// made yet. Then it prints `{"type":"opencode-env.ready",...}` and answers pings on stdin (below) until a line
// `{"prompt": "...", "model": "llm/<id>"}`. It then creates the session in <workdir> and posts the prompt to it as
// `opencode run` does, and prints the agent's events as `opencode run --format json` does (step_start, text, tool_use,
// step_finish, error), one JSON line each, until the session is idle. Exit status: 0, or 1 when opencode reported an
// error (as `opencode run`), 2 when the driver itself failed. serve dies with it.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import readline from 'node:readline';

const [opencode, workdir, warmUpDir] = process.argv.slice(2);
if (!opencode || !workdir || !warmUpDir) {
  process.stderr.write('usage: node opencode-serve-driver.mjs <opencode> <workdir> <warm-up dir>\n');
  process.exit(64);
}
const started = performance.now();
const print = (line) => process.stdout.write(`${JSON.stringify(line)}\n`);
const fail = (message) => {
  process.stderr.write(`opencode-serve-driver: ${message}\n`);
  serve?.kill('SIGKILL');
  process.exit(2);
};

// opencode resolves paths against $PWD, not its working directory.
const serve = spawn(opencode, ['serve', '--port', '0', '--hostname', '127.0.0.1'], {
  cwd: workdir,
  env: { ...process.env, PWD: workdir },
  stdio: ['ignore', 'pipe', 'inherit'],
});
serve.on('error', (error) => fail(`cannot run ${opencode}: ${error.message}`));
serve.on('exit', (code, signal) => fail(`opencode serve exited (${signal ?? `code ${code}`})`));
for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(signal, () => fail(`got ${signal}`));

const base = await new Promise((resolve) => {
  let seen = '';
  const onData = (chunk) => {
    seen += chunk.toString('utf8');
    const match = /https?:\/\/127\.0\.0\.1:\d+/.exec(seen);
    if (!match) return;
    serve.stdout.off('data', onData);
    serve.stdout.resume(); // its later log lines are not ours to read
    resolve(match[0]);
  };
  serve.stdout.on('data', onData);
});

async function call(directory, method, route, body) {
  const response = await fetch(`${base}${route}${route.includes('?') ? '&' : '?'}directory=${encodeURIComponent(directory)}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${route}: HTTP ${response.status} ${text.slice(0, 300)}`);
  return text ? JSON.parse(text) : null;
}

// The session `opencode run` makes: nobody is there to answer a question or to switch plans.
const deny = (permission) => ({ permission, action: 'deny', pattern: '*' });
const newSession = async (directory) =>
  (await call(directory, 'POST', '/session', { permission: [deny('question'), deny('plan_enter'), deny('plan_exit')] })).id;

let warmUpSession;
try {
  // What `opencode run` makes the server load before its first model call (the config, agents, providers, a session),
  // on the warm-up instance: the code paths are loaded and compiled, <workdir>'s instance is left to the prompt.
  const warmUp = (method, route) => call(warmUpDir, method, route);
  await Promise.all([warmUp('GET', '/config'), warmUp('GET', '/agent'), warmUp('GET', '/config/providers')]);
  warmUpSession = await newSession(warmUpDir);
} catch (error) {
  fail(`warming opencode serve failed: ${error.message}`);
}
print({ type: 'opencode-env.ready', ms: Math.round(performance.now() - started) });

/** serve's resident memory in MiB (Linux), or null where it cannot be read. */
function serveRssMiB() {
  try {
    const kib = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${serve.pid}/status`, 'utf8'));
    return kib ? Math.round(Number(kib[1]) / 1024) : null;
  } catch {
    return null;
  }
}

// While it waits: `{"ping": n}` is answered with `opencode-env.pong` once serve has answered a request (with its
// memory), so the pool can replace one that stopped answering or grew; the first other line is the prompt.
const lines = readline.createInterface({ input: process.stdin });
const request = await new Promise((resolve) => {
  lines.on('line', (line) => {
    const message = JSON.parse(line);
    if (message.ping === undefined) return resolve(message);
    call(warmUpDir, 'GET', `/session/${warmUpSession}`).then(
      () => print({ type: 'opencode-env.pong', ping: message.ping, rss_mib: serveRssMiB() }),
      () => undefined,
    );
  });
  lines.once('close', () => resolve(null));
});
lines.removeAllListeners('line');
if (request === null) fail('no prompt on stdin');
const { prompt, model } = request;
const slash = model.indexOf('/');

let session;
try {
  session = await newSession(workdir); // <workdir>'s instance is made now, with the model bound by then
} catch (error) {
  fail(`creating the session failed: ${error.message}`);
}
// Events first, then the prompt: nothing the session does may come before the subscription.
const events = await fetch(`${base}/event?directory=${encodeURIComponent(workdir)}`, { headers: { accept: 'text/event-stream' } });
let failed = false;
const emit = (type, data) => print({ type, timestamp: Date.now(), sessionID: session, ...data });
const decoder = new TextDecoder();
let buffer = '';
const reader = events.body.getReader();
const posted = call(workdir, 'POST', `/session/${session}/message`, {
  model: { providerID: model.slice(0, slash), modelID: model.slice(slash + 1) },
  parts: [{ type: 'text', text: prompt }],
}).catch((error) => {
  failed = true;
  emit('error', { error: { name: 'DriverError', data: { message: error.message } } });
});

for (let idle = false; !idle;) {
  const { value, done } = await reader.read();
  if (done) fail('the event stream ended before the session was idle');
  buffer += decoder.decode(value, { stream: true });
  let end;
  while ((end = buffer.indexOf('\n\n')) >= 0) {
    const block = buffer.slice(0, end);
    buffer = buffer.slice(end + 2);
    const data = block
      .split('\n')
      .filter((line) => line.startsWith('data:'))
      .map((line) => line.slice(5).trimStart())
      .join('\n');
    if (!data) continue;
    const event = JSON.parse(data);
    const properties = event.properties ?? {};
    if (event.type === 'message.part.updated') {
      const part = properties.part;
      if (part?.sessionID !== session) continue;
      if (part.type === 'tool' && (part.state?.status === 'completed' || part.state?.status === 'error')) emit('tool_use', { part });
      else if (part.type === 'step-start') emit('step_start', { part });
      else if (part.type === 'step-finish') emit('step_finish', { part });
      else if (part.type === 'text' && part.time?.end) emit('text', { part });
    } else if (event.type === 'session.error' && (properties.sessionID === undefined || properties.sessionID === session)) {
      failed = true;
      emit('error', { error: properties.error });
    } else if (event.type === 'session.idle' && properties.sessionID === session) {
      idle = true;
    }
  }
}
await posted;
serve.removeAllListeners('exit');
serve.kill('SIGKILL');
process.exit(failed ? 1 : 0);
