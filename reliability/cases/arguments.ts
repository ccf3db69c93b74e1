import type { Case } from '../harness.js';
import { resultText } from '../server.js';

interface BadCall {
  tool: string;
  args: Record<string, unknown>;
  /** The field the error must name. */
  names: string;
}

/** Each call must come back within seconds as an isError result naming the field, with nothing run. */
function badArgumentsCase(id: string, title: string, sent: string, calls: BadCall[]): Case {
  return {
    id,
    title,
    sent,
    async run(t) {
      const server = await t.server();
      const answers: string[] = [];
      for (const call of calls) {
        const started = performance.now();
        try {
          const result = await server.call(call.tool, call.args, { timeoutMs: 60_000 });
          const text = resultText(result);
          const seconds = (performance.now() - started) / 1000;
          t.expect(result.isError, `${call.tool} ${JSON.stringify(call.args).slice(0, 60)} was accepted: ${text.slice(0, 120)}`);
          t.expect(text.includes(call.names), `${call.tool}: the error does not name "${call.names}": ${text.slice(0, 160)}`);
          t.expect(seconds < 10, `${call.tool}: answered after ${seconds.toFixed(1)} s`);
          answers.push(`${call.tool}: ${result.isError ? 'isError' : 'OK'} "${text.replace(/\s+/g, ' ').slice(0, 50)}"`);
        } catch (error) {
          t.expect(false, `${call.tool}: no result: ${(error as Error).message.slice(0, 160)}`);
          answers.push(`${call.tool}: ${(error as Error).message.slice(0, 50)}`);
        }
      }
      const state = await server.callOk('get_state');
      t.expect(state.step_count === 0 && state.rollouts_completed === 0, `something ran: ${JSON.stringify(state).slice(0, 160)}`);
      return answers.join('; ');
    },
  };
}

export const argumentCases: Case[] = [
  badArgumentsCase('9a', '10 MB tool arguments', 'execute_python with a 10 MB code string', [
    { tool: 'execute_python', args: { code: `# ${'x'.repeat(10_000_000)}` }, names: 'code' },
  ]),
  badArgumentsCase('9b', 'wrong types', 'execute_python code: 5; run_rollout instruction: 5; reset seed: "x"; timeout_s: "soon"', [
    { tool: 'execute_python', args: { code: 5 }, names: 'code' },
    { tool: 'run_rollout', args: { instruction: 5, base_url: 'http://127.0.0.1:9/v1', model: 'm' }, names: 'instruction' },
    { tool: 'reset', args: { seed: 'x' }, names: 'seed' },
    { tool: 'execute_python', args: { code: '1', timeout_s: 'soon' }, names: 'timeout_s' },
  ]),
  badArgumentsCase('9c', 'unknown fields', 'execute_python and run_rollout with an extra field "bogus"', [
    { tool: 'execute_python', args: { code: '1', bogus: true }, names: 'bogus' },
    { tool: 'run_rollout', args: { instruction: 'x', base_url: 'http://127.0.0.1:9/v1', model: 'm', bogus: 1 }, names: 'bogus' },
  ]),
  badArgumentsCase('9d', 'missing required fields', 'execute_python {}, run_rollout {}, an unknown tool', [
    { tool: 'execute_python', args: {}, names: 'code' },
    { tool: 'run_rollout', args: {}, names: 'instruction' },
    { tool: 'no_such_tool', args: {}, names: 'no_such_tool' },
  ]),
];
