// The trace browser (every stored rollout) and the trace viewer (one rollout, turn by turn, tokens coloured by logprob).
import { getJson, withToken } from './connection.js';
import { $, h, localTime, replace, rewardText, rewardTone, seconds } from './dom.js';

/** Messages of a request shown open: the last few, which are what this turn answered (system prompts stay folded: long, and the same every turn). */
const OPEN_MESSAGES = 2;

const downloadLink = (id, label = 'Download', size = 'small') =>
  h(
    'a',
    { class: `button ${size}`, href: withToken(`/web/api/traces/${encodeURIComponent(id)}/download`), download: `${id}.jsonl` },
    label,
  );

export async function showTraceList() {
  const body = $('#traces-table tbody');
  const empty = $('#traces-empty');
  let traces;
  try {
    ({ traces } = await getJson('/web/api/traces'));
  } catch (error) {
    replace(body, h('tr', {}, h('td', { colspan: 6, class: 'form-error' }, `Could not list traces: ${error.message}`)));
    return;
  }
  empty.hidden = traces.length > 0;
  replace(
    body,
    traces.map((trace) => {
      const href = `#trace/${encodeURIComponent(trace.rollout_id)}`;
      return h(
        'tr',
        { 'data-rollout-id': trace.rollout_id },
        h('td', { class: 'when' }, localTime(trace.created_at)),
        h('td', {}, h('a', { href }, trace.task_id || '(no task id)'), h('span', { class: 'id' }, trace.rollout_id)),
        h('td', { class: 'num' }, h('span', { class: `badge reward-badge tone-${rewardTone(trace.reward)}` }, rewardText(trace.reward))),
        h('td', {}, trace.error_kind ? h('span', { class: 'badge err', title: trace.error ?? '' }, trace.error_kind) : ''),
        h('td', { class: 'num' }, String(trace.turns)),
        h('td', { class: 'row-actions' }, h('a', { class: 'button small', href }, 'View'), ' ', downloadLink(trace.rollout_id)),
      );
    }),
  );
}

/** A message's content as text: a string, or the text parts of an array of parts. */
function contentText(content) {
  if (typeof content === 'string') return content;
  if (Array.isArray(content))
    return content.map((part) => (typeof part?.text === 'string' ? part.text : `[${part?.type ?? 'part'}]`)).join('\n');
  return content === null || content === undefined ? '' : JSON.stringify(content, null, 2);
}

function prettyArguments(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return String(text);
  }
}

function toolCallView(name, args) {
  return h('div', { class: 'tool-call' }, h('div', { class: 'name' }, name), h('pre', { class: 'mono' }, prettyArguments(args)));
}

function messageView(message, open) {
  const text = contentText(message.content);
  const calls = message.tool_calls ?? [];
  const preview = text.trim().split('\n')[0] || (calls.length ? calls.map((c) => c.function?.name).join(', ') : '');
  return h(
    'details',
    { class: 'message', open },
    h(
      'summary',
      {},
      h('span', { class: `role role-${message.role}` }, message.role),
      message.tool_call_id ? h('span', { class: 'badge' }, message.name ?? 'tool result') : null,
      h('span', { class: 'preview' }, preview),
    ),
    h(
      'div',
      { class: 'body' },
      text,
      calls.map((call) => toolCallView(call.function?.name ?? '?', call.function?.arguments ?? '')),
    ),
  );
}

/** Confident tokens barely tinted (green), unsure ones strongly (through amber to red). */
function tokenBackground(logprob) {
  const p = Math.exp(logprob);
  const unsure = 1 - p;
  return `hsl(${Math.round(130 * p * p)} 80% 48% / ${(0.12 + 0.58 * Math.sqrt(unsure)).toFixed(2)})`;
}

function tokenTitle(token, logprob, alternatives) {
  const head =
    typeof logprob === 'number'
      ? `${JSON.stringify(token)}  logprob ${logprob.toFixed(4)}  p ${(100 * Math.exp(logprob)).toFixed(1)}%`
      : `${JSON.stringify(token)}  no logprob`;
  const others = (alternatives ?? [])
    .filter((alt) => alt.token !== token && typeof alt.logprob === 'number')
    .slice(0, 5)
    .map((alt) => `  ${JSON.stringify(alt.token)} ${(100 * Math.exp(alt.logprob)).toFixed(1)}%`);
  return others.length ? `${head}\nalternatives:\n${others.join('\n')}` : head;
}

