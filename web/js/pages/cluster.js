// One cluster: what to fix and why, where it breaks, when, and on what.

import { h, replace, breakable } from '../dom.js';
import { api, qs, ApiError, isMissingRoute } from '../api.js';
import { num, ago, plural, growth, exact, withCode } from '../format.js';
import { heatmap, distribution, pathTree, sparkline } from '../charts.js';
import { stack } from '../stack.js';
import { section, codeBlock } from '../ui.js';
import { RANGES, clusterTitle, culpritText, sinceFor } from './clusters.js';
import { activeFilters, filterParams } from '../filters.js';
import { eventsTable, traceCell } from './events.js';
import { stormBadge } from './event.js';
import { stateActions, stateBadges, stateText, changeText } from '../states.js';

/**
 * The events the page counts: the time range and filters the list link
 * carried (none: every event), as API parameters.
 */
function viewOf(q) {
  return { ...filterParams(q), since: q.get('range') ? sinceFor(q) : q.get('since'), until: q.get('until') };
}

/** "Last 7 days · pod: web-1 — all events": what the numbers count. */
function viewNotice(q, id) {
  const range = RANGES.find((r) => r[0] === q.get('range'));
  const parts = [range ? range[1] : null, q.get('since') ? `since ${q.get('since')}` : null, ...activeFilters(q).map(([k, v]) => `${k}: ${v}`)].filter(Boolean);
  if (!parts.length) return null;
  return h('p', { class: 'view-notice muted small' }, 'Counting the events of: ', parts.map((p) => h('span', { class: 'chip' }, p)), ' ', h('a', { href: `/clusters/${encodeURIComponent(id)}` }, 'all events'));
}

export async function clusterPage(ctx) {
  const id = ctx.params[0];
  const enc = encodeURIComponent(id);
  const view = viewOf(ctx.query);
  let c;
  try {
    c = await api(`/clusters/${enc}${qs(view)}`, { signal: ctx.signal });
  } catch (e) {
    if (e instanceof ApiError && e.status === 404 && !isMissingRoute(e)) {
      document.title = 'Cluster not found · Panicle';
      return h('section', { class: 'panel' }, h('h1', {}, 'Cluster not found'), h('p', {}, 'Cluster ids are stable across runs of the cluster job, but a cluster can be merged away. ', h('a', { href: '/clusters' }, 'All clusters')));
    }
    throw e;
  }
  const title = clusterTitle(c);
  document.title = `${title.slice(0, 60)} · Panicle`;
  const signal = ctx.signal;

  const page = h('div', { class: 'page cluster-page' }, header(c, title), viewNotice(ctx.query, id));
  page.append(statePanel(c, ctx));
  const notices = [];
  const st = c.state || {};
  if (st.regression) {
    notices.push(
      h('p', { class: 'notice regression', role: 'note' }, h('strong', {}, 'Regression: '), 'it was resolved, and a new event', st.regression.release ? [' in ', h('code', {}, st.regression.release)] : '', ' brought it back ', ago(st.regression.at), '.'),
    );
  }
  const quiet = c.returned_after_quiet || c.regression;
  if (quiet) {
    notices.push(
      h('p', { class: 'notice returned', role: 'note' }, h('strong', {}, 'Returned after a quiet period: '), `came back in `, h('code', {}, quiet.release || '?'), ` after ${plural(quiet.after_quiet_days ?? 0, 'quiet day')}.`),
    );
  }
  if (c.confined) {
    notices.push(
      h('p', { class: 'notice confined', role: 'note' }, h('strong', {}, `Only one ${c.confined.kind}: `), 'every event came from ', h('code', {}, c.confined.name), `. Suspect the ${c.confined.kind} before the code.`),
    );
  }
  if (notices.length) page.append(h('div', { class: 'notices' }, notices));

  page.append(
    h(
      'div',
      { class: 'cluster-grid' },
      suggestionPanel(c),
      h(
        'section',
        { class: 'panel stack-panel', 'aria-label': 'Culprit and stack' },
        h('div', { class: 'section-head' }, h('h2', {}, 'Culprit'), c.representative && c.representative.event_id ? h('a', { href: `/events/${encodeURIComponent(c.representative.event_id)}`, class: 'small' }, 'representative event →') : null),
        culpritText(c) ? h('p', { class: 'culprit-line' }, h('code', {}, culpritText(c))) : h('p', { class: 'muted' }, 'No in-app frame to blame.'),
        c.culprit && c.culprit.in_app === false ? h('p', { class: 'muted culprit-outside' }, 'No application frame is on the stack: this is the first frame outside the runtime (library code). Look at what started this goroutine or thread.') : null,
        h('h3', {}, 'Representative stack'),
        stack(c.representative && c.representative.frames),
      ),
    ),
  );
  page.append(heatmapPanel(c, signal, view));
  page.append(
    h(
      'div',
      { class: 'two-col' },
      section('Hot paths', async () => {
        const res = await api(`/clusters/${enc}/paths${qs(view)}`, { signal });
        return h('div', {}, h('p', { class: 'muted small' }, 'Outermost caller at the top, panic site at the leaves; bars are shares of the cluster\u2019s events.'), pathTree(res.root));
      }),
      wherePanel(c),
    ),
  );
  page.append(groupsPanel(c));
  page.append(eventsPanel(enc, signal, view));
  page.append(h('div', { class: 'two-col' }, tracesPanel(c), relatedPanel(c)));
  return page;
}

