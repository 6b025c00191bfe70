// Cluster states: the badges, the buttons of a cluster page, the bulk bar of
// the list, and what the history says about a state change.

import { h } from './dom.js';
import { api } from './api.js';

/** The states the list filters on; the API's default is unresolved. */
export const STATE_FILTERS = [
  ['unresolved', 'Unresolved'],
  ['resolved', 'Resolved'],
  ['ignored', 'Ignored'],
  ['all', 'All states'],
];

/** What a state says in a few words: "resolved in shop@1.4", "ignored until 10 events". */
export function stateText(st) {
  if (!st || st.status === 'unresolved') return 'unresolved';
  if (st.status === 'resolved') {
    if (st.resolution === 'in_release') return `resolved in ${st.release}`;
    if (st.resolution === 'next_release') return st.release ? `resolved in the release after ${st.release}` : 'resolved in the next release';
    return 'resolved';
  }
  const ig = st.ignore || {};
  if (ig.until_events) return `ignored until ${ig.until_events} more events (${ig.seen_events ?? 0} so far)`;
  if (ig.until_pods) return `ignored until ${ig.until_pods} more pods (${ig.seen_pods ?? 0} so far)`;
  if (ig.until && ig.until !== 'forever') return `ignored until ${new Date(ig.until).toLocaleString()}`;
  return 'ignored';
}

/** The state tag of a list row or a cluster head; the regression badge beside it. */
export function stateBadges(st) {
  const out = [];
  if (st && st.status && st.status !== 'unresolved') out.push(h('span', { class: `tag state state-${st.status}`, title: stateText(st) }, st.status));
  if (st && st.regression) {
    const rel = st.regression.release;
    out.push(h('span', { class: 'tag regression-badge', title: `a new event${rel ? ` in ${rel}` : ''} reopened it on ${new Date(st.regression.at).toLocaleString()}` }, rel ? `regressed in ${rel}` : 'regressed'));
  }
  return out;
}

/** Sends a state change for one cluster (`ids` of one) or many. */
export async function changeState(ids, body) {
  if (ids.length === 1) return api(`/clusters/${encodeURIComponent(ids[0])}/state`, { method: 'PUT', body });
  return api('/clusters/state', { method: 'POST', body: { ids, ...body } });
}

/** An inline form for the choices that take a value: release, ignore until. */
function ignoreForm(submit) {
  const kind = h(
    'select',
    { name: 'kind', 'aria-label': 'Ignore until' },
    h('option', { value: 'forever' }, 'forever'),
    h('option', { value: 'until_events' }, 'until N more events'),
    h('option', { value: 'until_pods' }, 'until N more pods'),
    h('option', { value: 'until' }, 'until a time'),
  );
  const value = h('input', { name: 'value', type: 'text', placeholder: 'N, or a time', 'aria-label': 'How many, or until when', hidden: true });
  kind.addEventListener('change', () => {
    value.hidden = kind.value === 'forever';
    value.type = kind.value === 'until' ? 'datetime-local' : 'number';
  });
  const form = h('form', { class: 'state-form ignore-form', hidden: true }, kind, ' ', value, ' ', h('button', { type: 'submit' }, 'Ignore'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const body = { state: 'ignored' };
    if (kind.value === 'until') body.until = new Date(value.value).toISOString();
    else if (kind.value !== 'forever') body[kind.value] = Number.parseInt(value.value, 10);
    submit(body);
  });
  return form;
}

function releaseForm(submit) {
  const input = h('input', { name: 'release', type: 'text', placeholder: 'e.g. shop@1.4.0', 'aria-label': 'Release with the fix', required: true });
  const form = h('form', { class: 'state-form release-form', hidden: true }, input, ' ', h('button', { type: 'submit' }, 'Resolve'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    submit({ state: 'resolved_in_release', release: input.value.trim() });
  });
  return form;
}

/**
 * The state buttons of a cluster page (or of the list's bulk bar when
 * `ids()` names several): resolve, resolve in the next release, resolve in
 * release…, ignore…, reopen. `done` runs after a change went through.
 */
export function stateActions(ids, st, done, { bulk = false } = {}) {
  const status = h('p', { class: 'state-error error-text', role: 'alert', hidden: true });
  const submit = async (body) => {
    const chosen = ids();
    if (!chosen.length) return;
    status.hidden = true;
    try {
      await changeState(chosen, body);
      done();
    } catch (e) {
      status.textContent = e.message;
      status.hidden = false;
    }
  };
  const rel = releaseForm(submit);
  const ign = ignoreForm(submit);
  const button = (action, text, onclick) => h('button', { type: 'button', class: 'state-btn', dataset: { action }, onclick }, text);
  const open = !st || st.status === 'unresolved';
  return h(
    'div',
    { class: bulk ? 'state-actions bulk-actions' : 'state-actions', role: 'group', 'aria-label': bulk ? 'Change the selected clusters' : 'Change the state' },
    bulk || open ? button('resolve', 'Resolve', () => submit({ state: 'resolved' })) : null,
    bulk || open ? button('resolve-next', 'Resolve in next release', () => submit({ state: 'resolved_in_next_release' })) : null,
    bulk || open ? button('resolve-release', 'Resolve in release…', () => { rel.hidden = !rel.hidden; ign.hidden = true; }) : null,
    bulk || open ? button('ignore', 'Ignore…', () => { ign.hidden = !ign.hidden; rel.hidden = true; }) : null,
    bulk || !open ? button('reopen', 'Reopen', () => submit({ state: 'unresolved' })) : null,
    rel,
    ign,
    status,
  );
}

/** A history line's words for a state change, regression or reopen. */
export function changeText(ch) {
  const d = ch.detail || {};
  const by = ch.actor ? ` by ${ch.actor}` : '';
  if (ch.kind === 'regression') return `regressed: a new event${d.release ? ` in ${d.release}` : ''} reopened it`;
  if (ch.kind === 'reopened') return `reopened: ${d.why || 'the ignore ended'}`;
  if (ch.kind === 'state') {
    const st = { status: d.status, resolution: d.resolution, release: d.release, ignore: d.until_events || d.until_pods || d.until_ms ? { until_events: d.until_events, until_pods: d.until_pods, until: d.until_ms ? new Date(d.until_ms).toISOString() : undefined } : null };
    return `set to ${stateText(st)}${by}${d.because ? ` (${d.because})` : ''}`;
  }
  return null;
}