function tokensView(turn) {
  const tokens = turn.completion_tokens ?? [];
  return h(
    'div',
    { class: 'tokens', 'data-testid': 'tokens' },
    tokens.map((token, i) => {
      const logprob = turn.per_token_logps?.[i];
      const hasLogprob = typeof logprob === 'number';
      // Newlines stay visible (↵) and still break the line.
      const parts = token.split('\n').flatMap((piece, j) => (j === 0 ? [piece] : [h('span', { class: 'nl' }, '↵'), '\n', piece]));
      return h(
        'span',
        {
          class: 'tok',
          tabindex: 0,
          title: tokenTitle(token, logprob, turn.top_logprobs?.[i]),
          'data-logprob': hasLogprob ? String(logprob) : null,
          style: hasLogprob ? { background: tokenBackground(logprob) } : { 'text-decoration': 'underline dotted' },
        },
        parts,
      );
    }),
  );
}

function turnView(turn, index) {
  const messages = Array.isArray(turn.request?.messages) ? turn.request.messages : [];
  const response = turn.response ?? { content: '', reasoning: '', tool_calls: [] };
  const hasTokens = (turn.completion_tokens?.length ?? 0) > 0;
  return h(
    'article',
    { class: 'card turn', 'aria-labelledby': `turn-${index}`, 'data-turn': turn.turn },
    h(
      'div',
      { class: 'turn-head' },
      h('h2', { id: `turn-${index}` }, `Turn ${turn.turn}`),
      h('span', { class: 'badge' }, turn.kind),
      turn.finish_reason ? h('span', { class: 'badge' }, turn.finish_reason) : null,
      h('span', { class: 'badge' }, `${turn.completion_tokens?.length ?? 0} tokens`),
      h('span', { class: 'badge' }, seconds(turn.latency_s)),
      turn.upstream_error
        ? h('span', { class: 'badge err', title: turn.upstream_error.message }, `upstream ${turn.upstream_error.type}`)
        : null,
      turn.dropped ? h('span', { class: 'badge err', title: turn.dropped.message }, 'bodies not stored') : null,
      h('span', { class: 'spacer' }),
      hasTokens ? h('span', { class: 'legend' }, 'confident', h('span', { class: 'scale', 'aria-hidden': 'true' }), 'unsure') : null,
    ),
    messages.length
      ? [
          h('div', { class: 'section-label' }, `Request · ${messages.length} message${messages.length === 1 ? '' : 's'}`),
          h(
            'div',
            { class: 'messages' },
            messages.map((message, i) => messageView(message, message.role !== 'system' && i >= messages.length - OPEN_MESSAGES)),
          ),
        ]
      : null,
    h('div', { class: 'section-label' }, hasTokens ? 'Response · each token shaded by its logprob (hover for the value)' : 'Response'),
    hasTokens
      ? tokensView(turn)
      : [
          response.reasoning ? h('p', { class: 'reasoning' }, response.reasoning) : null,
          h('p', { class: 'response-text' }, response.content || (response.tool_calls?.length ? '' : '(empty)')),
        ],
    response.tool_calls?.length
      ? [h('div', { class: 'section-label' }, 'Tool calls'), response.tool_calls.map((call) => toolCallView(call.name, call.arguments))]
      : null,
  );
}

export async function showTrace(id) {
  const root = $('#trace-body');
  replace(root, h('p', { class: 'empty-note' }, 'Loading the trace…'));
  let trace;
  try {
    trace = await getJson(`/web/api/traces/${encodeURIComponent(id)}`);
  } catch (error) {
    replace(root, h('div', { class: 'card' }, h('p', { class: 'form-error' }, `Could not read trace ${id}: ${error.message}`)));
    return;
  }
  const result = trace.result ?? {};
  const tone = rewardTone(result.reward);
  replace(
    root,
    h(
      'div',
      { class: 'trace-head' },
      h(
        'div',
        { class: `reward tone-${tone}` },
        h('span', { class: 'value' }, rewardText(result.reward)),
        h('span', { class: 'label' }, 'reward'),
      ),
      h(
        'div',
        { class: 'title' },
        h('h1', { id: 'trace-title' }, result.task_id || trace.spec?.task_id || 'Trace'),
        h('code', {}, trace.rollout_id),
        h(
          'p',
          { class: 'lede' },
          `${localTime(trace.created_at)} · ${result.endpoint?.model ?? trace.spec?.model ?? ''} · ${trace.turns.length} turns · ${seconds(result.wall_s)}`,
        ),
      ),
      h(
        'div',
        { class: 'actions' },
        h('a', { class: 'button', href: '#traces' }, '← All traces'),
        downloadLink(trace.rollout_id, 'Download JSONL', 'normal'),
      ),
    ),
    result.error
      ? h('div', { class: 'error-box', role: 'alert' }, h('strong', {}, result.error_kind ?? 'error'), ': ', result.error)
      : null,
    trace.spec?.instruction
      ? h(
          'div',
          { class: 'card' },
          h('div', { class: 'section-label' }, 'Instruction'),
          h('p', { class: 'response-text' }, trace.spec.instruction),
        )
      : null,
    trace.turns.length
      ? trace.turns.map(turnView)
      : h('p', { class: 'empty-note' }, 'No turns recorded (black_box mode, or the agent never called the model).'),
  );
}
