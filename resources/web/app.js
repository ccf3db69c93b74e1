/* global document, window, location */
// The page: one connection (one session), four views chosen by the URL's hash (#rollout, #console, #traces, #trace/<id>).
// The hash keeps the query (the token) untouched, so reloading and links keep working.
import { Connection } from './connection.js';
import { setupConsole } from './console.js';
import { $ } from './dom.js';
import { setupRollout } from './rollout.js';
import { showTrace, showTraceList } from './traces.js';

const statusBox = $('#status');
const banner = $('#banner');

const connection = new Connection(({ state, message, sessionId }) => {
  statusBox.dataset.state = state;
  $('.status-text', statusBox).textContent = state === 'ready' ? `session ${sessionId.slice(0, 8)}` : message;
  statusBox.title = sessionId ? `session ${sessionId}` : message;
  const showBanner = state === 'refused' || state === 'closed';
  banner.hidden = !showBanner;
  if (showBanner) banner.textContent = message;
});

setupRollout(connection);
setupConsole(connection);
$('#traces-refresh').addEventListener('click', () => void showTraceList());

/** Shows the view the hash names; #trace/<id> opens the viewer. */
function route() {
  const hash = decodeURIComponent(location.hash.slice(1)) || 'rollout';
  const [name, ...rest] = hash.split('/');
  const view = ['rollout', 'console', 'traces', 'trace'].includes(name) ? name : 'rollout';
  for (const section of document.querySelectorAll('.view')) section.hidden = section.id !== `view-${view}`;
  const tab = view === 'trace' ? 'traces' : view;
  for (const link of document.querySelectorAll('.tabs a')) {
    if (link.dataset.tab === tab) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  document.title = `${{ rollout: 'Rollout', console: 'Python', traces: 'Traces', trace: 'Trace' }[view]} · opencode-env`;
  if (view === 'traces') void showTraceList();
  if (view === 'trace') void showTrace(rest.join('/'));
  if (view === 'console') connection.connect();
}

window.addEventListener('hashchange', () => {
  route();
  $('#main').focus({ preventScroll: true });
  window.scrollTo(0, 0);
});
route();
connection.connect();
