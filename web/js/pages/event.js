// One event: the full stack, its context, the raw JSON and its trace.

import { h } from '../dom.js';
import { api, ApiError } from '../api.js';
import { ago, exact, place, num, plural } from '../format.js';
import { stack } from '../stack.js';
import { codeBlock } from '../ui.js';
import { traceCell } from './events.js';

function kv(rows) {
  const present = rows.filter(([, v]) => v !== null && v !== undefined && v !== '');
  if (!present.length) return h('p', { class: 'muted' }, 'none');
  return h(
    'dl',
    { class: 'kv' },
    present.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v instanceof Node ? v : String(v))]),
  );
}

/** What the program recorded before the error (Sentry SDKs), oldest first. */
function breadcrumbsPanel(crumbs) {
  const text = (c) => c.message || (c.data ? JSON.stringify(c.data) : '');
  return h(
    'section',
    { class: 'panel', 'aria-label': 'Breadcrumbs' },
    h('div', { class: 'section-head' }, h('h2', {}, 'Breadcrumbs')),
    h(
      'table',
      { class: 'breadcrumbs' },
      h('thead', {}, h('tr', {}, h('th', {}, 'time'), h('th', {}, 'category'), h('th', {}, 'level'), h('th', {}, 'message'))),
      h(
        'tbody',
        {},
        crumbs.map((c) =>
          h(
            'tr',
            {},
            h('td', { class: 'muted small' }, c.timestamp ? exact(c.timestamp) : ''),
            h('td', {}, c.category || c.type || ''),
            h('td', {}, c.level || ''),
            h('td', {}, h('code', {}, text(c))),
          ),
        ),
      ),
    ),
  );
}

/** "×37, 20 traces": what a storm aggregate stands for. */
export function stormBadge(storm) {
  return h('span', { class: 'storm-badge', title: `${plural(storm.count, 'panic')} folded into one event by storm control` }, `×${num(storm.count)}, ${plural(storm.traces ?? 0, 'trace')}`);
}

/** Samples shown before the list folds. */
const STORM_SAMPLES_OPEN = 10;

/** The panics storm control folded into this event: their traces, requests, routes and messages. */
function stormPanel(storm) {
  const samples = Array.isArray(storm.samples) ? storm.samples : [];
  const messages = Array.isArray(storm.messages) ? storm.messages : [];
  const routes = Array.isArray(storm.routes) ? storm.routes : [];
  const box = h(
    'section',
    { class: 'panel storm-panel', 'aria-label': 'Storm' },
    h('div', { class: 'section-head' }, h('h2', {}, 'Storm '), stormBadge(storm)),
    h(
      'p',
      { class: 'muted small' },
      `Storm control folded ${plural(storm.count, 'panic')} of this kind into this event; ${plural(samples.length, 'sample')} kept`,
      storm.request_ids ? `, ${plural(storm.request_ids, 'request id')}` : '',
      routes.length ? [', routes ', ...routes.flatMap((r, i) => [i ? ', ' : '', h('code', {}, r)])] : '',
      '. Each folded panic\u2019s event id opens this event.',
    ),
  );
  if (samples.length) {
    const table = h(
      'table',
      { class: 'events storm-samples' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'When'), h('th', { scope: 'col' }, 'Trace'), h('th', { scope: 'col' }, 'Request id'), h('th', { scope: 'col' }, 'Route'), h('th', { scope: 'col' }, 'Message'))),
      h(
        'tbody',
        {},
        samples.map((s) =>
          h(
            'tr',
            { class: 'storm-sample', dataset: { id: s.event_id || '' } },
            h('td', { class: 'nowrap' }, ago(s.timestamp)),
            h('td', {}, traceCell(s.trace_id, s.trace_url)),
            h('td', {}, s.request_id ? h('code', {}, s.request_id) : h('span', { class: 'muted' }, '–')),
            h('td', {}, s.route ? h('code', {}, s.route) : h('span', { class: 'muted' }, '–')),
            h('td', { class: 'msg' }, s.message || h('span', { class: 'muted' }, '–')),
          ),
        ),
      ),
    );
    box.append(
      h(
        'details',
        { class: 'storm-sample-list', open: samples.length <= STORM_SAMPLES_OPEN },
        h('summary', {}, `${plural(samples.length, 'sampled panic')} (the first and last of the storm)`),
        h('div', { class: 'table-scroll' }, table),
      ),
    );
  }
  if (messages.length) {
    box.append(h('h3', {}, 'Messages'), h('ul', { class: 'storm-messages' }, messages.map((m) => h('li', {}, h('code', {}, m)))));
  }
  return box;
}

