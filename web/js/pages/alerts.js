// A project's alert rules (list, add, test, remove) and its delivery log.
// Changing rules needs an admin session; a project token sees them only.

import { h, replace } from '../dom.js';
import { api, qs } from '../api.js';
import { ago, num } from '../format.js';
import { errorBox, section } from '../ui.js';

const KINDS = [
  ['new_cluster', 'New cluster'],
  ['regression', 'Regression'],
  ['spike', 'Spike'],
  ['new_release', 'Seen in a new release'],
  ['confined', 'Confined to one pod or node'],
];
const KIND_NAMES = Object.fromEntries(KINDS);

function field(id, label, input, hint) {
  return h('div', { class: 'field' }, h('label', { for: id }, label), input, hint ? h('span', { class: 'muted hint' }, hint) : null);
}

function options(list, value) {
  return list.map(([v, text]) => h('option', { value: v, selected: v === value }, text));
}

function filtersText(r) {
  const parts = [];
  if (r.service) parts.push(`service ${r.service}`);
  if (r.environment) parts.push(`env ${r.environment}`);
  if (r.min_level) parts.push(`level ≥ ${r.min_level}`);
  if (r.kind === 'spike') parts.push(`> ${num(r.threshold)} in ${num(r.window_seconds)} s${r.factor ? ` and > ${r.factor}× usual` : ''}`);
  if (r.kind === 'confined') parts.push(`≥ ${num(r.threshold)} in ${num(r.window_seconds)} s on one host`);
  return parts.length ? parts.join(' · ') : 'every event';
}

function rulesTable(rules, project, ctx) {
  if (!rules.length) return h('p', { class: 'muted' }, 'No rules yet: add one below.');
  const rows = rules.map((r) => {
    const result = h('span', { class: 'test-result', role: 'status' });
    const test = h('button', { type: 'button', class: 'more', 'aria-label': `Send a test notification for ${r.name}` }, 'Test');
    test.addEventListener('click', async () => {
      test.disabled = true;
      result.textContent = 'Sending…';
      try {
        const res = await api(`/projects/${project}/alerts/rules/${r.id}/test`, { method: 'POST' });
        result.textContent = res.delivered ? `Delivered (HTTP ${res.status})` : `Not delivered: ${res.error}`;
        result.className = res.delivered ? 'test-result ok' : 'test-result failed';
      } catch (e) {
        replace(result, errorBox(e));
      } finally {
        test.disabled = false;
      }
    });
    const remove = h('button', { type: 'button', class: 'more', 'aria-label': `Remove ${r.name}` }, 'Remove');
    // Two clicks, no dialog: the first asks, the second removes.
    remove.addEventListener('click', async () => {
      if (remove.dataset.armed !== '1') {
        remove.dataset.armed = '1';
        remove.textContent = 'Confirm remove';
        remove.setAttribute('aria-label', `Confirm removing ${r.name} and its delivery log`);
        return;
      }
      try {
        await api(`/projects/${project}/alerts/rules/${r.id}`, { method: 'DELETE' });
        ctx.render();
      } catch (e) {
        replace(result, errorBox(e));
      }
    });
    return h(
      'tr',
      { class: 'rule-row', dataset: { id: r.id } },
      h('td', {}, r.name),
      h('td', {}, KIND_NAMES[r.kind] || r.kind),
      h('td', { class: 'rule-when' }, filtersText(r)),
      h('td', {}, h('span', { class: 'tag' }, r.destination), h('code', {}, r.url)),
      h('td', { class: 'nowrap' }, `${num(Math.round(r.cooldown_seconds / 60))} min`),
      h('td', { class: 'rule-actions' }, h('div', { class: 'nowrap' }, test, ' ', remove), result),
    );
  });
  return h(
    'table',
    { class: 'rules' },
    h('thead', {}, h('tr', {}, ['Name', 'Fires on', 'When', 'Sends to', 'Cooldown', ''].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, rows),
  );
}

function addForm(project, ctx) {
  const status = h('p', { class: 'form-error', role: 'alert' });
  const input = (id, type = 'text', props = {}) => h('input', { id, name: id, type, ...props });
  const kind = h('select', { id: 'rule-kind', name: 'kind' }, options(KINDS, 'new_cluster'));
  const destination = h('select', { id: 'rule-destination', name: 'destination' }, options([['webhook', 'Webhook (JSON)'], ['slack', 'Slack incoming webhook']], 'webhook'));
  const level = h('select', { id: 'rule-level', name: 'min_level' }, options([['', 'any'], ['error', 'error (panics)'], ['fatal', 'fatal (Go fatal errors, signals)']], ''));
  const counts = h(
    'div',
    { class: 'filters counts', hidden: true },
    field('rule-threshold', 'Threshold (events)', input('rule-threshold', 'number', { min: 1 })),
    field('rule-window', 'Window (seconds)', input('rule-window', 'number', { min: 1 })),
    field('rule-factor', 'Factor × usual rate (spike)', input('rule-factor', 'number', { min: 0, step: 'any' })),
  );
  kind.addEventListener('change', () => {
    counts.hidden = !['spike', 'confined'].includes(kind.value);
  });
  const form = h(
    'form',
    { class: 'rule-form', 'aria-label': 'Add an alert rule' },
    h(
      'div',
      { class: 'filters' },
      field('rule-name', 'Name', input('rule-name', 'text', { required: true })),
      field('rule-kind', 'Fires on', kind),
      field('rule-destination', 'Sends to', destination),
      h('div', { class: 'field grow' }, h('label', { for: 'rule-url' }, 'URL'), input('rule-url', 'url', { required: true, placeholder: 'http://hooks.internal/panicle' })),
      field('rule-service', 'Service', input('rule-service')),
      field('rule-environment', 'Environment', input('rule-environment')),
      field('rule-level', 'Minimum level', level),
      field('rule-cooldown', 'Cooldown (minutes)', input('rule-cooldown', 'number', { min: 0, value: '60' })),
    ),
    counts,
    h('button', { type: 'submit', class: 'primary' }, 'Add rule'),
    status,
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const v = (id) => form.querySelector(`#${id}`).value.trim();
    const n = (id) => (v(id) === '' ? undefined : Number(v(id)));
    const body = {
      name: v('rule-name'),
      kind: kind.value,
      destination: destination.value,
      url: v('rule-url'),
      service: v('rule-service') || undefined,
      environment: v('rule-environment') || undefined,
      min_level: level.value || undefined,
      cooldown_seconds: n('rule-cooldown') === undefined ? undefined : Math.round(n('rule-cooldown') * 60),
    };
    if (!counts.hidden) {
      body.threshold = n('rule-threshold');
      body.window_seconds = n('rule-window');
      body.factor = n('rule-factor');
    }
    try {
      await api(`/projects/${project}/alerts/rules`, { method: 'POST', body });
      ctx.render();
    } catch (e) {
      status.textContent = e.message;
    }
  });
  return form;
}

