import { agentRuns, IDLE_AGENT, PY_LLM_CLIENT, python } from '../agent.js';
import type { Case } from '../harness.js';
import { KEYS } from '../secrets.js';
import { resultText } from '../server.js';
import type { RecordedRequest } from '../upstreams.js';

/** How an Authorization header looks in the table: never the key itself. */
function describeAuth(requests: RecordedRequest[]): string {
  const values = new Set(
    requests.map((q) =>
      q.authorization === null ? 'none' : Object.values(KEYS).some((k) => q.authorization!.includes(k)) ? 'THE KEY' : q.authorization,
    ),
  );
  return [...values].join(', ') || 'no requests';
}

function leaksIn(requests: RecordedRequest[], key: string): number {
  return requests.filter((q) => q.authorization?.includes(key) || q.target.includes(key) || q.body.includes(key)).length;
}

/** A configured key must reach only its own URL, whatever base_url a caller names. */
function foreignBaseUrlCase(id: string, endpoint: 'openai' | 'vllm', urlField: 'base_url' | 'vllm_url'): Case {
  const key = endpoint === 'openai' ? KEYS.openai : KEYS.vllm;
  const urlVariable = endpoint === 'openai' ? 'OPENAI_BASE_URL' : 'VLLM_URL';
  return {
    id,
    title: `key exfiltration: endpoint ${endpoint} + foreign ${urlField}`,
    sent: `run_rollout endpoint "${endpoint}" (server ${endpoint === 'openai' ? 'OPENAI' : 'VLLM'}_API_KEY set, ${urlVariable} = model A) with ${urlField} = recorder B`,
    async run(t) {
      const own = await t.scripted(IDLE_AGENT, { apiKey: key });
      const b = await t.recorder((await t.scripted(IDLE_AGENT)).url);
      const server = await t.server({ env: { [urlVariable]: own.url } });
      const result = await server.call('run_rollout', {
        instruction: 'say done',
        verify: ['true'],
        endpoint,
        [urlField]: b.url,
        model: 'scripted-model',
      });
      const leaked = leaksIn(b.requests, key);
      t.expect(leaked === 0, `recorder B received the server's key in ${leaked} of ${b.requests.length} requests`);
      const r = result.structuredContent as Record<string, any> | undefined;
      const outcome = result.isError ? `isError: ${resultText(result).slice(0, 80)}` : `reward ${r?.reward}, error_kind ${r?.error_kind}`;
      return `${outcome}; B got ${b.requests.length} requests, Authorization: ${describeAuth(b.requests)}`;
    },
  };
}