export async function eventPage(ctx) {
  const id = ctx.params[0];
  let ev;
  try {
    ev = await api(`/events/${encodeURIComponent(id)}`, { signal: ctx.signal });
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) {
      document.title = 'Event not found · Panicle';
      return h('section', { class: 'panel' }, h('h1', {}, 'Event not found'), h('p', {}, 'It may have been removed by retention. ', h('a', { href: '/events' }, 'Latest events')));
    }
    throw e;
  }
  const full = ev.event && typeof ev.event === 'object' ? ev.event : {};
  const res = full.resource && typeof full.resource === 'object' ? full.resource : {};
  const req = full.request && typeof full.request === 'object' ? full.request : {};
  const trace = full.trace && typeof full.trace === 'object' ? full.trace : {};
  const thread = full.thread && typeof full.thread === 'object' ? full.thread : {};
  const loc = full.location && typeof full.location === 'object' ? full.location : {};
  const tags = full.tags && typeof full.tags === 'object' ? full.tags : {};
  const message = ev.message || full.message || '(no message)';
  document.title = `${message.slice(0, 60)} · Event · Panicle`;

  // Which cluster is this? The group knows.
  let group = null;
  if (ev.group_id) {
    try {
      group = await api(`/groups/${encodeURIComponent(ev.group_id)}`, { signal: ctx.signal });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
    }
  }
  const crumbs = h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '/clusters' }, 'Clusters'), ' › ');
  if (group && group.cluster_id !== null && group.cluster_id !== undefined) {
    crumbs.append(h('a', { href: `/clusters/${encodeURIComponent(group.cluster_id)}`, class: 'cluster-crumb' }, `Cluster ${group.cluster_id}`), ' › ');
  }
  crumbs.append(h('span', {}, 'Event'));

  const traceId = ev.trace_id || trace.trace_id;
  // A node lives in one place: the header and the context panel each get their own.
  const traceLink = () => traceId
    ? ev.trace_url
      ? h('a', { href: ev.trace_url, class: 'trace-link', target: '_blank', rel: 'noopener noreferrer' }, 'Open trace ↗')
      : 'trace_url' in ev
        ? h('span', { class: 'muted small', title: 'set PANICLE_TRACE_URL_TEMPLATE, e.g. https://jaeger.example/trace/{trace_id}' }, 'no trace viewer configured')
        : null
    : null;

  const storm = ev.storm && typeof ev.storm === 'object' ? ev.storm : null;
  const folded = ev.folded && typeof ev.folded === 'object' ? ev.folded : null;
  const head = h(
    'div',
    { class: 'page-head event-head' },
    crumbs,
    folded
      ? h('p', { class: 'notice folded-notice', role: 'note' }, 'Event ', h('code', {}, String(folded.requested_id)), ' was folded by storm control into this event.')
      : null,
    ev.sampled
      ? h('p', { class: 'notice sampled-notice', role: 'note' }, 'Counted, but only its id, time and count were kept: its group was over its cap of events kept in full. The message is its group\u2019s.')
      : null,
    h('h1', { class: 'event-message' }, message),
    h(
      'p',
      { class: 'meta' },
      h('span', { class: 'tag kind' }, ev.kind || full.kind || 'panic'),
      h('span', { class: 'tag' }, ev.platform || full.platform || 'other'),
      ' ',
      ago(ev.timestamp),
      h('span', { class: 'muted' }, ` · ${exact(ev.timestamp)}`),
      ev.service ? h('span', {}, ' · ', h('strong', {}, ev.service)) : null,
      ev.trace_url && traceId ? h('span', {}, ' · ', traceLink()) : null,
      storm ? h('span', {}, ' · ', stormBadge(storm)) : null,
    ),
  );

  const context = h(
    'aside',
    { class: 'panel context', 'aria-label': 'Context' },
    h('h2', {}, 'Trace'),
    kv([
      ['trace id', traceId ? h('code', { class: 'trace-id-full' }, traceId) : null],
      ['span id', trace.span_id ? h('code', {}, trace.span_id) : null],
      ['viewer', traceLink()],
    ]),
    h('h2', {}, 'Request'),
    kv([
      ['method', req.method],
      ['route', req.route ? h('code', {}, req.route) : null],
      ['request id', req.request_id ? h('code', {}, req.request_id) : null],
    ]),
    h('h2', {}, 'Where'),
    kv([
      ['service', res['service.name'] || ev.service],
      ['version', res['service.version']],
      ['environment', res['deployment.environment'] || ev.environment],
      ['release', full.release || ev.release ? h('code', {}, full.release || ev.release) : null],
      ['pod', res['k8s.pod.name'] || ev.pod],
      ['namespace', res['k8s.namespace.name']],
      ['node', res['k8s.node.name'] || ev.node],
      ['container', res['k8s.container.name']],
      ['host', res['host.name']],
      ['pid', res['process.pid']],
      ['thread', thread.name || thread.id ? `${thread.name || ''}${thread.id ? ` (${thread.id})` : ''}` : null],
      ['location', loc.file ? h('code', {}, place(loc.file, loc.line, loc.column)) : null],
      ['received', ev.received_at ? exact(ev.received_at) : null],
    ]),
    h('h2', {}, 'Tags'),
    kv(Object.entries(tags).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)])),
  );
  const otherRes = Object.entries(res).filter(([k]) => !['service.name', 'service.version', 'deployment.environment', 'k8s.pod.name', 'k8s.namespace.name', 'k8s.node.name', 'k8s.container.name', 'host.name', 'process.pid'].includes(k));
  if (otherRes.length) context.append(h('h2', {}, 'Resource'), kv(otherRes.map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)])));

  const raw = JSON.stringify(full, null, 2);
  const body = h(
    'div',
    { class: 'event-grid' },
    h(
      'div',
      { class: 'event-main' },
      storm ? stormPanel(storm) : null,
      h('section', { class: 'panel', 'aria-label': 'Stack' }, h('div', { class: 'section-head' }, h('h2', {}, 'Stack'), full.thread_state ? h('span', { class: 'muted small' }, `${thread.name || 'crashing thread'} [${full.thread_state}]`) : null), stack(full.frames)),
      otherThreads(full.threads),
      Array.isArray(full.breadcrumbs) && full.breadcrumbs.length ? breadcrumbsPanel(full.breadcrumbs) : null,
      h(
        'section',
        { class: 'panel', 'aria-label': 'Raw JSON' },
        h('details', { class: 'raw' }, h('summary', {}, h('h2', { class: 'inline' }, 'Raw JSON'), h('span', { class: 'muted small' }, ` · event ${ev.event_id}`)), codeBlock(raw, 'the raw JSON')),
      ),
    ),
    context,
  );
  return h('div', { class: 'page event-page' }, head, body);
}

// The other goroutines (threads) of a Go dump, each folded: the crashing
// one is the stack above.
function otherThreads(threads) {
  if (!Array.isArray(threads) || !threads.length) return null;
  return h(
    'section',
    { class: 'panel', 'aria-label': 'Other goroutines' },
    h('div', { class: 'section-head' }, h('h2', {}, `Other goroutines (${threads.length})`)),
    threads.map((t) =>
      h(
        'details',
        { class: 'thread' },
        h('summary', {}, h('code', {}, t.name || 'thread'), t.state ? h('span', { class: 'muted small' }, ` [${t.state}]`) : null, h('span', { class: 'muted small' }, ` · ${(t.frames || []).length} frames`)),
        stack(t.frames, { showAllToggle: false }),
      ),
    ),
  );
}