function header(c, title) {
  // The detail carries services as a distribution; the list as names.
  const services = Array.isArray(c.services) ? c.services : ((c.where && c.where.services) || []).map((s) => s.name).filter(Boolean);
  return h(
    'div',
    { class: 'page-head cluster-head' },
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '/clusters' }, 'Clusters'), ' › ', h('span', {}, `Cluster ${c.id}`)),
    h('h1', { class: 'cluster-title' }, c.suggestion && title === c.suggestion.title ? withCode(title) : title),
    c.message && c.message !== title ? h('p', { class: 'message' }, c.message) : null,
    h(
      'div',
      { class: 'stats' },
      stat('events', h('strong', {}, num(c.count))),
      stat('groups', num(c.group_count ?? (c.groups || []).length)),
      stat('trend', h('span', {}, sparkline(c.trend, { width: 140, height: 30 }), ' ', growth(c.trend_change ?? c.growth))),
      stat('first seen', ago(c.first_seen)),
      stat('last seen', ago(c.last_seen)),
      stat('started in', c.first_release ? h('code', {}, c.first_release) : '–'),
      stat('services', services.length ? services.map((s) => h('span', { class: 'chip' }, s)) : '–'),
      stat('kind', `${c.kind || 'panic'} · ${c.platform || 'other'}`),
    ),
  );
}

/** The state line and its buttons; a change reloads the page. */
function statePanel(c, ctx) {
  const st = c.state || { status: 'unresolved' };
  const reload = () => ctx.render();
  return h(
    'section',
    { class: 'panel state-panel', 'aria-label': 'State' },
    h('div', { class: 'state-line' }, h('span', { class: 'state-label' }, 'State: '), h('strong', { class: 'state-text', dataset: { status: st.status } }, stateText(st)), ' ', stateBadges(st), st.changed_by ? h('span', { class: 'muted small state-by' }, ` · ${st.changed_by}, `, ago(st.changed_at)) : null),
    stateActions(() => [c.id], st, reload),
  );
}

function stat(label, value) {
  return h('div', { class: 'stat' }, h('div', { class: 'stat-label' }, label), h('div', { class: 'stat-value' }, value));
}

