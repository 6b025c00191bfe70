// The cluster list: one row per root cause. The URL carries every filter so a
// view can be shared.

import { h } from '../dom.js';
import { api, qs, isMissingRoute } from '../api.js';
import { num, ago, growth, plural, withCode } from '../format.js';
import { sparkline } from '../charts.js';
import { firstRun } from '../ui.js';
import { STATE_FILTERS, stateActions, stateBadges } from '../states.js';
import { EVENT_FILTER_KEYS, facetsOf, filterFields, filterParams } from '../filters.js';

export const RANGES = [
  ['1h', 'Last hour', 3600e3],
  ['24h', 'Last 24 hours', 86400e3],
  ['7d', 'Last 7 days', 7 * 86400e3],
  ['30d', 'Last 30 days', 30 * 86400e3],
  ['all', 'All time', null],
];
const SORTS = [
  ['last_seen', 'Last seen'],
  ['events', 'Most events'],
  ['growth', 'Fastest growing'],
];
const FILTERS = ['project', 'state', ...EVENT_FILTER_KEYS, 'range', 'q', 'sort', 'per_page'];
const PAGE = 25;

/** Rows per page: `per_page` in the URL (1 to 100), else 25. */
function perPage(q) {
  const n = Number.parseInt(q.get('per_page') || '', 10);
  return Number.isFinite(n) ? Math.min(100, Math.max(1, n)) : PAGE;
}
const DEFAULT_RANGE = '7d';

/** The API's `since` for a range name (or an explicit since in the URL). */
export function sinceFor(query) {
  if (query.get('since')) return query.get('since');
  const range = RANGES.find((r) => r[0] === (query.get('range') || DEFAULT_RANGE));
  return range && range[2] ? new Date(Date.now() - range[2]).toISOString() : '';
}

let facetCache = null;

/**
 * Distinct values seen in the latest 500 events, for the filter suggestions;
 * kept for a minute so paging and filtering do not ask again.
 */
export async function facets(signal) {
  if (facetCache && Date.now() - facetCache.at < 60e3) return facetCache.value;
  try {
    const res = await api('/events?limit=500', { signal });
    const out = facetsOf(res.items);
    facetCache = { at: Date.now(), value: out };
    return out;
  } catch (e) {
    if (e.name === 'AbortError' || e.status === 401) throw e;
    return facetsOf([]);
  }
}

export async function projects(signal) {
  try {
    const res = await api('/projects', { signal });
    return (res && res.items) || [];
  } catch (e) {
    if (e.name === 'AbortError' || e.status === 401) throw e;
    return [];
  }
}

export async function clustersPage(ctx) {
  document.title = 'Clusters · Panicle';
  const q = ctx.query;
  const params = {
    project: q.get('project'),
    ...filterParams(q),
    since: sinceFor(q),
    until: q.get('until'),
    q: q.get('q'),
    sort: q.get('sort') || 'last_seen',
    state: q.get('state') || 'unresolved',
    limit: perPage(q),
    cursor: q.get('cursor'),
  };
  const filtered = [...EVENT_FILTER_KEYS, 'q', 'since', 'until', 'state'].some((k) => q.get(k)) || (q.get('range') && q.get('range') !== 'all');
  const [listResult, seen, projs] = await Promise.all([
    api(`/clusters${qs(params)}`, { signal: ctx.signal }).then(
      (r) => ({ ok: r }),
      (e) => {
        if (e.name === 'AbortError' || !isMissingRoute(e)) throw e;
        return { missing: true };
      },
    ),
    facets(ctx.signal),
    projects(ctx.signal),
  ]);

  const page = h('div', { class: 'page clusters-page' });
  page.append(h('div', { class: 'page-head' }, h('h1', {}, 'Clusters'), h('p', { class: 'muted' }, 'Panics grouped by root cause.')));
  page.append(filterForm(ctx, seen, projs));

  if (listResult.missing) {
    const ev = await api('/events?limit=1', { signal: ctx.signal });
    if (!(ev.items || []).length && !filtered) {
      page.append(await firstRun(ctx.signal));
      return page;
    }
    page.append(h('section', { class: 'panel' }, h('p', {}, 'This server does not group events into clusters yet. ', h('a', { href: '/events' }, 'See the latest events'), '.')));
    return page;
  }
  const items = listResult.ok.items || [];
  if (!items.length) {
    if (!filtered && !q.get('cursor')) {
      // Nothing at all, or events the cluster job has not seen yet?
      const ev = await api('/events?limit=1', { signal: ctx.signal });
      if (!(ev.items || []).length) {
        page.append(await firstRun(ctx.signal));
        return page;
      }
      const all = await api(`/clusters${qs({ state: 'all', limit: 1 })}`, { signal: ctx.signal });
      if ((all.items || []).length) {
        page.append(
          h(
            'section',
            { class: 'panel empty', 'data-empty': 'all-handled' },
            h('h2', {}, 'Nothing unresolved'),
            h('p', {}, 'Every cluster is resolved or ignored. ', h('a', { href: '/clusters?state=all' }, 'See all clusters'), '.'),
          ),
        );
        return page;
      }
      page.append(
        h(
          'section',
          { class: 'panel empty', 'data-empty': 'unclustered' },
          h('h2', {}, 'Events are arriving'),
          h('p', {}, 'The cluster job has not grouped them yet; it runs every few minutes. ', h('a', { href: '/events' }, 'See the latest events'), ' meanwhile.'),
        ),
      );
      return page;
    }
    page.append(
      h(
        'section',
        { class: 'panel empty', 'data-empty': 'no-match' },
        h('h2', {}, 'No clusters match'),
        h('p', {}, 'Try a wider time range or fewer filters. ', h('a', { href: '/clusters' }, 'Clear all filters'), '.'),
      ),
    );
    return page;
  }
  page.append(clusterTable(items, q, ctx));
  page.append(pager(q, listResult.ok.next_cursor, items.length));
  return page;
}

