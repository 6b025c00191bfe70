// Sign in with an API token. The server keeps it in an HttpOnly cookie; this
// page never stores it anywhere a script could read it back.

import { h } from '../dom.js';
import { api, ApiError } from '../api.js';

/** A local path to come back to after signing in; anything else is ignored. */
function localPath(p) {
  return typeof p === 'string' && p.startsWith('/') && !p.startsWith('//') && !p.startsWith('/\\') ? p : '/clusters';
}

export async function signInPage(ctx) {
  document.title = 'Sign in · Panicle';
  const next = localPath(ctx.query.get('next'));
  // Already signed in? Go straight on.
  try {
    await api('/session', { signal: ctx.signal });
    queueMicrotask(() => ctx.navigate(next, { replace: true }));
    return h('p', { class: 'loading' }, 'Signed in; loading…');
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 401) throw e;
  }
  const input = h('input', {
    id: 'token',
    name: 'token',
    type: 'password',
    autocomplete: 'current-password',
    required: true,
    spellcheck: 'false',
    'aria-describedby': 'token-help',
  });
  const error = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const button = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h(
    'form',
    { class: 'signin', method: 'post', action: '/signin' },
    h('h1', {}, 'Sign in to Panicle'),
    h('label', { for: 'token' }, 'API token'),
    input,
    h(
      'p',
      { id: 'token-help', class: 'muted small' },
      'The first start of ',
      h('code', {}, 'panicle serve'),
      ' prints one; ',
      h('code', {}, 'panicle token create'),
      ' makes another. Signing in opens a session (an HttpOnly cookie, never the token) that ends when you sign out, after 12 hours idle, or after 7 days.',
    ),
    error,
    button,
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.hidden = true;
    button.disabled = true;
    try {
      await api('/session', { method: 'POST', body: { token: input.value.trim() } });
      input.value = '';
      ctx.navigate(next, { replace: true });
    } catch (e) {
      error.textContent = e instanceof ApiError && e.status === 401 ? 'That token is not valid.' : `Could not sign in: ${e.message}`;
      error.hidden = false;
      input.select();
    } finally {
      button.disabled = false;
    }
  });
  queueMicrotask(() => input.focus());
  return h('section', { class: 'signin-wrap' }, form);
}
