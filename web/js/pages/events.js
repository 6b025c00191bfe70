// The latest events, newest first; also the table the cluster page reuses.

import { h } from '../dom.js';
import { api, qs } from '../api.js';
import { ago } from '../format.js';
import { firstRun } from '../ui.js';
import { sinceFor } from './clusters.js';

/** A link to the trace when the server knows a trace viewer, else the id. */
export function traceCell(traceId, url) {
  if (!traceId) return h('span', { class: 'muted' }, '–');
  const short = `${traceId.slice(0, 8)}…`;
  if (url) return h('a', { href: url, class: 'trace-link', target: '_blank', rel: 'noopener noreferrer', title: `Open trace ${traceId}` }, short, ' ↗');
  return h('code', { class: 'trace-id', title: `trace ${traceId} (no trace viewer configured)` }, short);
}

export function eventsTable(items, { showService = true } = {}) {
  const rows = items.map((e) =>
    h(
      'tr',
      { class: 'event-row', dataset: { id: e.event_id } },
      h('td', { class: 'nowrap' }, h('a', { href: `/events/${encodeURIComponent(e.event_id)}`, class: 'event-link' }, ago(e.timestamp))),
      h('td', { class: 'msg' }, h('span', { class: 'message-text' }, e.message || '(no message)'), e.count > 1 ? h('span', { class: 'storm-count', title: `stands for ${e.count} panics (storm control)` }, ` ×${e.count}`) : null),
      showService ? h('td', {}, e.service || h('span', { class: 'muted' }, '–')) : null,
      h('td', {}, e.environment || h('span', { class: 'muted' }, '–')),
      h('td', {}, e.release ? h('code', {}, e.release) : h('span', { class: 'muted' }, '–')),
      h('td', {}, e.pod || h('span', { class: 'muted' }, '–')),
      h('td', {}, e.route ? h('code', {}, e.route) : h('span', { class: 'muted' }, '–')),
      h('td', {}, traceCell(e.trace_id, e.trace_url)),
    ),
  );
  return h(
    'table',
    { class: 'events' },
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        h('th', { scope: 'col' }, 'When'),
        h('th', { scope: 'col' }, 'Message'),
        showService ? h('th', { scope: 'col' }, 'Service') : null,
        h('th', { scope: 'col' }, 'Env'),
        h('th', { scope: 'col' }, 'Release'),
        h('th', { scope: 'col' }, 'Pod'),
        h('th', { scope: 'col' }, 'Route'),
        h('th', { scope: 'col' }, 'Trace'),
      ),
    ),
    h('tbody', {}, rows),
  );
}

export async function eventsPage(ctx) {
  document.title = 'Events · Panicle';
  const q = ctx.query;
  const params = {
    project: q.get('project'),
    service: q.get('service'),
    environment: q.get('environment'),
    release: q.get('release'),
    since: q.get('range') ? sinceFor(q) : q.get('since'),
    until: q.get('until'),
    limit: 50,
    cursor: q.get('cursor'),
  };
  const res = await api(`/events${qs(params)}`, { signal: ctx.signal });
  const items = res.items || [];
  const page = h('div', { class: 'page events-page' }, h('div', { class: 'page-head' }, h('h1', {}, 'Latest events'), h('p', { class: 'muted' }, 'Every panic as it arrived, newest first.')));
  const filters = ['service', 'environment', 'release'].filter((k) => q.get(k));
  if (filters.length) {
    page.append(h('p', { class: 'active-filters' }, 'Filtered by ', filters.map((k) => h('span', { class: 'chip' }, `${k}: ${q.get(k)}`)), ' ', h('a', { href: '/events' }, 'clear')));
  }
  if (!items.length) {
    page.append(filters.length || q.get('cursor') ? h('section', { class: 'panel empty' }, h('p', {}, 'No events match.')) : await firstRun(ctx.signal));
    return page;
  }
  page.append(h('section', { class: 'panel table-panel' }, eventsTable(items)));
  if (res.next_cursor) {
    const p = new URLSearchParams(q);
    p.set('cursor', res.next_cursor);
    page.append(h('nav', { class: 'pager', 'aria-label': 'Pages' }, h('a', { href: '/events' }, '← Newest'), h('a', { href: `/events?${p}`, rel: 'next' }, 'Older →')));
  }
  return page;
}
