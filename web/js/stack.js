// A stack trace, panic site first: in-app frames stand out (marker, weight
// and an "app" label, not colour alone); runs of dependency frames fold
// behind a toggle.

import { h } from './dom.js';
import { place, plural } from './format.js';

/** `frames`: schema-v1 frames, innermost first. */
export function stack(frames, { showAllToggle = true } = {}) {
  const list = Array.isArray(frames) ? frames : [];
  const box = h('div', { class: 'stack' });
  if (!list.length) {
    box.append(h('p', { class: 'muted' }, 'No frames were captured for this panic.'));
    return box;
  }
  const anyInApp = list.some((f) => f && f.in_app);
  const ol = h('ol', { class: 'frames' });
  const toggles = [];
  let run = [];
  const flush = () => {
    if (!run.length) return;
    // With no in-app frame at all, folding everything would hide the stack.
    if (!anyInApp) {
      for (const [f, i] of run) ol.append(frameRow(f, i));
      run = [];
      return;
    }
    const deps = h('ol', { class: 'deps', hidden: true }, run.map(([f, i]) => frameRow(f, i)));
    const label = plural(run.length, 'dependency frame');
    const btn = h('button', { type: 'button', class: 'deps-toggle', 'aria-expanded': 'false' }, `▸ ${label}`);
    btn.addEventListener('click', () => {
      const open = deps.hidden;
      deps.hidden = !open;
      btn.setAttribute('aria-expanded', String(open));
      btn.textContent = `${open ? '▾' : '▸'} ${label}`;
    });
    toggles.push(btn);
    ol.append(h('li', { class: 'deps-group' }, btn, deps));
    run = [];
  };
  list.forEach((f, i) => {
    if (f && f.in_app) {
      flush();
      ol.append(frameRow(f, i));
    } else {
      run.push([f || {}, i]);
    }
  });
  flush();
  if (showAllToggle && toggles.length) {
    const all = h('button', { type: 'button', class: 'link-button all-frames' }, 'Expand all frames');
    all.addEventListener('click', () => {
      const expand = toggles.some((b) => b.getAttribute('aria-expanded') === 'false');
      for (const b of toggles) if ((b.getAttribute('aria-expanded') === 'false') === expand) b.click();
      all.textContent = expand ? 'Collapse dependency frames' : 'Expand all frames';
    });
    box.append(h('div', { class: 'stack-tools' }, h('span', { class: 'muted small' }, 'panic site first · ', plural(list.length, 'frame')), all));
  }
  box.append(ol);
  return box;
}

function frameRow(f, i) {
  const where = place(f.file, f.line, f.column);
  return h(
    'li',
    { class: ['frame', f.in_app ? 'in-app' : 'dep'], value: i },
    h('span', { class: 'frame-i' }, `#${i}`),
    f.in_app ? h('span', { class: 'tag app', title: 'your code (in-app frame)' }, 'app') : h('span', { class: 'tag dep-tag', title: 'a dependency or the standard library' }, 'dep'),
    // The full name (generic arguments and all) on hover: the shown one is short.
    h('code', { class: 'fn', title: f.raw_function || null }, f.function || f.instruction_addr || '<unknown>'),
    where ? h('span', { class: 'frame-file' }, where) : null,
    f.package ? h('span', { class: 'frame-pkg muted', title: 'package' }, f.package) : null,
  );
}
