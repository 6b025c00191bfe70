// Pieces every page uses: panels, async sections, errors, the first-run guide.

import { h, replace } from './dom.js';
import { api, ApiError, isMissingRoute } from './api.js';

export function errorBox(e) {
  const detail =
    e instanceof ApiError ? `${e.message} (${e.code}${e.status ? `, HTTP ${e.status}` : ''})` : String(e && e.message ? e.message : e);
  return h('div', { class: 'error-box', role: 'alert' }, detail);
}

/**
 * A titled section whose body loads on its own: one slow or failing endpoint
 * leaves the rest of the page readable.
 */
export function section(title, load, { id, tools, cls } = {}) {
  const body = h('div', { class: 'section-body' }, h('p', { class: 'loading' }, 'Loading…'));
  const head = h('div', { class: 'section-head' }, h('h2', {}, title), tools || null);
  const box = h('section', { class: ['panel', cls], id, 'aria-label': title }, head, body);
  Promise.resolve()
    .then(load)
    .then((content) => replace(body, content))
    .catch((e) => {
      if (e && e.name === 'AbortError') return;
      replace(body, isMissingRoute(e) ? h('p', { class: 'muted' }, 'This server does not offer this view yet.') : errorBox(e));
    });
  return box;
}

/** A copyable block of code (text only). */
export function codeBlock(text, label) {
  const pre = h('pre', { class: 'code' }, h('code', {}, text));
  const btn = h('button', { type: 'button', class: 'copy', 'aria-label': `Copy ${label || 'code'}` }, 'Copy');
  btn.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(text);
      btn.textContent = 'Copied';
    } catch {
      btn.textContent = 'Select and copy';
    }
    setTimeout(() => {
      btn.textContent = 'Copy';
    }, 1500);
  });
  return h('div', { class: 'code-wrap' }, btn, pre);
}

/** How to send a first panic: the DSN and the SDK snippet. */
export async function firstRun(signal) {
  let projects = [];
  try {
    const res = await api('/projects', { signal });
    projects = (res && res.items) || [];
  } catch (e) {
    if (!isMissingRoute(e)) throw e;
  }
  const dsn = projects.length ? projects[0].dsn : null;
  // A project token does not see ingest keys (dsn is null): an admin has them.
  const dsnText = dsn || (projects.length ? '<your project\u2019s DSN: ask an admin (panicle project list)>' : '<the DSN that panicle serve printed on its first start>');
  const parts = [
    h('h1', {}, 'No panics yet'),
    h('p', { class: 'lead' }, 'Panicle groups your services\u2019 panics by root cause. Send a first one in two steps.'),
    h('h2', {}, '1. Add the SDK and call it first thing in ', h('code', {}, 'main')),
    codeBlock('cargo add panicle', 'the cargo command'),
    codeBlock('let _guard = panicle::init(panicle::Options::from_env());', 'the SDK line'),
    h('h2', {}, '2. Run the service with your DSN'),
    codeBlock(`PANICLE_DSN='${dsnText}' cargo run`, 'the run command'),
  ];
  if (projects.length > 1) {
    parts.push(
      h('p', { class: 'muted' }, 'Other projects:'),
      h('ul', { class: 'dsns' }, projects.slice(1).map((p) => h('li', {}, h('strong', {}, p.name), ' ', p.dsn ? h('code', {}, p.dsn) : h('span', { class: 'muted' }, 'DSN shown to admins only')))),
    );
  }
  parts.push(
    h(
      'p',
      {},
      'Not Rust, or no code change? ',
      h('code', {}, 'panicle run -- ./your-program'),
      ' reports the Rust and Go crashes that a program prints on stderr. ',
      'Panics show up here within seconds; clusters form when the cluster job next runs.',
    ),
  );
  return h('section', { class: 'panel empty-state', 'data-empty': 'first-run' }, parts);
}
