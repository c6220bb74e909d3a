// One list-then-watch loop (the informer pattern) for every live view: relists on 410 Gone
// and after errors, keeps the objects by namespace/name, reports every change.
import { ApiError, get, lines, sleep, stream } from './api.js';

const keyOf = (o) => `${o.metadata.namespace || ''}/${o.metadata.name}`;

export function watchList(path, query, onChange, onError = () => {}) {
  const items = new Map();
  let stopped = false;
  let ctrl = null;
  (async () => {
    let backoff = 500;
    while (!stopped) {
      try {
        ctrl = new AbortController();
        const list = await get(path, query, ctrl.signal);
        items.clear();
        for (const o of list.items || []) items.set(keyOf(o), o);
        let rv = list.metadata.resourceVersion;
        onChange(items, null);
        backoff = 500;
        for (;;) {
          if (stopped) return;
          ctrl = new AbortController();
          const r = await stream(path, { ...query, watch: '1', resourceVersion: rv, allowWatchBookmarks: 'true',
            timeoutSeconds: '300' }, ctrl.signal);
          let gone = false;
          for await (const line of lines(r)) {
            if (!line.trim()) continue;
            const ev = JSON.parse(line);
            if (ev.type === 'ERROR') {
              gone = ev.object && ev.object.code === 410;
              if (!gone) throw new ApiError(ev.object && ev.object.code, ev.object);
              break;
            }
            rv = ev.object.metadata.resourceVersion || rv;
            if (ev.type === 'BOOKMARK') continue;
            if (ev.type === 'DELETED') items.delete(keyOf(ev.object));
            else items.set(keyOf(ev.object), ev.object);
            onChange(items, ev);
          }
          if (gone) break; // relist
        }
      } catch (e) {
        if (stopped || (e && e.name === 'AbortError')) return;
        onError(e);
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 10000);
      }
    }
  })();
  return () => {
    stopped = true;
    if (ctrl) ctrl.abort();
  };
}

// A value that is polled (metrics.k8s.io has no watch).
export function poll(fn, ms) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    if (stopped) return;
    try {
      await fn();
    } finally {
      if (!stopped) timer = setTimeout(tick, ms);
    }
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