function linkItem(l) {
  if (typeof l === 'string') return h('li', {}, h('a', { href: l, target: '_blank', rel: 'noopener noreferrer' }, l));
  const url = l && (l.url || l.href);
  const text = (l && (l.title || l.text)) || url || '';
  return h('li', {}, url ? h('a', { href: url, target: '_blank', rel: 'noopener noreferrer' }, text) : text);
}

function sourceText(src) {
  if (!src) return null;
  if (src.kind === 'rule') return h('span', { class: 'source' }, 'from rule ', h('code', {}, src.id || '?'));
  if (src.kind === 'evidence') {
    const signals = Array.isArray(src.signals) ? src.signals : [];
    return h('span', { class: 'source' }, 'derived from evidence', signals.length ? ': ' : '', signals.map((sig, i) => [i ? ', ' : '', h('span', { class: 'signal' }, typeof sig === 'string' ? sig.replace(/_/g, ' ') : JSON.stringify(sig))]));
  }
  return h('span', { class: 'source' }, `from ${src.kind || 'unknown source'}`);
}

function suggestionPanel(c) {
  const s = c.suggestion;
  const box = h('section', { class: 'panel suggestion', 'aria-label': 'Fix suggestion' });
  if (!s) {
    box.append(h('div', { class: 'section-head' }, h('h2', {}, 'Fix suggestion')), h('p', { class: 'muted' }, 'No rule matched this panic and the evidence does not point to a fix yet. The culprit and stack below are the best lead.'));
    return box;
  }
  box.append(
    h('div', { class: 'section-head' }, h('h2', {}, 'Fix suggestion'), sourceText(s.source)),
    h('h3', { class: 'suggestion-title' }, withCode(s.title || '')),
  );
  if (s.why) box.append(h('h4', {}, 'Why it panics'), h('p', { class: 'prose' }, withCode(s.why)));
  if (s.how) box.append(h('h4', {}, 'How to fix'), h('p', { class: 'prose' }, withCode(s.how)));
  if (s.code) box.append(codeBlock(s.code, 'the suggested code'));
  const caught = Array.isArray(s.caught_by) ? s.caught_by : [];
  if (caught.length) box.append(h('h4', {}, 'What would have caught it'), h('ul', { class: 'caught' }, caught.map((x) => h('li', {}, typeof x === 'string' ? withCode(x) : JSON.stringify(x)))));
  const because = Array.isArray(s.because) ? s.because : [];
  if (because.length) box.append(h('h4', {}, 'Evidence'), h('ul', { class: 'because' }, because.map((x) => h('li', {}, typeof x === 'string' ? withCode(x) : JSON.stringify(x)))));
  const links = Array.isArray(s.links) ? s.links : [];
  if (links.length) box.append(h('h4', {}, 'Read more'), h('ul', { class: 'links' }, links.map(linkItem)));
  return box;
}

/**
 * The window a heatmap looks at: the cluster's whole life, from the bucket
 * of its first event to the end of the bucket of its last (not now, so an
 * old cluster still shows its pattern), so the map holds every event the
 * header counts. A long life gets a coarser bucket from the server, which
 * says which.
 */
function heatWindow(c, bucket, view) {
  const last = Date.parse(c.last_seen) || Date.now();
  const first = Date.parse(c.first_seen) || last;
  const unit = bucket === '1h' ? 3600e3 : 86400e3;
  let until = (Math.floor(last / unit) + 1) * unit;
  let since = Math.floor(first / unit) * unit;
  // Never wider than the view's own range: the map counts what the header counts.
  if (view && view.since) since = Math.max(since, Date.parse(view.since) || since);
  if (view && view.until) until = Math.min(until, Date.parse(view.until) || until);
  if (since >= until) until = since + unit;
  return { since: new Date(since).toISOString(), until: new Date(until).toISOString() };
}

