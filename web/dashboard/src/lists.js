// The live lists: nodes (capacity, requested, used), namespaces, pods — each over a watch.
import { get } from './api.js';
import { age, cpu, enc, errorText, h, mem, pct, phaseClass, podStatus, quantity, readyCount, restarts, table } from './util.js';
import { poll, watchList } from './watch.js';

function errorBox() {
  return h('p', { class: 'error', hidden: true });
}
function showError(box, e) {
  box.hidden = !e;
  box.textContent = e ? errorText(e) : '';
}

// re-render on a change, and every few seconds for the ages
function live(render) {
  let pending = false;
  const schedule = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      render();
    });
  };
  const timer = setInterval(schedule, 5000);
  return { schedule, stop: () => clearInterval(timer) };
}

export function podsView(main, { namespace }) {
  const ns = namespace || 'default';
  const all = ns === '_all';
  const err = errorBox();
  const body = h('div');
  const select = h('select', { id: 'namespace', onchange: (e) => { location.hash = `#/pods/${enc(e.target.value)}`; } },
    h('option', { value: ns }, all ? 'all namespaces' : ns));
  main.replaceChildren(h('h1', {}, 'Pods ', select), err, body);
  get('/api/v1/namespaces').then((l) => {
    const names = l.items.map((n) => n.metadata.name);
    select.replaceChildren(h('option', { value: '_all', selected: all }, 'all namespaces'),
      ...names.map((n) => h('option', { value: n, selected: n === ns }, n)));
  }).catch(() => {});
  let items = new Map();
  const view = live(() => {
    const pods = [...items.values()].sort((a, b) => (a.metadata.namespace + a.metadata.name).localeCompare(b.metadata.namespace + b.metadata.name));
    const rows = pods.map((p) => {
      const m = p.metadata;
      const status = podStatus(p);
      return h('tr', { class: phaseClass(p), dataset: { pod: m.name, namespace: m.namespace, status, phase: (p.status || {}).phase || '' } },
        all ? h('td', {}, m.namespace) : null,
        h('td', {}, h('a', { href: `#/pod/${enc(m.namespace)}/${enc(m.name)}` }, m.name)),
        h('td', {}, readyCount(p)),
        h('td', { class: 'status' }, h('span', { class: 'dot' }), status),
        h('td', {}, restarts(p)),
        h('td', {}, p.spec.nodeName || '<none>'),
        h('td', {}, (p.status || {}).podIP || '<none>'),
        h('td', {}, age(m.creationTimestamp)));
    });
    body.replaceChildren(rows.length ? table([all ? 'Namespace' : null, 'Name', 'Ready', 'Status', 'Restarts', 'Node', 'IP', 'Age'].filter(Boolean), rows, { id: 'pods' })
      : h('p', { class: 'muted', id: 'pods-empty' }, all ? 'No pods found.' : `No pods found in ${ns} namespace.`));
  });
  const stopWatch = watchList(all ? '/api/v1/pods' : `/api/v1/namespaces/${enc(ns)}/pods`, {}, (m) => {
    items = m;
    showError(err, null);
    view.schedule();
  }, (e) => showError(err, e));
  return () => { stopWatch(); view.stop(); };
}

export function namespacesView(main) {
  const err = errorBox();
  const body = h('div');
  main.replaceChildren(h('h1', {}, 'Namespaces'), err, body);
  let items = new Map();
  const view = live(() => {
    const rows = [...items.values()].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name)).map((n) =>
      h('tr', { dataset: { namespace: n.metadata.name } },
        h('td', {}, h('a', { href: `#/pods/${enc(n.metadata.name)}` }, n.metadata.name)),
        h('td', {}, (n.status || {}).phase || ''),
        h('td', {}, age(n.metadata.creationTimestamp))));
    body.replaceChildren(table(['Name', 'Status', 'Age'], rows, { id: 'namespaces' }));
  });
  const stop = watchList('/api/v1/namespaces', {}, (m) => { items = m; showError(err, null); view.schedule(); }, (e) => showError(err, e));
  return () => { stop(); view.stop(); };
}

function requested(pods, node) {
  let c = 0;
  let m = 0;
  for (const p of pods.values()) {
    if (p.spec.nodeName !== node) continue;
    const phase = (p.status || {}).phase;
    if (phase === 'Succeeded' || phase === 'Failed') continue;
    for (const ctr of p.spec.containers || []) {
      const r = (ctr.resources || {}).requests || {};
      c += quantity(r.cpu);
      m += quantity(r.memory);
    }
  }
  return { cpu: c, memory: m };
}

export function nodesView(main) {
  const err = errorBox();
  const note = h('p', { class: 'muted', id: 'metrics-note', hidden: true });
  const body = h('div');
  main.replaceChildren(h('h1', {}, 'Nodes'), err, note, body);
  let nodes = new Map();
  let pods = new Map();
  let usage = new Map();
  const view = live(() => {
    const rows = [...nodes.values()].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name)).map((n) => {
      const name = n.metadata.name;
      const alloc = (n.status || {}).allocatable || {};
      const cap = (n.status || {}).capacity || {};
      const ready = ((n.status || {}).conditions || []).find((c) => c.type === 'Ready');
      const req = requested(pods, name);
      const used = usage.get(name);
      const aCpu = quantity(alloc.cpu);
      const aMem = quantity(alloc.memory);
      const uCpu = used ? quantity(used.cpu) : NaN;
      const uMem = used ? quantity(used.memory) : NaN;
      const status = ready && ready.status === 'True' ? 'Ready' : 'NotReady';
      return h('tr', { class: status === 'Ready' ? 'phase-Running' : 'phase-Failed', dataset: { node: name } },
        h('td', {}, name),
        h('td', { class: 'status' }, h('span', { class: 'dot' }), status + ((n.spec || {}).unschedulable ? ',SchedulingDisabled' : '')),
        h('td', {}, `${cpu(quantity(cap.cpu))} / ${cpu(aCpu)}`),
        h('td', { class: 'req-cpu' }, cpu(req.cpu) + pct(req.cpu, aCpu)),
        h('td', { class: 'used-cpu' }, cpu(uCpu) + pct(uCpu, aCpu)),
        h('td', {}, `${mem(quantity(cap.memory))} / ${mem(aMem)}`),
        h('td', { class: 'req-mem' }, mem(req.memory) + pct(req.memory, aMem)),
        h('td', { class: 'used-mem' }, mem(uMem) + pct(uMem, aMem)),
        h('td', {}, `${[...pods.values()].filter((p) => p.spec.nodeName === name).length} / ${alloc.pods || ''}`),
        h('td', {}, age(n.metadata.creationTimestamp)));
    });
    body.replaceChildren(table(['Name', 'Status', 'CPU capacity / allocatable', 'CPU requested', 'CPU used',
      'Memory capacity / allocatable', 'Memory requested', 'Memory used', 'Pods', 'Age'], rows, { id: 'nodes' }));
  });
  const stops = [
    watchList('/api/v1/nodes', {}, (m) => { nodes = m; showError(err, null); view.schedule(); }, (e) => showError(err, e)),
    watchList('/api/v1/pods', {}, (m) => { pods = m; view.schedule(); }, () => {}),
    poll(async () => {
      try {
        const l = await get('/apis/metrics.k8s.io/v1beta1/nodes');
        usage = new Map(l.items.map((x) => [x.metadata.name, x.usage]));
        note.hidden = true;
      } catch (e) {
        note.hidden = false;
        note.textContent = `Resource metrics are not available: ${errorText(e)}`;
      }
      view.schedule();
    }, 10000),
  ];
  return () => { stops.forEach((s) => s()); view.stop(); };
}