function filterForm(ctx, seen, projs) {
  const q = ctx.query;
  const select = (name, label, options, current) =>
    h(
      'div',
      { class: 'field' },
      h('label', { for: `f-${name}` }, label),
      h('select', { id: `f-${name}`, name }, options.map(([v, text]) => h('option', { value: v, selected: v === current }, text))),
    );
  const search = h('input', {
    id: 'f-q',
    name: 'q',
    type: 'search',
    value: q.get('q') || '',
    placeholder: 'message or function…',
    'aria-keyshortcuts': '/',
  });
  const form = h(
    'form',
    { class: 'filters', role: 'search', action: '/clusters', method: 'get' },
    h('div', { class: 'field grow' }, h('label', { for: 'f-q' }, 'Search'), search),
    projs.length > 1 ? select('project', 'Project', [['', 'All projects'], ...projs.map((p) => [String(p.id), p.name])], q.get('project') || '') : null,
    filterFields(q, seen),
    select('state', 'State', STATE_FILTERS, q.get('state') || 'unresolved'),
    select('range', 'Time range', RANGES.map(([v, t]) => [v, t]), q.get('range') || DEFAULT_RANGE),
    select('sort', 'Sort by', SORTS, q.get('sort') || 'last_seen'),
    q.get('per_page') ? h('input', { type: 'hidden', name: 'per_page', value: q.get('per_page') }) : null,
    h('div', { class: 'field actions' }, h('button', { type: 'submit', class: 'primary' }, 'Apply'), h('a', { href: '/clusters', class: 'clear' }, 'Reset')),
  );
  const apply = () => {
    const data = new FormData(form);
    const out = {};
    for (const k of FILTERS) {
      const v = String(data.get(k) || '').trim();
      if (v && !(k === 'sort' && v === 'last_seen') && !(k === 'range' && v === DEFAULT_RANGE) && !(k === 'state' && v === 'unresolved')) out[k] = v;
    }
    ctx.navigate(`/clusters${qs(out)}`);
  };
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    apply();
  });
  for (const sel of form.querySelectorAll('select')) sel.addEventListener('change', apply);
  const onKey = (ev) => {
    if (!form.isConnected) {
      document.removeEventListener('keydown', onKey);
      return;
    }
    if (ev.key === '/' && !(ev.target instanceof HTMLInputElement || ev.target instanceof HTMLTextAreaElement || ev.target instanceof HTMLSelectElement)) {
      ev.preventDefault();
      search.focus();
    }
  };
  document.addEventListener('keydown', onKey);
  return form;
}

/**
 * A cluster's page over the list's time range and event filters, so its
 * header, distributions, heatmap, paths and events count what the list's
 * row counted.
 */
export function clusterHref(id, q) {
  const range = q.get('range') || DEFAULT_RANGE;
  const view = { ...filterParams(q), range: range === 'all' ? null : range };
  if (q.get('since')) view.since = q.get('since');
  if (q.get('until')) view.until = q.get('until');
  return `/clusters/${encodeURIComponent(id)}${qs(view)}`;
}

/** What a person calls the cluster: the fix's title, else the culprit. */
export function clusterTitle(c) {
  if (c.suggestion && c.suggestion.title) return c.suggestion.title;
  if (c.culprit && c.culprit.function) return c.culprit.function;
  return c.title || `Cluster ${c.id}`;
}

export function culpritText(c) {
  const cu = c.culprit;
  if (!cu || !cu.function) return null;
  let where = cu.file || '';
  if (where && cu.line_min) where += `:${cu.line_min}${cu.line_max && cu.line_max !== cu.line_min ? `–${cu.line_max}` : ''}`;
  return where ? `${cu.function} · ${where}` : cu.function;
}