function heatmapPanel(c, signal, view) {
  const enc = encodeURIComponent(c.id);
  const last = Date.parse(c.last_seen);
  const first = Date.parse(c.first_seen);
  let bucket = last - first > 3 * 86400e3 ? '1d' : '1h';
  let compare = false;
  const body = h('div', { class: 'section-body' });
  const buttons = [
    ['1h', 'By hour'],
    ['1d', 'By day'],
    ['hour_of_day', 'Hour of day'],
  ].map(([b, text]) => {
    const btn = h('button', { type: 'button', class: 'seg', 'aria-pressed': String(b === bucket), dataset: { bucket: b } }, text);
    btn.addEventListener('click', () => {
      bucket = b;
      for (const x of buttons) x.setAttribute('aria-pressed', String(x.dataset.bucket === bucket));
      load();
    });
    return btn;
  });
  const cmp = h('input', { type: 'checkbox', id: 'heat-compare' });
  cmp.addEventListener('change', () => {
    compare = cmp.checked;
    load();
  });
  const tools = h('div', { class: 'tools' }, h('div', { class: 'segmented', role: 'group', 'aria-label': 'Time axis' }, buttons), h('label', { class: 'check', for: 'heat-compare' }, cmp, ' compare with the whole project'));
  let seq = 0;
  async function load() {
    const mine = ++seq;
    replace(body, h('p', { class: 'loading' }, 'Loading…'));
    try {
      const win = heatWindow(c, bucket === 'hour_of_day' ? '1d' : bucket, view);
      const res = await api(`/clusters/${enc}/heatmap${qs({ ...view, bucket, ...win })}`, { signal });
      if (mine !== seq) return;
      const parts = [heatmap({ ...res, bucket: res.bucket || bucket }, { caption: 'This cluster' })];
      if (res.requested_bucket && res.bucket && res.bucket !== res.requested_bucket) {
        parts.push(h('p', { class: 'muted small bucket-note' }, `One column is ${res.bucket}: by ${res.requested_bucket} this window would need more than 200 columns.`));
      }
      if (compare && res.project) {
        parts.unshift(h('h3', {}, 'This cluster'));
        parts.push(h('h3', {}, 'Whole project, same window'), heatmap({ ...res.project, bucket: res.bucket || bucket }, { caption: 'Whole project' }));
      }
      replace(body, parts);
    } catch (e) {
      if (e.name === 'AbortError' || mine !== seq) return;
      replace(body, h('div', { class: 'error-box', role: 'alert' }, `Heatmap: ${e.message}`));
    }
  }
  load();
  return h(
    'section',
    { class: 'panel heat-panel', 'aria-label': 'Heatmap' },
    h('div', { class: 'section-head' }, h('h2', {}, 'When and how deep'), tools),
    h('p', { class: 'muted small' }, 'Each cell counts the cluster\u2019s events at one stack depth in one time bucket. A band at one depth is one call path; a spread means many.'),
    body,
  );
}

function wherePanel(c) {
  const w = c.where || {};
  const total = Number(c.count) || undefined;
  return h(
    'section',
    { class: 'panel where', 'aria-label': 'Where' },
    h('div', { class: 'section-head' }, h('h2', {}, 'Where it happens')),
    h(
      'div',
      { class: 'dist-grid' },
      distribution('Services', w.services, { total }),
      distribution('Releases', w.releases, { total }),
      distribution('Environments', w.environments, { total }),
      distribution('Routes', w.routes, { total }),
      distribution('Pods', w.pods, { total }),
      distribution('Nodes', w.nodes, { total }),
    ),
  );
}

