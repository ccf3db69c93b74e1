/* global FormData */
// The rollout form: builds run_rollout's arguments, then shows the run live (phases, LLM turns) and its result.
import { $, h, replace, rewardText, rewardTone, seconds } from './dom.js';

/** run_rollout's phases in the order they happen (install only when the sandbox lacked opencode). */
const PHASES = ['queue', 'sandbox', 'files', 'setup', 'install', 'proxy', 'agent', 'verify', 'collect', 'trace'];
const PHASE_COLOURS = {
  queue: '#adb5bd',
  sandbox: '#748ffc',
  files: '#63e6be',
  setup: '#38d9a9',
  install: '#ffd43b',
  proxy: '#4dabf7',
  agent: '#5c7cfa',
  verify: '#ff922b',
  collect: '#da77f2',
  trace: '#868e96',
};

const lines = (text) =>
  text
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean);

/** The form's fields as run_rollout arguments; throws with a message a person can act on. */
function argumentsFrom(form) {
  const data = new FormData(form);
  const text = (name) => String(data.get(name) ?? '').trim();
  const args = { instruction: text('instruction') };
  if (!args.instruction) throw new Error('Write an instruction for the agent.');
  for (const name of ['endpoint', 'base_url', 'model', 'task_id', 'mode']) if (text(name)) args[name] = text(name);
  const key = String(data.get('api_key') ?? '');
  if (key) args.api_key = key;
  if (!args.endpoint && !args.base_url) throw new Error('Choose an endpoint or give a base URL.');
  const script = String(data.get('test_script') ?? '');
  if (script.trim()) args.test_script = script;
  for (const name of ['verify', 'setup']) if (lines(text(name)).length > 0) args[name] = lines(text(name));
  if (text('files')) {
    let files;
    try {
      files = JSON.parse(text('files'));
    } catch (error) {
      throw new Error(`Files must be JSON ({"path": "content"}): ${error.message}`, { cause: error });
    }
    if (!files || typeof files !== 'object' || Array.isArray(files)) throw new Error('Files must be a JSON object: {"path": "content"}.');
    args.files = files;
  }
  for (const name of ['agent_timeout_s', 'setup_timeout_s', 'verify_timeout_s']) if (text(name)) args[name] = Number(text(name));
  if (data.get('disable_thinking')) args.disable_thinking = true;
  return args;
}

/** The live part of a run: phase chips and a log of progress messages. */
function liveRun() {
  const chips = new Map(PHASES.map((phase) => [phase, h('li', { 'data-state': 'pending', hidden: phase === 'install' }, phase)]));
  const log = h('ol', { class: 'log', 'aria-label': 'Progress log' });
  const card = h(
    'div',
    { class: 'card', id: 'rollout-live' },
    h('h2', {}, 'Running'),
    h('ol', { class: 'phases', 'aria-label': 'Phases' }, [...chips.values()]),
    log,
  );
  let current = null;
  const started = Date.now();
  const title = $('h2', card);
  const clock = setInterval(() => (title.textContent = `Running · ${Math.floor((Date.now() - started) / 1000)} s`), 1000);
  return {
    card,
    progress(message) {
      const phase = /^phase: (\w+)/.exec(message)?.[1];
      if (phase && chips.has(phase)) {
        if (current) chips.get(current).dataset.state = 'done';
        current = phase;
        const chip = chips.get(phase);
        chip.hidden = false;
        chip.dataset.state = 'active';
        // Phases the run skipped (no files, no setup) are still behind it.
        for (const earlier of PHASES.slice(0, PHASES.indexOf(phase))) {
          if (chips.get(earlier).dataset.state === 'pending') chips.get(earlier).dataset.state = 'done';
        }
      }
      const at = ((Date.now() - started) / 1000).toFixed(1);
      log.append(h('li', { class: message.startsWith('LLM turn') ? 'llm' : null }, h('time', {}, `${at}s`), h('span', {}, message)));
      log.scrollTop = log.scrollHeight;
    },
    finish(outcome) {
      clearInterval(clock);
      if (current) chips.get(current).dataset.state = 'done';
      title.textContent = outcome;
    },
  };
}

function timingBar(timings) {
  const entries = PHASES.filter((phase) => typeof timings?.[phase] === 'number').map((phase) => [phase, timings[phase]]);
  const total = entries.reduce((sum, [, s]) => sum + s, 0) || 1;
  return [
    h(
      'div',
      { class: 'timings', role: 'img', 'aria-label': entries.map(([p, s]) => `${p} ${seconds(s)}`).join(', ') },
      entries.map(([phase, s]) =>
        h('span', { title: `${phase}: ${seconds(s)}`, style: { width: `${(100 * s) / total}%`, background: PHASE_COLOURS[phase] } }),
      ),
    ),
    h(
      'ul',
      { class: 'timing-legend' },
      entries.map(([phase, s]) => h('li', {}, h('i', { style: { background: PHASE_COLOURS[phase] } }), `${phase} ${seconds(s)}`)),
    ),
  ];
}

