// Apply pasted YAML: server-side apply (PATCH application/apply-patch+yaml, as `kubectl apply
// --server-side`) or create (POST), one request per document; the server's answer — its
// validation errors included — is shown under the editor as kubectl would print it.
import { dump, loadAll } from 'js-yaml';

import { api, get } from './api.js';
import { enc, errorText, h } from './util.js';

const discovery = new Map();

async function resourceFor(apiVersion, kind) {
  const path = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
  if (!discovery.has(path)) discovery.set(path, get(path).catch((e) => { discovery.delete(path); throw e; }));
  const list = await discovery.get(path);
  const r = (list.resources || []).find((x) => x.kind === kind && !x.name.includes('/'));
  if (!r) throw new Error(`resource mapping not found for kind "${kind}" in version "${apiVersion}": ensure CRDs are installed first`);
  return { base: path, plural: r.name, namespaced: r.namespaced };
}

async function applyOne(doc, mode, defaultNs) {
  if (!doc || typeof doc !== 'object') throw new Error('error: a document is not an object');
  const { apiVersion, kind } = doc;
  if (!apiVersion || !kind) throw new Error(`error: unable to decode: Object 'Kind' is missing (each document needs apiVersion and kind)`);
  const meta = doc.metadata || {};
  const r = await resourceFor(apiVersion, kind);
  const ns = r.namespaced ? meta.namespace || defaultNs : '';
  const coll = `${r.base}${ns ? `/namespaces/${enc(ns)}` : ''}/${r.plural}`;
  const what = `${kind.toLowerCase()}${apiVersion.includes('/') ? '.' + apiVersion.split('/')[0] : ''}/${meta.name || meta.generateName || ''}`;
  if (mode === 'create') {
    const out = await api('POST', coll, { query: { fieldManager: 'kubelite-dashboard', fieldValidation: 'Strict' },
      contentType: 'application/json', body: JSON.stringify(doc) });
    return `${kind.toLowerCase()}/${out.metadata.name} created`;
  }
  if (!meta.name) throw new Error('error: the server-side apply of an object needs metadata.name');
  await api('PATCH', `${coll}/${enc(meta.name)}`, { query: { fieldManager: 'kubelite-dashboard', fieldValidation: 'Strict' },
    contentType: 'application/apply-patch+yaml', body: dump(doc) });
  return `${what} serverside-applied`;
}

export function applyView(main) {
  const text = h('textarea', { id: 'manifest', spellcheck: 'false', rows: 20,
    placeholder: 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: my-pod\nspec:\n  containers:\n  - name: main\n    image: …' });
  const ns = h('input', { id: 'apply-namespace', value: 'default', size: 16 });
  const mode = h('select', { id: 'apply-mode' }, h('option', { value: 'apply' }, 'server-side apply'), h('option', { value: 'create' }, 'create'));
  const out = h('div', { id: 'apply-result' });
  const button = h('button', { id: 'apply', type: 'button', onclick: async () => {
    out.replaceChildren();
    button.disabled = true;
    try {
      let docs;
      try {
        docs = loadAll(text.value).filter((d) => d !== null && d !== undefined);
      } catch (e) {
        out.append(h('pre', { class: 'error' }, `error: error parsing YAML: ${e.message}`));
        return;
      }
      if (!docs.length) out.append(h('pre', { class: 'error' }, 'error: no objects passed to apply'));
      for (const d of docs.flatMap((x) => (x && x.kind === 'List' ? x.items || [] : [x]))) {
        try {
          out.append(h('pre', { class: 'ok' }, await applyOne(d, mode.value, ns.value || 'default')));
        } catch (e) {
          out.append(h('pre', { class: 'error' }, errorText(e)));
        }
      }
    } finally {
      button.disabled = false;
    }
  } }, 'Apply');
  main.replaceChildren(h('h1', {}, 'Apply YAML'),
    h('p', { class: 'muted' }, 'Paste one or more manifests (separated by ---). Each is sent as you: RBAC and validation are the server\'s.'),
    text, h('div', { class: 'actions' }, h('label', {}, 'Namespace ', ns), ' ', mode, ' ', button), out);
  return () => {};
}
