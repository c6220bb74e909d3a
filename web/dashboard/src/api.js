// Every request the page makes is an ordinary API request as the logged-in user: the bearer
// token from the login page (kept in sessionStorage, for this tab only), or none at all, when
// the browser's TLS client certificate is the credential. RBAC decides what comes back.
const KEY = 'kubelite.dashboard.token';

export const session = { token: sessionStorage.getItem(KEY) || '', user: null };

export function setToken(token) {
  session.token = token || '';
  if (token) sessionStorage.setItem(KEY, token);
  else sessionStorage.removeItem(KEY);
}

export function authHeaders(extra = {}) {
  const h = { Accept: 'application/json', ...extra };
  if (session.token) h.Authorization = 'Bearer ' + session.token;
  return h;
}

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `the server answered ${status}`);
    this.status = status;
    this.body = body;
  }
}

export function url(path, query) {
  if (!query) return path;
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

async function parse(r) {
  const text = await r.text();
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return { message: text.trim() };
  }
}

// a credential the server stopped accepting (an expired token): the app goes back to its login page
function unauthorized(r) {
  if (r.status === 401 && session.user) window.dispatchEvent(new CustomEvent('kubelite:unauthorized'));
}

export async function api(method, path, { query, body, contentType, signal } = {}) {
  const headers = authHeaders(contentType ? { 'Content-Type': contentType } : {});
  const r = await fetch(url(path, query), { method, headers, body, signal, credentials: 'same-origin' });
  const doc = await parse(r);
  if (!r.ok) {
    unauthorized(r);
    throw new ApiError(r.status, doc);
  }
  return doc;
}

export const get = (path, query, signal) => api('GET', path, { query, signal });

// A streamed response, line by line (watch events, a log that follows).
export async function* lines(response) {
  const reader = response.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      yield buf.slice(0, i);
      buf = buf.slice(i + 1);
    }
  }
  if (buf) yield buf;
}

export async function stream(path, query, signal) {
  const r = await fetch(url(path, query), { headers: authHeaders(), signal, credentials: 'same-origin' });
  if (!r.ok) {
    unauthorized(r);
    throw new ApiError(r.status, await parse(r));
  }
  return r;
}

// kubectl auth whoami (SelfSubjectReview), and kubectl auth can-i (SelfSubjectAccessReview)
export async function whoami() {
  const doc = await api('POST', '/apis/authentication.k8s.io/v1/selfsubjectreviews', {
    contentType: 'application/json',
    body: JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' }),
  });
  return (doc.status && doc.status.userInfo) || {};
}

export async function canI(verb, resource, namespace, subresource = '', group = '') {
  try {
    const doc = await api('POST', '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', {
      contentType: 'application/json',
      body: JSON.stringify({
        apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectAccessReview',
        spec: { resourceAttributes: { verb, resource, subresource, namespace, group } },
      }),
    });
    return Boolean(doc.status && doc.status.allowed);
  } catch {
    return false;
  }
}

// base64url without padding, as kubectl's and the Kubernetes dashboard's WebSocket clients send it
export function bearerProtocol(token) {
  const bytes = new TextEncoder().encode(token);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return 'base64url.bearer.authorization.k8s.io.' + btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