function commandOutputs(title, records) {
  if (!records?.length) return null;
  return h(
    'details',
    {},
    h('summary', { class: 'section-label' }, `${title} (${records.length})`),
    records.map((record) =>
      h(
        'div',
        { class: 'tool-call' },
        h(
          'div',
          { class: 'name' },
          `$ ${record.cmd.length > 120 ? `${record.cmd.slice(0, 120)}…` : record.cmd}  `,
          h('span', { class: `badge ${record.exit_code === 0 ? 'tone-good' : 'err'}` }, `exit ${record.exit_code ?? 'killed'}`),
        ),
        record.stdout ? h('pre', { class: 'output' }, record.stdout) : null,
        record.stderr ? h('pre', { class: 'output stderr' }, record.stderr) : null,
      ),
    ),
  );
}

/** The result card: the reward first, then why not (if anything failed), timings, and the way into the trace. */
function resultCard(result) {
  const tone = rewardTone(result.reward);
  const turns = result.proxy_turns?.length ?? 0;
  return h(
    'div',
    { class: 'card', id: 'rollout-result' },
    h(
      'div',
      { class: 'result-head' },
      h(
        'div',
        { class: `reward tone-${tone}`, 'data-testid': 'reward' },
        h('span', { class: 'value' }, rewardText(result.reward)),
        h('span', { class: 'label' }, 'reward'),
      ),
      h(
        'div',
        {},
        h('h2', {}, result.task_id || 'Rollout'),
        h(
          'div',
          { class: 'actions' },
          result.trace_uri ? h('a', { class: 'button', href: `#trace/${encodeURIComponent(result.rollout_id)}` }, 'Open trace →') : null,
        ),
      ),
    ),
    result.error
      ? h('div', { class: 'error-box', role: 'alert' }, h('strong', {}, result.error_kind ?? 'error'), ': ', result.error)
      : null,
    h(
      'dl',
      { class: 'facts' },
      h('dt', {}, 'wall time'),
      h('dd', {}, seconds(result.wall_s)),
      h('dt', {}, 'model'),
      h('dd', {}, `${result.endpoint?.model ?? ''} (${result.endpoint?.name ?? ''})`),
      h('dt', {}, 'LLM turns'),
      h('dd', {}, String(turns)),
      h('dt', {}, 'agent exit'),
      h('dd', {}, `${result.agent_exit_code ?? '–'}${result.agent_timed_out ? ' (timed out)' : ''}`),
      Object.keys(result.rewards ?? {}).length
        ? [
            h('dt', {}, 'rewards'),
            h(
              'dd',
              {},
              Object.entries(result.rewards)
                .map(([k, v]) => `${k}=${v}`)
                .join(', '),
            ),
          ]
        : null,
      h('dt', {}, 'rollout'),
      h('dd', {}, h('code', {}, result.rollout_id)),
    ),
    timingBar(result.timings),
    commandOutputs('Verifier output', result.verify_results),
    commandOutputs('Setup output', result.setup_results),
    Object.keys(result.files ?? {}).length
      ? h(
          'details',
          {},
          h('summary', { class: 'section-label' }, `Files the agent left (${Object.keys(result.files).length})`),
          Object.entries(result.files).map(([name, content]) =>
            h('div', { class: 'tool-call' }, h('div', { class: 'name' }, name), h('pre', { class: 'output' }, content)),
          ),
        )
      : null,
  );
}

function failureCard(error) {
  return h(
    'div',
    { class: 'card', id: 'rollout-result' },
    h(
      'div',
      { class: 'result-head' },
      h('div', { class: 'reward tone-none' }, h('span', { class: 'value' }, '–'), h('span', { class: 'label' }, 'no reward')),
      h('h2', {}, 'The rollout did not run'),
    ),
    h('div', { class: 'error-box', role: 'alert' }, h('strong', {}, error.kind ?? error.class ?? 'error'), ': ', error.message),
  );
}

export function setupRollout(connection) {
  const form = $('#rollout-form');
  const panel = $('#rollout-run-panel');
  const formError = $('#rollout-form-error');
  const runButton = $('#rollout-run');
  const cancelButton = $('#rollout-cancel');
  const endpoint = $('#r-endpoint');
  const syncEndpoint = () => {
    // A named endpoint brings its own URL and key; the model may still be chosen.
    $('#r-base-url').disabled = endpoint.value !== '';
    $('#r-api-key').disabled = endpoint.value !== '';
  };
  endpoint.addEventListener('change', syncEndpoint);
  syncEndpoint();

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    let args;
    try {
      args = argumentsFrom(form);
    } catch (error) {
      formError.textContent = error.message;
      formError.hidden = false;
      return;
    }
    formError.hidden = true;
    const live = liveRun();
    replace(panel, live.card);
    runButton.disabled = true;
    runButton.textContent = 'Running…';
    const [promise, cancel] = connection.call('run_rollout', args, live.progress);
    cancelButton.hidden = false;
    cancelButton.onclick = () => {
      cancel();
      cancelButton.disabled = true;
    };
    try {
      const result = await promise;
      live.finish(result.error ? 'Finished with an error' : 'Finished');
      panel.prepend(resultCard(result));
    } catch (error) {
      live.finish('Failed');
      panel.prepend(failureCard(error));
    } finally {
      runButton.disabled = false;
      runButton.textContent = 'Run rollout';
      cancelButton.hidden = true;
      cancelButton.disabled = false;
    }
  });
}
