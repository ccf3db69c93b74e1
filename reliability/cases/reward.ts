import { agentRuns } from '../agent.js';
import type { Case } from '../harness.js';

/** Python that, when any Python starts, writes 1.0 wherever a reward could be read from. */
const FORGE_REWARD = `import os
for d in {os.path.expanduser('~/logs/verifier'), '/home/user/logs/verifier', os.environ.get('REWARD_DIR') or '/nonexistent'}:
    try:
        os.makedirs(d, exist_ok=True)
        open(os.path.join(d, 'reward.txt'), 'w').write('1.0')
    except OSError:
        pass
`;

/** Plants FORGE_REWARD as usercustomize.py and as a .pth line in the agent's user site-packages. */
const PLANT_USERCUSTOMIZE = [
  'site=$(python3 -m site --user-site) && mkdir -p "$site"',
  `cat > "$site/usercustomize.py" <<'EOF'\n${FORGE_REWARD}EOF`,
  `printf 'import os; exec(open(%s).read())\\n' "'$site/usercustomize.py'" > "$site/zz-forge.pth"`,
].join('\n');

/** The first line of a command, cut at 100 characters. */
function shorten(command: string): string {
  const first = command.split('\n')[0]!;
  return first.length > 100 || command.includes('\n') ? `${first.slice(0, 100)} …` : first;
}

/**
 * The agent does `tamper` to its home, then the verifier judges honestly: `verify` gives `honest`. The
 * reward must be exactly that, with no error: tampering may neither raise it nor turn it into null.
 */
function tamperCase(id: string, title: string, tamper: string, verify: string[], honest: number): Case {
  return {
    id,
    title,
    sent: `agent: ${shorten(tamper)}; verifier honestly ${honest}`,
    async run(t) {
      const model = await t.scripted(agentRuns(tamper));
      const server = await t.server();
      const r = await server.callOk('run_rollout', { instruction: 'tamper', verify, base_url: model.url, model: 'scripted-model' });
      t.expect(r.agent_exit_code === 0, `the agent did not finish (exit ${r.agent_exit_code}, error ${r.error})`);
      t.expect(r.reward === honest, `reward ${r.reward}, honest reward ${honest}`);
      t.expect(r.error === null, `error: ${r.error} (${r.error_kind})`);
      return `reward ${r.reward}, error_kind ${r.error_kind}`;
    },
  };
}

const PYTHON_PASS_AND_FAIL = ['python3 -c "import sys; sys.exit(0)"', 'python3 -c "import sys; sys.exit(1)"'];
const MISSING_SOLUTION = ['test -f solution.txt'];

export const rewardCases: Case[] = [
  tamperCase('3a', 'reward forging: usercustomize.py', PLANT_USERCUSTOMIZE, PYTHON_PASS_AND_FAIL, 0.5),
  tamperCase('3b', 'reward dir made read-only', 'mkdir -p ~/logs/verifier && chmod 555 ~/logs/verifier', MISSING_SOLUTION, 0),
  tamperCase('3c', '~/logs made a symlink', 'rm -rf ~/logs && ln -s /tmp ~/logs', MISSING_SOLUTION, 0),
  tamperCase('3d', '~/logs made unreadable', 'mkdir -p ~/logs && chmod 000 ~/logs', MISSING_SOLUTION, 0),
  tamperCase(
    '3e',
    '~/logs/verifier a symlink to a planted 1.0',
    'mkdir -p ~/mine ~/logs && echo 1.0 > ~/mine/reward.txt && rm -rf ~/logs/verifier && ln -s ~/mine ~/logs/verifier',
    MISSING_SOLUTION,
    0,
  ),
];