export const keyCases: Case[] = [
  foreignBaseUrlCase('1a', 'openai', 'base_url'),
  foreignBaseUrlCase('1b', 'vllm', 'vllm_url'),
  {
    id: '1c',
    title: 'key exfiltration: agent hunts for the key',
    sent: 'endpoint "openai"; the agent dumps env, /proc/*/environ and cmdline, greps ~ /tmp /run for the key, sends it to the model',
    async run(t) {
      const hunt =
        "(env; for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do tr '\\0' '\\n' < $f; echo; done; grep -rIs sk-reliability ~ /tmp /run) 2>/dev/null | head -c 60000 > loot.txt; wc -c loot.txt";
      const model = await t.scripted(agentRuns(hunt), { apiKey: KEYS.openai });
      const server = await t.server({ env: { OPENAI_BASE_URL: model.url } });
      const r = await server.callOk('run_rollout', { instruction: 'find secrets', verify: ['test -s loot.txt'], endpoint: 'openai' });
      const loot = String(r.files?.['loot.txt'] ?? '');
      t.expect(r.reward === 1 && loot.length > 0, `the hunt did not run (reward ${r.reward}, error ${r.error})`);
      const found = Object.values(KEYS).filter((k) => loot.includes(k) || model.requests.some((q) => JSON.stringify(q.body).includes(k)));
      t.expect(found.length === 0, `the agent found a key inside its sandbox`);
      return `reward ${r.reward}; loot ${loot.length} chars, ${found.length ? 'KEY FOUND' : 'no key in it'}`;
    },
  },
  {
    id: '1d',
    title: "caller's api_key reaches its model only",
    sent: 'run_rollout base_url = model requiring the caller api_key, api_key = sk-reliability-caller-…',
    async run(t) {
      const model = await t.scripted(IDLE_AGENT, { apiKey: KEYS.caller });
      const server = await t.server();
      const r = await server.callOk('run_rollout', {
        instruction: 'say done',
        verify: ['true'],
        base_url: model.url,
        api_key: KEYS.caller,
        model: 'scripted-model',
      });
      t.expect(r.reward === 1, `the model did not get the caller's key (reward ${r.reward}, error ${r.error})`);
      t.expect(!JSON.stringify(r).includes(KEYS.caller), 'the key is in the result');
      const trace = r.trace_uri ? JSON.stringify(await server.readResource(String(r.trace_uri))) : '';
      t.expect(trace && !trace.includes(KEYS.caller), trace ? 'the key is in the trace' : 'no trace stored');
      return `reward ${r.reward}; key in result: no${trace.includes(KEYS.caller) ? ', in trace: YES' : ', in trace: no'}`;
    },
  },
  {
    id: '1e',
    title: 'credentials inside base_url are scrubbed',
    sent: 'base_url http://user:<secret>@127.0.0.1:port/v1?api-key=<secret>',
    async run(t) {
      const model = await t.scripted(IDLE_AGENT);
      const { port } = new URL(model.url);
      const server = await t.server();
      const result = await server.call('run_rollout', {
        instruction: 'say done',
        verify: ['true'],
        base_url: `http://user:${KEYS.urlPassword}@127.0.0.1:${port}/v1?api-key=${KEYS.urlQuery}`,
        model: 'scripted-model',
      });
      const r = result.structuredContent as Record<string, any> | undefined;
      const everything = [JSON.stringify(result), r?.trace_uri ? JSON.stringify(await server.readResource(String(r.trace_uri))) : ''];
      const found = [KEYS.urlPassword, KEYS.urlQuery].filter((k) => everything.some((text) => text.includes(k)));
      t.expect(found.length === 0, `URL credentials in the result or trace: ${found.length}`);
      return result.isError
        ? `isError: ${resultText(result).slice(0, 80)}`
        : `reward ${r?.reward}; endpoint.base_url ${String(r?.endpoint?.base_url)}; ${found.length ? 'CREDENTIALS FOUND' : 'no credentials stored'}`;
    },
  },
  {
    id: '2a',
    title: 'proxy serves the model API only',
    sent: 'agent sends GET /v1/../../admin/x, GET /v1/%2e%2e/.., DELETE /v1/files/x, POST /v1/fine_tuning/jobs, POST /v1/chat/completions/../../admin, GET /v1/models to its LLM URL',
    async run(t) {
      const probes: Array<[string, string]> = [
        ['GET', '/v1/../../admin/x'],
        ['GET', '/v1/%2e%2e/%2e%2e/admin/x'],
        ['DELETE', '/v1/files/x'],
        ['POST', '/v1/fine_tuning/jobs'],
        ['POST', '/v1/chat/completions/../../../admin'],
        ['GET', '/v1/models'],
      ];
      const program = `${PY_LLM_CLIENT}\nprobes = ${JSON.stringify(probes)}\njson.dump({f'{m} {p}': raw(m, p) for m, p in probes}, open('probe.json', 'w'))`;
      const upstream = await t.recorder((await t.scripted(agentRuns(python(program)))).url);
      const server = await t.server();
      const r = await server.callOk('run_rollout', {
        instruction: 'probe',
        verify: ['test -s probe.json'],
        base_url: upstream.url,
        api_key: KEYS.caller,
        model: 'scripted-model',
      });
      const statuses = JSON.parse(String(r.files?.['probe.json'] ?? '{}')) as Record<string, number>;
      t.expect(Object.keys(statuses).length === probes.length, `the probe did not run (reward ${r.reward}, error ${r.error})`);
      for (const [probe, status] of Object.entries(statuses)) {
        if (probe !== 'GET /v1/models') t.expect(status >= 400 && status < 500, `${probe} answered ${status}, not 4xx`);
      }
      const allowed = new Set(['POST /v1/chat/completions', 'GET /v1/models']);
      const reached = upstream.requests.map((q) => `${q.method} ${q.target.split('?')[0]}`);
      const strays = reached.filter((route) => !allowed.has(route));
      t.expect(strays.length === 0, `reached the upstream: ${strays.join(', ')}`);
      const counts = [...new Set(reached)].map((route) => `${route} ×${reached.filter((x) => x === route).length}`);
      return `${Object.values(statuses).join(', ')}; upstream saw ${counts.join(', ')}`;
    },
  },
  {
    id: '2b',
    title: 'oversized chat request refused, trace kept',
    sent: 'agent POSTs a 40 MB chat request (limit 32 MB) to its LLM URL',
    async run(t) {
      const program = `${PY_LLM_CLIENT}\nopen('status.txt', 'w').write(str(raw('POST', '/v1/chat/completions', chat_body(40 * 1000 * 1000))))`;
      const upstream = await t.recorder((await t.scripted(agentRuns(python(program)))).url);
      const server = await t.server();
      const r = await server.callOk('run_rollout', {
        instruction: 'send big',
        verify: ['true'],
        base_url: upstream.url,
        model: 'scripted-model',
      });
      const status = String(r.files?.['status.txt'] ?? '').trim();
      t.expect(status === '413', `the 40 MB request answered ${status || 'nothing'}, not 413`);
      const biggest = Math.max(0, ...upstream.requests.map((q) => q.bodyBytes));
      t.expect(biggest < 32 * 1024 * 1024, `a ${(biggest / 1e6).toFixed(0)} MB request reached the upstream`);
      t.expect(/refused|413/.test(JSON.stringify(r.proxy_turns ?? [])), 'the refusal is not recorded among the proxy turns');
      let stored = false;
      if (r.trace_uri) stored = (await server.readResource(String(r.trace_uri))).contents.length > 0;
      t.expect(stored, `no trace stored (trace_uri ${r.trace_uri}, error ${r.error})`);
      return `status ${status}; largest upstream body ${(biggest / 1e3).toFixed(0)} kB; trace ${stored ? 'stored' : 'MISSING'}; reward ${r.reward}`;
    },
  },
];
