// The event filters the cluster list and the events page share. The URL
// carries them (a view can be shared) and the API takes the same names:
// an unknown one is a 400 there, never a filter silently ignored.

import { h } from './dom.js';

/** Always shown: [name, label]. */
export const MAIN_FILTERS = [
  ['service', 'Service'],
  ['environment', 'Environment'],
  ['release', 'Release'],
];

/** Behind "More filters" unless one is set. */
export const MORE_FILTERS = [
  ['pod', 'Pod'],
  ['node', 'Node'],
  ['route', 'Route'],
  ['trace_id', 'Trace id'],
  ['kind', 'Kind'],
  ['platform', 'Platform'],
];

export const EVENT_FILTER_KEYS = [...MAIN_FILTERS, ...MORE_FILTERS].map(([k]) => k);

/** The event filters of a URL query, as API parameters. */
export function filterParams(q) {
  const out = {};
  for (const k of EVENT_FILTER_KEYS) out[k] = q.get(k);
  return out;
}

/** The event filters set in a URL query: [[name, value]]. */
export function activeFilters(q) {
  return EVENT_FILTER_KEYS.filter((k) => q.get(k)).map((k) => [k, q.get(k)]);
}

function field(q, name, label, values) {
  const listId = `dl-${name}`;
  return h(
    'div',
    { class: 'field' },
    h('label', { for: `f-${name}` }, label),
    h('input', { id: `f-${name}`, name, type: 'text', value: q.get(name) || '', list: listId, placeholder: 'any', autocomplete: 'off' }),
    h('datalist', { id: listId }, [...(values || [])].sort().map((v) => h('option', { value: v }))),
  );
}

/**
 * The filter inputs: the main ones, then the others in a disclosure that
 * starts open when one of them is set. `seen`: name → Set of values.
 */
export function filterFields(q, seen) {
  const more = h(
    'details',
    { class: 'more-filters', open: MORE_FILTERS.some(([k]) => q.get(k)) },
    h('summary', {}, 'More filters'),
    h('div', { class: 'more-fields' }, MORE_FILTERS.map(([k, label]) => field(q, k, label, seen[k]))),
  );
  return [...MAIN_FILTERS.map(([k, label]) => field(q, k, label, seen[k])), more];
}

/** Distinct values of each filter in some events, for the suggestions. */
export function facetsOf(items) {
  const out = Object.fromEntries(EVENT_FILTER_KEYS.filter((k) => k !== 'trace_id').map((k) => [k, new Set()]));
  for (const e of items || []) for (const k of Object.keys(out)) if (e[k]) out[k].add(e[k]);
  return out;
}