function groupsPanel(c) {
  const groups = Array.isArray(c.groups) ? c.groups : [];
  const because = Array.isArray(c.merged_because) ? c.merged_because : [];
  const box = h('section', { class: 'panel groups', 'aria-label': 'Member groups' }, h('div', { class: 'section-head' }, h('h2', {}, `Member groups (${num(groups.length)})`)));
  if (groups.length > 1) {
    box.append(
      h(
        'p',
        { class: 'merged-because' },
        'Merged because their stacks share ',
        because.length ? because.map((f, i) => [i ? ' → ' : '', h('code', {}, breakable(f))]) : 'most of their frames near the panic site',
        '.',
      ),
    );
  } else {
    box.append(h('p', { class: 'muted' }, 'One exact group: every event had the same fingerprint.'));
  }
  if (Array.isArray(c.common_path) && c.common_path.length) {
    box.append(h('p', { class: 'small' }, 'Common path: ', c.common_path.map((f, i) => [i ? ' → ' : '', h('code', {}, breakable(f))])));
  }
  const history = changesList(c.changes);
  if (!groups.length) return box;
  if (history) box.append(history);
  // Scrolls inside the panel when its columns do not fit, never widening the page.
  box.append(
    h(
      'div',
      { class: 'table-scroll' },
      h(
        'table',
        { class: 'groups-table' },
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Group'), h('th', { scope: 'col' }, 'Culprit'), h('th', { scope: 'col', class: 'num' }, 'Events'), h('th', { scope: 'col' }, 'Why it belongs'))),
        h(
          'tbody',
          {},
          groups.map((g) =>
            h(
              'tr',
              { class: 'group-row' },
              h('td', { class: 'msg' }, g.title || h('span', { class: 'muted' }, g.id)),
              h('td', { class: 'group-culprit' }, g.culprit ? h('code', {}, breakable(typeof g.culprit === 'string' ? g.culprit : g.culprit.function || '')) : '–'),
              h('td', { class: 'num' }, num(g.count)),
              h('td', { class: 'why' }, whyMerged(g)),
            ),
          ),
        ),
      ),
    ),
  );
  return box;
}

/** What a member group shares with the cluster's representative group:
 * the server's summary ("same culprit, same kind, same error type; payload
 * differs: InvalidDigit / Empty"), the shared frames and the distance. */
function whyMerged(g) {
  const shared = Array.isArray(g.shared_frames) ? g.shared_frames : [];
  const out = [];
  const representative = typeof g.distance === 'number' && g.distance === 0;
  if (representative) out.push(h('span', { class: 'tag' }, 'representative'));
  // The server's one-line reading: culprit, kind, error type, payload.
  if (!representative && typeof g.why === 'string' && g.why) out.push(h('div', { class: 'why-text' }, g.why));
  else if (g.same_message) out.push(h('span', { class: 'tag' }, 'same message'));
  if (shared.length) {
    out.push(h('span', { class: 'small' }, `shares ${plural(shared.length, 'frame')}: `));
    out.push(shared.slice(0, 3).map((f) => h('code', { class: 'chip mono' }, breakable(f))));
    if (shared.length > 3) out.push(h('span', { class: 'muted small' }, ` +${shared.length - 3}`));
  }
  if (typeof g.distance === 'number' && g.distance > 0) out.push(h('div', { class: 'muted small' }, `distance ${g.distance.toFixed(2)} (0 = same signature)`));
  return out.length ? out : h('span', { class: 'muted' }, '–');
}

function changesList(changes) {
  if (!Array.isArray(changes) || !changes.length) return null;
  return h(
    'details',
    { class: 'changes' },
    h('summary', {}, `History (${plural(changes.length, 'change')})`),
    h('ul', {}, changes.map((ch) => h('li', { class: `change change-${ch.kind}` }, ago(ch.at), ' ', changeText(ch) || ch.kind || 'change', Array.isArray(ch.others) && ch.others.length ? [' with ', ch.others.map((o, i) => [i ? ', ' : '', h('a', { href: `/clusters/${encodeURIComponent(o)}` }, `cluster ${o}`)])] : null))),
  );
}

