// A pod's page: containers, conditions, events, a log that follows, a terminal over the exec
// WebSocket, CPU/memory sparklines from metrics.k8s.io, and `kubelite doctor`'s text.
import { FitAddon } from '@xterm/addon-fit';
import { Terminal } from '@xterm/xterm';

import { api, bearerProtocol, canI, get, lines, session, sleep, stream } from './api.js';
import { age, cpu, enc, errorText, h, mem, phaseClass, podStatus, quantity, readyCount, restarts, table } from './util.js';
import { poll, watchList } from './watch.js';

const POINTS = 60;

function sparkline(values, fmt) {
  const w = 240;
  const hgt = 40;
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', `0 0 ${w} ${hgt}`);
  svg.setAttribute('width', w);
  svg.setAttribute('height', hgt);
  const max = Math.max(...values, 1e-12);
  const y = (v) => hgt - 2 - ((hgt - 4) * v) / max;
  const step = w / (POINTS - 1);
  const start = w - (values.length - 1) * step; // the newest point at the right edge
  let pts = values.map((v, i) => `${start + i * step},${y(v)}`).join(' ');
  if (values.length === 1) pts = `${w - step},${y(values[0])} ${w},${y(values[0])}`;
  const line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
  line.setAttribute('points', pts);
  line.setAttribute('fill', 'none');
  line.setAttribute('stroke', 'currentColor');
  line.setAttribute('stroke-width', '1.5');
  svg.append(line);
  return h('span', { class: 'spark' }, svg, h('span', { class: 'spark-value' }, values.length ? fmt(values[values.length - 1]) : '–'));
}

function containerRows(pod) {
  const statuses = new Map(((pod.status || {}).containerStatuses || []).concat((pod.status || {}).initContainerStatuses || [])
    .map((c) => [c.name, c]));
  const all = (pod.spec.initContainers || []).map((c) => [c, 'init']).concat((pod.spec.containers || []).map((c) => [c, '']));
  return all.map(([c, kind]) => {
    const s = statuses.get(c.name) || {};
    const state = s.state || {};
    const [name, detail] = state.running ? ['Running', `since ${state.running.startedAt}`]
      : state.waiting ? ['Waiting', state.waiting.reason || '']
        : state.terminated ? ['Terminated', `${state.terminated.reason || ''} (exit code ${state.terminated.exitCode})`]
          : ['Waiting', ''];
    return h('tr', { dataset: { container: c.name } },
      h('td', {}, c.name + (kind ? ' (init)' : '')), h('td', {}, c.image), h('td', {}, `${name} ${detail}`.trim()),
      h('td', {}, s.ready ? 'true' : 'false'), h('td', {}, s.restartCount || 0));
  });
}

// kubelite doctor's evidence, read as this user (as kubelite/doctor/collect.py reads it)
async function evidence(pod, events) {
  const maybe = (p) => p.catch(() => null);
  const unscheduled = !pod.spec.nodeName;
  const [nodes, allPods] = await Promise.all([maybe(get('/api/v1/nodes')), unscheduled ? maybe(get('/api/v1/pods')) : null]);
  const logs = {};
  const base = `/api/v1/namespaces/${enc(pod.metadata.namespace)}/pods/${enc(pod.metadata.name)}/log`;
  const st = pod.status || {};
  const jobs = [];
  for (const cs of (st.initContainerStatuses || []).concat(st.containerStatuses || [])) {
    const state = cs.state || {};
    const tail = (previous) => stream(base, { container: cs.name, tailLines: '20', limitBytes: '65536', previous: previous ? 'true' : '' })
      .then((r) => r.text()).then((t) => { (logs[cs.name] = logs[cs.name] || {})[previous ? 'previous' : 'current'] = t; }).catch(() => {});
    if (state.running || state.terminated) jobs.push(tail(false));
    if (cs.restartCount || (cs.lastState || {}).terminated) jobs.push(tail(true));
  }
  await Promise.all(jobs);
  const nodePods = allPods ? allPods.items.filter((p) => p.spec.nodeName && !['Succeeded', 'Failed'].includes((p.status || {}).phase)) : null;
  return { pod, events, nodes: nodes ? nodes.items : null, nodePods, logs, now: Date.now() / 1000 };
}

