// The read API, with the session cookie (never a token in script-visible storage).
// Every request says it comes from the dashboard (X-Panicle-Dashboard): the
// server accepts a change made with the cookie only from this origin.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Calls `/api/v1{path}`; throws ApiError with the server's code and message. */
export async function api(path, { method = 'GET', body, signal } = {}) {
  let res;
  try {
    res = await fetch(`/api/v1${path}`, {
      method,
      headers: body === undefined
        ? { Accept: 'application/json', 'X-Panicle-Dashboard': '1' }
        : { 'Content-Type': 'application/json', Accept: 'application/json', 'X-Panicle-Dashboard': '1' },
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      signal,
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', 'The server did not answer. Is `panicle serve` running?');
  }
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  if (!res.ok) {
    const err = data && data.error;
    throw new ApiError(res.status, (err && err.code) || `http_${res.status}`, (err && err.message) || res.statusText);
  }
  return data;
}

/** A query string from an object, leaving out empty values. */
export function qs(params) {
  const out = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== '') out.set(k, String(v));
  }
  const s = out.toString();
  return s ? `?${s}` : '';
}

/** True when an endpoint is not there (yet): a 404 on the route itself. */
export function isMissingRoute(e) {
  return e instanceof ApiError && e.status === 404 && e.code === 'not_found' && /^no route/.test(e.message);
}
