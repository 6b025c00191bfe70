// The Panicle dashboard: a small client-side router over the read API.
// No framework, no build step: plain ES modules served from the binary.

import { h, replace } from './js/dom.js';
import { api, ApiError } from './js/api.js';
import { errorBox } from './js/ui.js';
import { signInPage } from './js/pages/signin.js';
import { clustersPage } from './js/pages/clusters.js';
import { clusterPage } from './js/pages/cluster.js';
import { eventPage } from './js/pages/event.js';
import { eventsPage } from './js/pages/events.js';
import { alertsPage } from './js/pages/alerts.js';

const routes = [
  [/^\/signin$/, signInPage, { public: true }],
  [/^\/(?:clusters)?$/, clustersPage],
  [/^\/clusters\/([^/]+)$/, clusterPage],
  [/^\/events$/, eventsPage],
  [/^\/events\/([^/]+)$/, eventPage],
  [/^\/alerts$/, alertsPage],
];

const main = document.getElementById('main');
const nav = document.getElementById('nav');
let current = null;

/** Goes to a same-origin path, adding a history entry unless `replace`. */
export function navigate(path, { replace: rep = false } = {}) {
  if (rep) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  render();
}

async function render() {
  if (current) current.abort();
  const ctrl = new AbortController();
  current = ctrl;
  const path = location.pathname;
  const query = new URLSearchParams(location.search);
  let match = null;
  for (const [re, page, opts] of routes) {
    const m = path.match(re);
    if (m) {
      match = { page, opts: opts || {}, params: m.slice(1).map(decodeURIComponent) };
      break;
    }
  }
  setNav(path);
  if (!match) {
    document.title = 'Not found · Panicle';
    replace(main, h('section', { class: 'panel' }, h('h1', {}, 'Page not found'), h('p', {}, h('a', { href: '/clusters' }, 'Back to clusters'))));
    return;
  }
  main.setAttribute('aria-busy', 'true');
  const ctx = { params: match.params, query, signal: ctrl.signal, navigate, render };
  try {
    // Pages that fail soft on a missing endpoint must not hide a lost session.
    if (!match.opts.public) await api('/session', { signal: ctrl.signal });
    const view = await match.page(ctx);
    if (ctrl.signal.aborted) return;
    replace(main, view);
    main.focus({ preventScroll: true });
    window.scrollTo(0, 0);
  } catch (e) {
    if (ctrl.signal.aborted || e.name === 'AbortError') return;
    if (e instanceof ApiError && e.status === 401 && !match.opts.public) {
      const next = location.pathname + location.search;
      navigate(`/signin?next=${encodeURIComponent(next)}`, { replace: true });
      return;
    }
    document.title = 'Error · Panicle';
    replace(main, errorPanel(e));
  } finally {
    if (current === ctrl) main.removeAttribute('aria-busy');
  }
}

function errorPanel(e) {
  return h('section', { class: 'panel error' }, h('h1', {}, 'Something went wrong'), errorBox(e), h('p', {}, h('a', { href: location.pathname + location.search }, 'Try again')));
}

function setNav(path) {
  const signedOut = path === '/signin';
  nav.hidden = signedOut;
  for (const a of nav.querySelectorAll('a[data-section]')) {
    const active = path === '/' ? a.dataset.section === 'clusters' : path.startsWith(`/${a.dataset.section}`);
    if (active) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

// Same-origin links route on the client; modified clicks open as usual.
document.addEventListener('click', (ev) => {
  if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  const a = ev.target instanceof Element ? ev.target.closest('a[href]') : null;
  if (!a || a.target || a.hasAttribute('download')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith('/api/')) return;
  ev.preventDefault();
  if (url.pathname === location.pathname && url.search === location.search && url.hash) {
    location.hash = url.hash;
    return;
  }
  navigate(url.pathname + url.search);
});

window.addEventListener('popstate', render);

document.getElementById('signout').addEventListener('click', async () => {
  try {
    await api('/session', { method: 'DELETE' });
  } finally {
    navigate('/signin', { replace: true });
  }
});

render();