function logPane(pod, container) {
  const pre = h('pre', { id: 'log', class: 'log' });
  const state = h('span', { class: 'muted', id: 'log-state' }, 'connecting…');
  const ctrl = new AbortController();
  (async () => {
    const path = `/api/v1/namespaces/${enc(pod.metadata.namespace)}/pods/${enc(pod.metadata.name)}/log`;
    let since = null;
    while (!ctrl.signal.aborted) {
      try {
        const q = { container, follow: 'true', timestamps: 'true' };
        if (since) q.sinceTime = since;
        else q.tailLines = '200';
        const r = await stream(path, q, ctrl.signal);
        state.textContent = 'following';
        for await (const raw of lines(r)) {
          const sp = raw.indexOf(' ');
          const ts = sp > 0 ? raw.slice(0, sp) : '';
          if (since && ts && ts <= since) continue; // sinceTime is inclusive: skip what we have
          if (ts) since = ts;
          const stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
          pre.append(document.createTextNode((sp > 0 ? raw.slice(sp + 1) : raw) + '\n'));
          if (stick) pre.scrollTop = pre.scrollHeight;
        }
        state.textContent = 'the stream ended; reconnecting…';
      } catch (e) {
        if (ctrl.signal.aborted) return;
        state.textContent = errorText(e);
      }
      await sleep(2000);
    }
  })();
  return { el: h('div', {}, h('div', { class: 'pane-head' }, state), pre), stop: () => ctrl.abort() };
}

