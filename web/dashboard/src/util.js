// DOM and formatting helpers: no framework, just elements.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

export function table(headers, rows, attrs = {}) {
  return h('table', attrs, h('thead', {}, h('tr', {}, headers.map((x) => h('th', {}, x)))), h('tbody', {}, rows));
}

// kubectl's duration.HumanDuration, short form
export function age(ts) {
  if (!ts) return '';
  let s = Math.max(0, Math.floor((Date.now() - Date.parse(ts)) / 1000));
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return `${m}m${s % 60 ? (s % 60) + 's' : ''}`;
  if (m < 180) return `${m}m`;
  const hr = Math.floor(m / 60);
  if (hr < 48) return `${hr}h`;
  return `${Math.floor(hr / 24)}d`;
}

// resource.Quantity → a number in base units (cores, bytes)
const SUFFIX = { n: 1e-9, u: 1e-6, m: 1e-3, '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60 };
export function quantity(q) {
  if (q === undefined || q === null || q === '') return 0;
  const m = /^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$/.exec(String(q).trim());
  if (!m || !(m[2] in SUFFIX)) return NaN;
  return parseFloat(m[1]) * SUFFIX[m[2]];
}
export const cpu = (cores) => (Number.isFinite(cores) ? `${Math.round(cores * 1000)}m` : '–');
export const mem = (bytes) => (Number.isFinite(bytes) ? `${Math.round(bytes / 2 ** 20)}Mi` : '–');
export const pct = (part, whole) => (whole > 0 && Number.isFinite(part) ? ` (${Math.round((100 * part) / whole)}%)` : '');

// the STATUS column of `kubectl get pods` (printers.printPod, simplified)
export function podStatus(pod) {
  const st = pod.status || {};
  let reason = st.reason || st.phase || 'Unknown';
  const inits = st.initContainerStatuses || [];
  let initializing = false;
  inits.forEach((c, i) => {
    const s = c.state || {};
    if (s.terminated && s.terminated.exitCode === 0) return;
    if (initializing) return;
    initializing = true;
    if (s.terminated) reason = 'Init:' + (s.terminated.reason || `ExitCode:${s.terminated.exitCode}`);
    else if (s.waiting && s.waiting.reason && s.waiting.reason !== 'PodInitializing') reason = 'Init:' + s.waiting.reason;
    else reason = `Init:${i}/${(pod.spec.initContainers || []).length}`;
  });
  if (!initializing) {
    let hasRunning = false;
    for (const c of [...(st.containerStatuses || [])].reverse()) {
      const s = c.state || {};
      if (s.waiting && s.waiting.reason) reason = s.waiting.reason;
      else if (s.terminated && s.terminated.reason) reason = s.terminated.reason;
      else if (s.terminated) reason = s.terminated.signal ? `Signal:${s.terminated.signal}` : `ExitCode:${s.terminated.exitCode}`;
      else if (s.running && c.ready) hasRunning = true;
    }
    if (reason === 'Completed' && hasRunning) reason = 'Running';
  }
  if (pod.metadata.deletionTimestamp) reason = st.reason === 'NodeLost' ? 'Unknown' : 'Terminating';
  return reason;
}

export function phaseClass(pod) {
  if (pod.metadata.deletionTimestamp) return 'phase-Terminating';
  const status = podStatus(pod);
  if (/BackOff|Err|Invalid|OOM|Failed|Error/.test(status)) return 'phase-Failed';
  return 'phase-' + ((pod.status && pod.status.phase) || 'Unknown');
}

export function readyCount(pod) {
  const cs = (pod.status && pod.status.containerStatuses) || [];
  const total = (pod.spec.containers || []).length;
  return `${cs.filter((c) => c.ready).length}/${total}`;
}

export function restarts(pod) {
  const cs = (pod.status && pod.status.containerStatuses) || [];
  return cs.reduce((n, c) => n + (c.restartCount || 0), 0);
}

export function errorText(e) {
  if (!e) return '';
  const status = e.body && e.body.kind === 'Status' ? e.body : null;
  if (status) return `Error from server (${status.reason || e.status}): ${status.message}`;
  return e.message || String(e);
}

export const enc = encodeURIComponent;
