// Numbers and times as people read them.

import { h } from './dom.js';

const nf = new Intl.NumberFormat('en');

export function num(n) {
  return n === null || n === undefined ? '–' : nf.format(n);
}

export function plural(n, one, many = `${one}s`) {
  return `${num(n)} ${n === 1 ? one : many}`;
}

/** "3 min ago" for a timestamp, with the exact UTC time on hover. */
export function ago(iso, now = Date.now()) {
  if (!iso) return h('span', { class: 'muted' }, '–');
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return h('span', {}, String(iso));
  return h('time', { datetime: iso, title: exact(iso) }, relative(t, now));
}

export function relative(t, now = Date.now()) {
  const d = Math.round((now - t) / 1000);
  const future = d < 0;
  const a = Math.abs(d);
  let text;
  if (a < 45) text = 'just now';
  else if (a < 90 * 60) text = `${Math.max(1, Math.round(a / 60))} min`;
  else if (a < 36 * 3600) text = `${Math.round(a / 3600)} h`;
  else text = `${Math.round(a / 86400)} d`;
  if (text === 'just now') return text;
  return future ? `in ${text}` : `${text} ago`;
}

/** "2025-05-01 14:03:07 UTC". */
export function exact(iso) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return String(iso);
  return new Date(t).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
}

/**
 * The trend's comparison: "new" for a cluster first seen within the
 * compared windows, "back" for one quiet through the older, else growth as
 * a signed percentage with an arrow, readable without colour. Takes the
 * API's `trend_change` (or a bare growth ratio from an older server).
 */
export function growth(change) {
  if (change && typeof change === 'object') {
    if (change.kind === 'new') return h('span', { class: 'growth new', title: 'first seen within the compared windows: nothing like to compare with' }, 'new');
    if (change.kind === 'returned') return h('span', { class: 'growth up', title: 'no events in the previous period of the same length' }, '↑ back');
    return growth(change.ratio);
  }
  const g = change;
  if (g === null || g === undefined || Number.isNaN(g)) return null;
  const pct = Math.round(g * 100);
  if (pct === 0) return h('span', { class: 'growth flat', title: 'no change against the previous period' }, '→ 0%');
  const up = pct > 0;
  return h(
    'span',
    { class: ['growth', up ? 'up' : 'down'], title: 'change in events against the previous period of the same length' },
    `${up ? '↑ +' : '↓ '}${num(pct)}%`,
  );
}

/** A frame's place: "src/orders.rs:42". */
export function place(file, line, column) {
  if (!file) return '';
  let out = String(file);
  if (line) out += `:${line}`;
  if (line && column) out += `:${column}`;
  return out;
}

/**
 * Rule text marks code with backticks; show those spans as <code>. Only text
 * nodes are made, so this is safe for any input.
 */
export function withCode(text) {
  const parts = String(text ?? '').split(/`([^`\n]+)`/);
  return parts.map((p, i) => (i % 2 ? h('code', {}, p) : p)).filter((p) => p !== '');
}
