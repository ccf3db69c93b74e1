// The execute_python console: an editor, a history of runs (newest first) with stdout and stderr apart, and the episode.
import { $, h, replace, seconds } from './dom.js';

const STATE_FIELDS = [
  'episode_id',
  'step_count',
  'last_exit_code',
  'python_running',
  'rollouts_completed',
  'last_reward',
  'sandbox_backend',
  'isolation',
  'sandbox_id',
];

function stateValue(value) {
  if (value === null || value === undefined) return '–';
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

function historyEntry(code, onRecall) {
  const status = h('span', { class: 'badge' }, 'running…');
  const took = h('span', {});
  const outputs = h('div', {});
  const item = h(
    'li',
    { 'data-state': 'running' },
    h(
      'div',
      { class: 'entry-head' },
      status,
      took,
      h('span', { class: 'spacer' }),
      h('button', { type: 'button', class: 'small', onclick: () => onRecall(code), 'aria-label': 'Edit this code again' }, 'Edit'),
    ),
    h('pre', { class: 'code mono' }, code),
    outputs,
  );
  const started = performance.now();
  return {
    item,
    done(result) {
      item.dataset.state = 'done';
      item.dataset.exitCode = String(result.exit_code);
      status.className = `badge ${result.exit_code === 0 ? 'tone-good' : 'err'}`;
      status.textContent = result.timed_out ? 'timed out' : `exit ${result.exit_code}`;
      took.textContent = seconds((performance.now() - started) / 1000);
      replace(
        outputs,
        result.stdout ? h('pre', { class: 'output stdout', 'aria-label': 'stdout' }, result.stdout) : null,
        result.stderr ? h('pre', { class: 'output stderr', 'aria-label': 'stderr' }, result.stderr) : null,
        !result.stdout && !result.stderr ? h('span', { class: 'hint' }, 'no output') : null,
        result.notice ? h('p', { class: 'notice' }, result.notice) : null,
      );
    },
    failed(error) {
      item.dataset.state = 'failed';
      status.className = 'badge err';
      status.textContent = error.kind ?? error.class ?? 'error';
      replace(outputs, h('pre', { class: 'output stderr' }, error.message));
    },
  };
}

export function setupConsole(connection) {
  const editor = $('#py-code');
  const runButton = $('#py-run');
  const history = $('#py-history');
  const stateList = $('#py-state');
  const empty = $('#py-empty');

  const showState = (state) =>
    replace(
      stateList,
      STATE_FIELDS.filter((field) => field in state).map((field) => [h('dt', {}, field), h('dd', {}, stateValue(state[field]))]),
    );
  const refreshState = () =>
    connection
      .call('get_state', {})[0]
      .then(showState)
      .catch(() => {});

  const recall = (code) => {
    editor.value = code;
    editor.focus();
  };

  async function run() {
    const code = editor.value;
    if (!code.trim()) {
      editor.focus();
      return;
    }
    empty.hidden = true;
    const entry = historyEntry(code, recall);
    history.prepend(entry.item);
    runButton.disabled = true;
    try {
      entry.done(await connection.call('execute_python', { code })[0]);
      editor.value = '';
    } catch (error) {
      entry.failed(error);
    } finally {
      runButton.disabled = false;
      editor.focus();
      void refreshState();
    }
  }

  runButton.addEventListener('click', () => void run());
  editor.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      void run();
    } else if (event.key === 'Tab' && !event.shiftKey && !event.ctrlKey && !event.metaKey && !event.altKey) {
      // Four spaces, as Python wants; Escape then Tab leaves the editor (keyboard users are not trapped).
      if (editor.dataset.escaped === 'yes') return;
      event.preventDefault();
      editor.setRangeText('    ', editor.selectionStart, editor.selectionEnd, 'end');
    }
    editor.dataset.escaped = event.key === 'Escape' ? 'yes' : 'no';
  });

  $('#py-reset').addEventListener('click', async () => {
    try {
      showState(await connection.call('reset', {})[0]);
      history.prepend(h('li', { class: 'notice' }, 'Interpreter reset: a new episode, no names defined.'));
    } catch (error) {
      history.prepend(h('li', {}, h('pre', { class: 'output stderr' }, error.message)));
    }
  });

  connection
    .connect()
    .then(refreshState)
    .catch(() => {});
}
