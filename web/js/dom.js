// Building DOM without HTML strings. Everything that comes from events
// (messages, function names, tags, routes) is attacker-controlled, so this
// module never touches innerHTML: text becomes text nodes, attribute names come
// only from our code, and hrefs pass through safeHref.

const SVG_NS = 'http://www.w3.org/2000/svg';

/** An HTML element: h('a', {href: '/x', class: 'link'}, 'text', child). */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  setProps(el, props);
  append(el, children);
  return el;
}

/** An SVG element, same shape as h(). */
export function s(tag, props, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setProps(el, props);
  append(el, children);
  return el;
}

function setProps(el, props) {
  if (!props) return;
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'class') {
      const cls = Array.isArray(value) ? value.filter(Boolean).join(' ') : value;
      if (cls) el.setAttribute('class', cls);
    } else if (key === 'href') {
      const href = safeHref(value);
      if (href !== null) el.setAttribute('href', href);
    } else if (key === 'dataset') {
      for (const [k, v] of Object.entries(value)) el.dataset[k] = String(v);
    } else if (key === 'value' || key === 'checked' || key === 'selected' || key === 'disabled') {
      el[key] = value;
    } else if (key === 'style' || key === 'src' || key === 'srcdoc') {
      // Inline styles break the CSP; sources are never built from data.
      throw new Error(`h(): ${key} is not allowed`);
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
}

/** Appends children: nodes as they are, anything else as a text node. */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** A code name (a frame, a path) as text with line-break opportunities
 * after its separators (`::`, `.`, `/`): a long frame name wraps between
 * segments instead of mid-word, and a table column holding it can be as
 * narrow as its longest segment rather than the whole name. */
export function breakable(text) {
  return String(text)
    .split(/(?<=::|[./])/)
    .flatMap((part, i) => (i ? [document.createElement('wbr'), part] : [part]));
}

/** Replaces all children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/**
 * Only same-origin paths and http(s) URLs become links; `javascript:`,
 * `data:` and protocol-relative URLs do not.
 */
export function safeHref(value) {
  const v = String(value).trim();
  if (v.startsWith('/') && !v.startsWith('//') && !v.startsWith('/\\')) return v;
  if (v.startsWith('#') || v.startsWith('?')) return v;
  try {
    const url = new URL(v);
    if (url.protocol === 'http:' || url.protocol === 'https:') return url.href;
  } catch {
    // not a URL
  }
  return null;
}