function terminalPane(pod, container, onClose) {
  const box = h('div', { id: 'terminal', class: 'terminal' });
  const msg = h('p', { id: 'terminal-error', class: 'error', hidden: true });
  const term = new Terminal({ convertEol: false, fontSize: 13, cursorBlink: true, scrollback: 2000 });
  const fit = new FitAddon();
  term.loadAddon(fit);
  const q = new URLSearchParams({ container, stdin: 'true', stdout: 'true', tty: 'true' });
  q.append('command', 'sh');
  const path = `/api/v1/namespaces/${enc(pod.metadata.namespace)}/pods/${enc(pod.metadata.name)}/exec?${q}`;
  const protocols = ['v5.channel.k8s.io', 'v4.channel.k8s.io'];
  if (session.token) protocols.push(bearerProtocol(session.token));
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${path}`, protocols);
  ws.binaryType = 'arraybuffer';
  let opened = false;
  const enc8 = new TextEncoder();
  const send = (channel, text) => {
    if (ws.readyState !== WebSocket.OPEN) return;
    const data = enc8.encode(text);
    const frame = new Uint8Array(data.length + 1);
    frame[0] = channel;
    frame.set(data, 1);
    ws.send(frame);
  };
  const resize = () => send(4, JSON.stringify({ Width: term.cols, Height: term.rows }));
  ws.onopen = () => {
    opened = true;
    box.dataset.state = 'open';
    fit.fit();
    resize();
    term.focus();
  };
  ws.onmessage = (ev) => {
    const data = new Uint8Array(ev.data);
    if (!data.length) return;
    if (data[0] === 1 || data[0] === 2) term.write(data.subarray(1));
    else if (data[0] === 3) {
      const st = JSON.parse(new TextDecoder().decode(data.subarray(1)) || '{}');
      term.write(`\r\n[${st.status === 'Success' ? 'exited' : st.message || 'failed'}]\r\n`);
    }
  };
  ws.onclose = async () => {
    box.dataset.state = 'closed';
    if (opened) {
      term.write('\r\n[connection closed]\r\n');
      return;
    }
    // the handshake failed and a browser does not say why: ask the same URL without the upgrade
    try {
      await api('POST', path);
      msg.textContent = 'The terminal could not connect.';
    } catch (e) {
      msg.textContent = errorText(e);
      msg.dataset.code = e.status || '';
    }
    msg.hidden = false;
  };
  term.onData((d) => send(0, d));
  term.onResize(resize);
  const onWindow = () => fit.fit();
  window.addEventListener('resize', onWindow);
  const el = h('div', {}, h('div', { class: 'pane-head' }, `sh in ${container} `, h('button', { type: 'button', onclick: onClose }, 'Close')), msg, box);
  requestAnimationFrame(() => { term.open(box); fit.fit(); });
  return {
    el,
    stop: () => { window.removeEventListener('resize', onWindow); ws.close(); term.dispose(); },
  };
}

export function podView(main, { namespace, name, query }) {
  const title = h('h1', {}, `Pod ${namespace}/${name} `, h('span', { id: 'pod-status', class: 'badge' }, '…'));
  const err = h('p', { class: 'error', hidden: true, id: 'pod-error' });
  const actions = h('div', { class: 'actions' });
  const summary = h('div', { id: 'summary' });
  const containers = h('div');
  const conditions = h('div');
  const eventsEl = h('div');
  const metricsEl = h('div', { id: 'metrics', class: 'metrics' }, h('span', { class: 'muted' }, 'waiting for metrics…'));
  const doctorEl = h('pre', { id: 'doctor', class: 'doctor' }, 'diagnosing…');
  const logsEl = h('div', { id: 'logs' });
  const termEl = h('div', { id: 'terminal-pane' });
  const containerSel = h('select', { id: 'container' });
  main.replaceChildren(title, err, actions, summary,
    h('section', {}, h('h2', {}, 'Containers'), containers),
    h('section', {}, h('h2', {}, 'Conditions'), conditions),
    h('section', {}, h('h2', {}, 'Usage'), metricsEl),
    h('section', {}, h('h2', {}, 'Doctor'), doctorEl),
    h('section', {}, h('h2', {}, 'Events'), eventsEl),
    h('section', {}, h('h2', {}, 'Terminal'), termEl),
    h('section', {}, h('h2', {}, 'Logs ', containerSel), logsEl));

  const podPath = `/api/v1/namespaces/${enc(namespace)}/pods/${enc(name)}`;
  let pod = null;
  let gone = false;
  let events = [];
  let log = null;
  let term = null;
  let doctorTimer = null;
  let forced = false;
  let doctorBusy = false;
  const cpuHist = [];
  const memHist = [];
  const stops = [];

  const startLog = () => {
    if (log) log.stop();
    log = null;
    logsEl.replaceChildren();
    if (!pod || !containerSel.value) return;
    log = logPane(pod, containerSel.value);
    logsEl.append(log.el);
  };
  containerSel.addEventListener('change', startLog);
  const closeTerminal = () => { if (term) term.stop(); term = null; termEl.replaceChildren(openButton); };
  const openTerminal = () => {
    if (!pod || term) return;
    term = terminalPane(pod, containerSel.value || pod.spec.containers[0].name, closeTerminal);
    termEl.replaceChildren(term.el);
  };
  const openButton = h('button', { id: 'open-terminal', type: 'button', hidden: true, onclick: openTerminal }, 'Open a terminal (sh)');
  termEl.append(openButton);
  const forcedNote = h('span', { class: 'muted' });
  termEl.append(forcedNote);

  const deleteButton = h('button', { id: 'delete', type: 'button', class: 'danger', hidden: true, onclick: async () => {
    deleteButton.disabled = true;
    try {
      await api('DELETE', podPath);
    } catch (e) {
      err.hidden = false;
      err.textContent = errorText(e);
      deleteButton.disabled = false;
    }
  } }, 'Delete');
  actions.append(deleteButton);

  canI('delete', 'pods', namespace).then((ok) => { deleteButton.hidden = !ok; });
  canI('create', 'pods', namespace, 'exec').then((ok) => {
    openButton.hidden = !ok;
    if (!ok) forcedNote.textContent = 'You may not exec into this pod (RBAC: create pods/exec).';
  });

  const doctor = async () => {
    if (!pod || doctorBusy) return;
    doctorBusy = true;
    try {
      const ev = await evidence(pod, events);
      const doc = await api('POST', '/dashboard/api/diagnose', { contentType: 'application/json', body: JSON.stringify(ev) });
      doctorEl.textContent = doc.text;
    } catch (e) {
      doctorEl.textContent = errorText(e);
    } finally {
      doctorBusy = false;
    }
  };
  // at most one diagnosis in flight; a change meanwhile asks for another once it is done
  let doctorAgain = false;
  const doctorSoon = () => {
    if (doctorBusy) { doctorAgain = true; return; }
    clearTimeout(doctorTimer);
    doctorTimer = setTimeout(async () => {
      await doctor();
      if (doctorAgain) { doctorAgain = false; doctorSoon(); }
    }, 300);
  };

  const render = () => {
    const badge = title.querySelector('#pod-status');
    if (gone) {
      badge.textContent = 'Deleted';
      badge.className = 'badge phase-Gone';
      summary.replaceChildren(h('p', { id: 'gone' }, `Pod ${namespace}/${name} is gone: it was deleted.`));
      deleteButton.hidden = true;
      return;
    }
    if (!pod) return;
    const status = podStatus(pod);
    badge.textContent = status;
    badge.className = `badge ${phaseClass(pod)}`;
    badge.dataset.status = status;
    const st = pod.status || {};
    summary.replaceChildren(table(['Phase', 'Ready', 'Restarts', 'Node', 'IP', 'QoS', 'Age'], [h('tr', {},
      h('td', {}, st.phase || ''), h('td', {}, readyCount(pod)), h('td', {}, restarts(pod)), h('td', {}, pod.spec.nodeName || '<none>'),
      h('td', {}, st.podIP || '<none>'), h('td', {}, st.qosClass || ''), h('td', {}, age(pod.metadata.creationTimestamp)))]));
    containers.replaceChildren(table(['Name', 'Image', 'State', 'Ready', 'Restarts'], containerRows(pod), { id: 'containers' }));
    conditions.replaceChildren(table(['Type', 'Status', 'Reason', 'Last transition'], (st.conditions || []).map((c) =>
      h('tr', {}, h('td', {}, c.type), h('td', {}, c.status), h('td', {}, c.reason || ''), h('td', {}, c.lastTransitionTime || ''))), { id: 'conditions' }));
    const names = (pod.spec.initContainers || []).concat(pod.spec.containers || []).map((c) => c.name);
    if (containerSel.options.length !== names.length) {
      containerSel.replaceChildren(...names.map((n) => h('option', { value: n, selected: n === pod.spec.containers[0].name }, n)));
    }
    const started = ((st.containerStatuses || []).concat(st.initContainerStatuses || [])).some((c) => (c.state || {}).running || (c.state || {}).terminated);
    if (!log && started) startLog();
    if (query.get('terminal') && !forced && !pod.metadata.deletionTimestamp) {
      forced = true; // ?terminal=1 opens it once, whatever RBAC says (the server decides)
      openTerminal();
    }
  };
  const renderEvents = () => {
    eventsEl.replaceChildren(events.length ? table(['Type', 'Reason', 'Age', 'From', 'Message'], events.map((e) =>
      h('tr', { class: e.type === 'Warning' ? 'warning' : '' }, h('td', {}, e.type), h('td', {}, e.reason),
        h('td', {}, age(e.lastTimestamp || e.eventTime || e.metadata.creationTimestamp)),
        h('td', {}, (e.source || {}).component || e.reportingComponent || ''), h('td', {}, e.message || ''))), { id: 'events' })
      : h('p', { class: 'muted' }, 'No events.'));
  };

  stops.push(watchList(`/api/v1/namespaces/${enc(namespace)}/pods`, { fieldSelector: `metadata.name=${name}` }, (items, ev) => {
    const found = items.get(`${namespace}/${name}`);
    if (found) {
      pod = found;
      gone = false;
    } else if (pod || (ev && ev.type === 'DELETED')) {
      gone = true;
      if (log) { log.stop(); log = null; }
      if (term) closeTerminal();
    } else {
      err.hidden = false;
      err.textContent = `Error from server (NotFound): pods "${name}" not found`;
    }
    render();
    if (!gone) doctorSoon();
  }, (e) => { err.hidden = false; err.textContent = errorText(e); }));
  stops.push(watchList(`/api/v1/namespaces/${enc(namespace)}/events`, { fieldSelector: `involvedObject.name=${name}` }, (items) => {
    const t = (e) => Date.parse(e.lastTimestamp || e.eventTime || e.metadata.creationTimestamp) || 0;
    events = [...items.values()].filter((e) => (e.involvedObject || {}).kind === 'Pod').sort((a, b) => t(a) - t(b));
    renderEvents();
    doctorSoon();
  }));
  stops.push(poll(async () => {
    if (gone) return;
    try {
      const m = await get(`/apis/metrics.k8s.io/v1beta1/namespaces/${enc(namespace)}/pods/${enc(name)}`);
      let c = 0;
      let b = 0;
      for (const ctr of m.containers || []) {
        c += quantity(ctr.usage.cpu);
        b += quantity(ctr.usage.memory);
      }
      cpuHist.push(c);
      memHist.push(b);
      if (cpuHist.length > POINTS) { cpuHist.shift(); memHist.shift(); }
      metricsEl.replaceChildren(h('div', { class: 'spark-row', id: 'cpu' }, h('b', {}, 'CPU '), sparkline(cpuHist, cpu)),
        h('div', { class: 'spark-row', id: 'memory' }, h('b', {}, 'Memory '), sparkline(memHist, mem)));
    } catch (e) {
      metricsEl.replaceChildren(h('span', { class: 'muted' }, `No metrics yet: ${errorText(e)}`));
    }
  }, 5000));
  const ager = setInterval(() => { render(); renderEvents(); }, 5000);
  return () => {
    stops.forEach((s) => s());
    clearInterval(ager);
    clearTimeout(doctorTimer);
    if (log) log.stop();
    if (term) term.stop();
  };
}
