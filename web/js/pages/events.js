// The latest events, newest first; also the table the cluster page reuses.

import { h } from '../dom.js';
import { api, qs } from '../api.js';
import { ago, num, plural } from '../format.js';
import { firstRun } from '../ui.js';
import { RANGES, facets, projects, sinceFor } from './clusters.js';
import { EVENT_FILTER_KEYS, activeFilters, filterFields, filterParams } from '../filters.js';

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
      h(
        'td',
        { class: 'nowrap' },
        h('a', { href: `/events/${encodeURIComponent(e.event_id)}`, class: 'event-link' }, ago(e.timestamp)),
        e.sampled ? h('span', { class: 'tag sampled', title: 'counted, but only its id, time and count were kept: its group was over its cap' }, 'sampled') : null,
      ),
      h('td', { class: 'num event-count', title: e.count > 1 ? `stands for ${plural(e.count, 'panic')} (storm control)` : 'one panic' }, e.count > 1 ? h('strong', { class: 'storm-count' }, `×${num(e.count)}`) : num(e.count ?? 1)),
      h('td', { class: 'msg' }, h('span', { class: 'message-text' }, e.message || '(no message)')),
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
        h('th', { scope: 'col', class: 'num', title: 'panics the event stands for: a storm aggregate counts every panic it folded' }, 'Count'),
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
    ...filterParams(q),
    since: q.get('range') ? sinceFor(q) : q.get('since'),
    until: q.get('until'),
    limit: 50,
    cursor: q.get('cursor'),
  };
  const [res, seen, projs] = await Promise.all([api(`/events${qs(params)}`, { signal: ctx.signal }), facets(ctx.signal), projects(ctx.signal)]);
  const items = res.items || [];
  const page = h('div', { class: 'page events-page' }, h('div', { class: 'page-head' }, h('h1', {}, 'Latest events'), h('p', { class: 'muted' }, 'Every panic as it arrived, newest first.')));
  page.append(eventFilterForm(ctx, seen, projs));
  const filters = activeFilters(q);
  if (filters.length) {
    page.append(h('p', { class: 'active-filters' }, 'Filtered by ', filters.map(([k, v]) => h('span', { class: 'chip' }, `${k}: ${v}`)), ' ', h('a', { href: '/events' }, 'clear')));
  }
  if (!items.length) {
    page.append(filters.length || q.get('cursor') || q.get('range') || q.get('project') ? h('section', { class: 'panel empty' }, h('p', {}, 'No events match.')) : await firstRun(ctx.signal));
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

/** The cluster list's filters, for events: the same names in the URL and the API. */
function eventFilterForm(ctx, seen, projs) {
  const q = ctx.query;
  const select = (name, label, options, current) =>
    h(
      'div',
      { class: 'field' },
      h('label', { for: `f-${name}` }, label),
      h('select', { id: `f-${name}`, name }, options.map(([v, text]) => h('option', { value: v, selected: v === current }, text))),
    );
  const form = h(
    'form',
    { class: 'filters', role: 'search', action: '/events', method: 'get' },
    projs.length > 1 ? select('project', 'Project', [['', 'All projects'], ...projs.map((p) => [String(p.id), p.name])], q.get('project') || '') : null,
    filterFields(q, seen),
    select('range', 'Time range', RANGES.map(([v, t]) => [v, t]), q.get('range') || 'all'),
    h('div', { class: 'field actions' }, h('button', { type: 'submit', class: 'primary' }, 'Apply'), h('a', { href: '/events', class: 'clear' }, 'Reset')),
  );
  const apply = () => {
    const data = new FormData(form);
    const out = {};
    for (const k of ['project', ...EVENT_FILTER_KEYS, 'range']) {
      const v = String(data.get(k) || '').trim();
      if (v && !(k === 'range' && v === 'all')) out[k] = v;
    }
    ctx.navigate(`/events${qs(out)}`);
  };
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    apply();
  });
  for (const sel of form.querySelectorAll('select')) sel.addEventListener('change', apply);
  return form;
}