function deliveriesTable(items, rules) {
  if (!items.length) return h('p', { class: 'muted' }, 'Nothing sent yet.');
  const names = Object.fromEntries(rules.map((r) => [r.id, r.name]));
  return h(
    'table',
    { class: 'deliveries' },
    h('thead', {}, h('tr', {}, ['When', 'Rule', 'Trigger', 'Cluster', 'Status', 'Attempts', 'Last error'].map((t) => h('th', { scope: 'col' }, t)))),
    h(
      'tbody',
      {},
      items.map((d) =>
        h(
          'tr',
          { class: `delivery-row status-${d.status}` },
          h('td', { class: 'nowrap' }, ago(d.created_at)),
          h('td', {}, names[d.rule_id] || `#${d.rule_id}`),
          h('td', {}, KIND_NAMES[d.trigger] || d.trigger),
          h('td', {}, h('a', { href: `/clusters/${encodeURIComponent(d.cluster_id)}` }, `#${d.cluster_id}`)),
          h('td', {}, h('span', { class: `tag delivery-${d.status}` }, d.status)),
          h('td', {}, num(d.attempts)),
          h('td', { class: 'msg' }, d.last_error || h('span', { class: 'muted' }, '–')),
        ),
      ),
    ),
  );
}

export async function alertsPage(ctx) {
  document.title = 'Alerts · Panicle';
  const res = await api('/projects', { signal: ctx.signal });
  const projects = (res && res.items) || [];
  const page = h('div', { class: 'page alerts-page' }, h('div', { class: 'page-head' }, h('h1', {}, 'Alerts'), h('p', { class: 'muted' }, 'Rules that notify a webhook or Slack when a cluster is new, regresses, spikes, reaches a new release or stays on one host.')));
  if (!projects.length) {
    page.append(h('section', { class: 'panel empty' }, h('p', {}, 'No project to alert on yet.')));
    return page;
  }
  const wanted = ctx.query.get('project');
  const project = (projects.find((p) => String(p.id) === wanted) || projects[0]).id;
  if (projects.length > 1) {
    const pick = h('select', { id: 'alerts-project' }, options(projects.map((p) => [String(p.id), p.name]), String(project)));
    pick.addEventListener('change', () => ctx.navigate(`/alerts${qs({ project: pick.value })}`));
    page.append(h('div', { class: 'filters' }, field('alerts-project', 'Project', pick)));
  }
  const rules = ((await api(`/projects/${project}/alerts/rules`, { signal: ctx.signal })).items) || [];
  page.append(
    h('section', { class: 'panel table-panel', 'aria-label': 'Rules' }, rulesTable(rules, project, ctx)),
    h('section', { class: 'panel', 'aria-label': 'Add a rule' }, h('h2', {}, 'Add a rule'), addForm(project, ctx)),
    section('Delivery log', async () => deliveriesTable(((await api(`/projects/${project}/alerts/deliveries${qs({ limit: 100 })}`, { signal: ctx.signal })).items) || [], rules), { id: 'deliveries' }),
  );
  return page;
}