function eventsPanel(enc, signal, view) {
  let cursor = null;
  const holder = h('div', {});
  const more = h('button', { type: 'button', class: 'more', hidden: true }, 'Older events');
  async function load() {
    more.disabled = true;
    const res = await api(`/clusters/${enc}/events${qs({ ...view, limit: 20, cursor })}`, { signal });
    const items = res.items || [];
    if (!holder.firstChild) holder.append(items.length ? eventsTable(items) : h('p', { class: 'muted' }, 'No events.'));
    else holder.querySelector('tbody').append(...eventsTable(items).querySelectorAll('tbody tr'));
    cursor = res.next_cursor || null;
    more.hidden = !cursor;
    more.disabled = false;
  }
  more.addEventListener('click', () => load().catch((e) => holder.append(h('div', { class: 'error-box' }, e.message))));
  return section(
    'Recent events',
    async () => {
      await load();
      return h('div', { class: 'table-scroll' }, holder, more);
    },
    { cls: 'recent-events' },
  );
}

function tracesPanel(c) {
  const traces = Array.isArray(c.traces) ? c.traces : [];
  const storms = Array.isArray(c.storms) ? c.storms : [];
  const total = c.trace_count ?? traces.length;
  const box = h(
    'section',
    { class: 'panel traces', 'aria-label': 'Traces' },
    h('div', { class: 'section-head' }, h('h2', {}, 'Traces'), total ? h('span', { class: 'muted small trace-total' }, plural(total, 'distinct trace')) : null),
  );
  if (storms.length) {
    box.append(
      h(
        'ul',
        { class: 'storm-list' },
        storms.map((st) =>
          h(
            'li',
            {},
            h('a', { href: `/events/${encodeURIComponent(st.event_id)}` }, stormBadge(st)),
            ' ',
            h('span', { class: 'muted small', title: exact(st.timestamp) }, ago(st.timestamp)),
            ' ',
            h('span', { class: 'muted small' }, 'storm: folded into one event, its sampled traces below'),
          ),
        ),
      ),
    );
  }
  if (!traces.length) {
    box.append(h('p', { class: 'muted' }, 'No event carried a trace id. The SDK picks it up from the current OpenTelemetry span.'));
    return box;
  }
  const SHOWN = 6;
  const list = h(
    'ul',
    { class: 'trace-list' },
    traces.map((t, i) =>
      h(
        'li',
        { hidden: i >= SHOWN, dataset: { trace: t.trace_id || '' } },
        traceCell(t.trace_id, t.url),
        ' ',
        h('span', { class: 'muted small', title: exact(t.timestamp) }, ago(t.timestamp)),
        t.request_id ? [' · ', h('code', { class: 'small' }, t.request_id)] : null,
        t.route ? [' · ', h('code', { class: 'small' }, t.route)] : null,
        t.event_id ? [' · ', h('a', { href: `/events/${encodeURIComponent(t.event_id)}`, class: 'small' }, t.folded_into ? 'folded event' : 'event')] : null,
      ),
    ),
  );
  box.append(list);
  if (traces.length > SHOWN) {
    const more = h('button', { type: 'button', class: 'link-button small' }, `Show all ${traces.length} traces`);
    more.addEventListener('click', () => {
      for (const li of list.children) li.hidden = false;
      more.remove();
    });
    box.append(more);
  }
  return box;
}

function relatedPanel(c) {
  const related = Array.isArray(c.related) ? c.related : [];
  const box = h('section', { class: 'panel related', 'aria-label': 'Related clusters' }, h('div', { class: 'section-head' }, h('h2', {}, 'Related clusters')));
  if (!related.length) {
    box.append(h('p', { class: 'muted' }, 'No other cluster panicked in the same traces.'));
    return box;
  }
  box.append(
    h(
      'ul',
      { class: 'related-list' },
      related.map((r) => h('li', {}, h('a', { href: `/clusters/${encodeURIComponent(r.id)}` }, r.title || `Cluster ${r.id}`), h('span', { class: 'muted small' }, ` · ${plural(r.shared_traces ?? 0, 'shared trace')}`))),
    ),
  );
  return box;
}