function clusterTable(items, q, ctx) {
  const range = RANGES.find((r) => r[0] === (q.get('range') || DEFAULT_RANGE));
  const boxes = [];
  const bar = h('div', { class: 'bulk-bar', hidden: true });
  const chosen = () => boxes.filter((b) => b.checked).map((b) => b.value);
  const sync = () => {
    const n = chosen().length;
    bar.hidden = n === 0;
    count.textContent = `${n} selected`;
    all.checked = n > 0 && n === boxes.length;
  };
  const count = h('span', { class: 'bulk-count' });
  bar.append(count, stateActions(chosen, null, () => ctx.render(), { bulk: true }));
  const all = h('input', { type: 'checkbox', class: 'select-all', 'aria-label': 'Select every cluster on this page' });
  all.addEventListener('change', () => {
    for (const b of boxes) b.checked = all.checked;
    sync();
  });
  const rows = items.map((c) => {
    const culprit = culpritText(c);
    const title = clusterTitle(c);
    const services = Array.isArray(c.services) ? c.services : [];
    const box = h('input', { type: 'checkbox', class: 'select-cluster', value: c.id, 'aria-label': `Select cluster ${c.id}` });
    box.addEventListener('change', sync);
    boxes.push(box);
    return h(
      'tr',
      { class: 'cluster-row', dataset: { id: c.id } },
      h('td', { class: 'select' }, box),
      h(
        'td',
        { class: 'cl-title' },
        h('a', { href: clusterHref(c.id, q), class: 'cluster-link' }, c.suggestion && title === c.suggestion.title ? withCode(title) : title),
        c.suggestion ? h('span', { class: 'tag fix', title: 'a fix is suggested' }, 'fix') : null,
        stateBadges(c.state),
        culprit && culprit !== title ? h('div', { class: 'culprit' }, h('code', {}, culprit)) : null,
        (c.message || c.title) && (c.message || c.title) !== title ? h('div', { class: 'message muted' }, c.message || c.title) : null,
      ),
      h('td', { class: 'num' }, h('strong', {}, num(c.count)), h('div', { class: 'muted small' }, plural(c.group_count ?? 1, 'group'))),
      h('td', { class: 'trend' }, sparkline(c.trend), h('div', { class: 'small' }, growth(c.trend_change ?? c.growth))),
      h('td', { class: 'services' }, services.slice(0, 3).map((sv) => h('span', { class: 'chip' }, sv)), services.length > 3 ? h('span', { class: 'muted small' }, ` +${services.length - 3}`) : null),
      h('td', {}, ago(c.first_seen)),
      h('td', {}, ago(c.last_seen)),
      h('td', { class: 'release' }, c.first_release ? h('code', {}, c.first_release) : h('span', { class: 'muted' }, '–')),
    );
  });
  return h(
    'section',
    { class: 'panel table-panel' },
    bar,
    h(
      'table',
      { class: 'clusters' },
      h('caption', { class: 'sr-only' }, 'Clusters'),
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          h('th', { scope: 'col', class: 'select' }, all),
          h('th', { scope: 'col' }, 'Cluster'),
          h('th', { scope: 'col', class: 'num' }, 'Events'),
          h('th', { scope: 'col' }, `Trend${range && range[0] !== 'all' ? ` (${range[0]})` : ''}`),
          h('th', { scope: 'col' }, 'Services'),
          h('th', { scope: 'col' }, 'First seen'),
          h('th', { scope: 'col' }, 'Last seen'),
          h('th', { scope: 'col' }, 'Started in'),
        ),
      ),
      h('tbody', {}, rows),
    ),
  );
}

/**
 * Cursor paging. The URL keeps the current cursor and, in `prev`, the cursors
 * of the pages before it (the first page has none), so Previous works from a
 * shared link too.
 */
function pager(q, next, shown) {
  const cursor = q.get('cursor') || '';
  const before = q.get('prev') ? q.get('prev').split('~') : [];
  const pageNo = cursor ? before.length + 2 : 1;
  const link = (c, chain) => {
    const p = new URLSearchParams(q);
    p.delete('cursor');
    p.delete('prev');
    if (c) p.set('cursor', c);
    if (c && chain.length) p.set('prev', chain.join('~'));
    const str = p.toString();
    return `/clusters${str ? `?${str}` : ''}`;
  };
  const start = (pageNo - 1) * perPage(q) + 1;
  return h(
    'nav',
    { class: 'pager', 'aria-label': 'Pages' },
    pageNo > 1
      ? h('a', { href: link(before[before.length - 1] || '', before.slice(0, -1)), rel: 'prev' }, '← Previous')
      : h('span', { class: 'muted' }, '← Previous'),
    h('span', { class: 'muted' }, `Page ${pageNo} · clusters ${num(start)}–${num(start + shown - 1)}`),
    next ? h('a', { href: link(next, cursor ? [...before, cursor] : []), rel: 'next' }, 'Next →') : h('span', { class: 'muted' }, 'Next →'),
  );
}
