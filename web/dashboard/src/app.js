// kubelite's dashboard: a login page, then hash-routed live views. Bundled by esbuild at build time.
import '@xterm/xterm/css/xterm.css';
import './style.css';

import { session, setToken, whoami } from './api.js';
import { applyView } from './apply.js';
import { namespacesView, nodesView, podsView } from './lists.js';
import { podView } from './pod.js';
import { errorText, h } from './util.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('whoami');
const logout = document.getElementById('logout');
let cleanup = () => {};

function loginView(message) {
  const token = h('input', { id: 'token', type: 'password', autocomplete: 'off', size: 60, placeholder: 'bearer token' });
  const err = h('p', { id: 'login-error', class: 'error', hidden: !message }, message || '');
  const tryLogin = async (t) => {
    setToken(t);
    try {
      session.user = await whoami();
      location.hash = '#/pods';
      route();
    } catch (e) {
      setToken('');
      err.hidden = false;
      err.textContent = e.status === 401 ? 'Unauthorized: the server does not know this credential.' : errorText(e);
    }
  };
  const form = h('form', { id: 'login', onsubmit: (e) => { e.preventDefault(); tryLogin(token.value.trim()); } },
    h('h1', {}, 'Log in to kubelite'),
    h('p', {}, 'A bearer token (a ServiceAccount token from ', h('code', {}, 'kubectl create token NAME'),
      ', or a token of the server\'s token file). Every request the dashboard makes is made as you, so your RBAC permissions apply.'),
    h('p', {}, token, ' ', h('button', { type: 'submit', id: 'login-button' }, 'Log in')),
    h('p', {}, 'Or, when your browser presents the kubeconfig\'s client certificate: ',
      h('button', { type: 'button', id: 'login-cert', onclick: () => tryLogin('') }, 'Use my client certificate')),
    err);
  main.replaceChildren(form);
  token.focus();
  return () => {};
}

const routes = [
  [/^#\/nodes$/, () => nodesView(main)],
  [/^#\/namespaces$/, () => namespacesView(main)],
  [/^#\/pods(?:\/([^/]+))?$/, (m) => podsView(main, { namespace: m[1] && decodeURIComponent(m[1]) })],
  [/^#\/pod\/([^/]+)\/([^/]+)$/, (m, query) => podView(main, { namespace: decodeURIComponent(m[1]), name: decodeURIComponent(m[2]), query })],
  [/^#\/apply$/, () => applyView(main)],
];

async function route() {
  cleanup();
  cleanup = () => {};
  const [hash, qs] = (location.hash || '#/pods').split('?');
  if (!session.user) {
    try {
      session.user = await whoami(); // a stored token, or the TLS client certificate
    } catch (e) {
      setToken('');
      nav.hidden = true;
      logout.hidden = true;
      who.textContent = '';
      cleanup = loginView(e.status === 401 ? '' : errorText(e));
      return;
    }
  }
  nav.hidden = false;
  logout.hidden = false;
  who.textContent = session.user.username || '';
  for (const a of nav.querySelectorAll('a')) a.classList.toggle('active', hash.startsWith(`#/${a.dataset.view}`));
  for (const [re, view] of routes) {
    const m = re.exec(hash);
    if (m) {
      cleanup = view(m, new URLSearchParams(qs || '')) || (() => {});
      return;
    }
  }
  location.hash = '#/pods';
}

logout.addEventListener('click', () => {
  setToken('');
  session.user = null;
  route();
});
window.addEventListener('hashchange', route);
window.addEventListener('kubelite:unauthorized', () => {
  if (!session.user) return;
  setToken('');
  session.user = null;
  cleanup();
  cleanup = loginView('The server no longer accepts your credential (401 Unauthorized): log in again.');
  nav.hidden = true;
  logout.hidden = true;
  who.textContent = '';
});
route();
