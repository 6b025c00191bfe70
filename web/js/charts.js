// SVG charts drawn here: sparkline, heatmap, bars, call-path tree.
// Every chart carries its numbers as text (labels, <title>, readouts), so it
// reads without colour.

import { h, s } from './dom.js';
import { num, exact } from './format.js';

/** A trend line over [{t, count}]. */
export function sparkline(trend, { width = 120, height = 28 } = {}) {
  const points = Array.isArray(trend) ? trend : [];
  const counts = points.map((p) => Number(p.count) || 0);
  const total = counts.reduce((a, b) => a + b, 0);
  const peak = Math.max(0, ...counts);
  const label = points.length
    ? `${num(total)} events over ${points.length} buckets, peak ${num(peak)} per bucket, last ${num(counts[counts.length - 1])}`
    : 'no trend data';
  const svg = s('svg', {
    class: 'spark',
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: 'img',
    'aria-label': label,
  });
  svg.append(s('title', {}, label));
  if (points.length < 2 || peak === 0) {
    svg.append(s('line', { x1: 0, x2: width, y1: height - 1.5, y2: height - 1.5, class: 'spark-base' }));
    return svg;
  }
  const pad = 2;
  const x = (i) => pad + (i * (width - 2 * pad)) / (points.length - 1);
  const y = (c) => height - pad - (c / peak) * (height - 2 * pad);
  const line = counts.map((c, i) => `${i ? 'L' : 'M'}${x(i).toFixed(1)},${y(c).toFixed(1)}`).join('');
  const area = `${line}L${x(counts.length - 1).toFixed(1)},${height - pad}L${x(0).toFixed(1)},${height - pad}Z`;
  svg.append(
    s('path', { d: area, class: 'spark-area' }),
    s('path', { d: line, class: 'spark-line' }),
    s('circle', { cx: x(counts.length - 1), cy: y(counts[counts.length - 1]), r: 2.2, class: 'spark-dot' }),
  );
  return svg;
}

// Five steps of one hue, light to dark; empty cells are grey.
const STEPS = ['#fdd0a2', '#fdae6b', '#fd8d3c', '#d94801', '#8c2d04'];

/** Count thresholds for the five steps: upper bounds, the last one is max. */
export function heatSteps(max) {
  if (max <= 0) return [];
  if (max <= 5) return Array.from({ length: max }, (_, i) => i + 1);
  const out = [];
  for (let i = 1; i <= 5; i++) {
    const b = Math.ceil((max * i) / 5);
    if (!out.includes(b)) out.push(b);
  }
  return out;
}

function stepOf(count, bounds) {
  for (let i = 0; i < bounds.length; i++) if (count <= bounds[i]) return i;
  return bounds.length - 1;
}

function colourFor(step, nsteps) {
  // Spread fewer steps over the whole range so the darkest means "max".
  const idx = nsteps <= 1 ? STEPS.length - 1 : Math.round((step * (STEPS.length - 1)) / (nsteps - 1));
  return STEPS[idx];
}

/** Minutes in a bucket name: `15m` → 15, `6h` → 360, `1d` → 1440. */
function bucketMinutes(bucket) {
  const m = /^(\d+)([mhd])$/.exec(String(bucket));
  if (!m) return 60;
  return Number(m[1]) * { m: 1, h: 60, d: 1440 }[m[2]];
}

function timeLabel(label, bucket) {
  if (bucket === 'hour_of_day') return /:/.test(String(label)) ? String(label) : `${String(label).padStart(2, '0')}:00`;
  const t = Date.parse(label);
  if (Number.isNaN(t)) return String(label);
  const iso = new Date(t).toISOString();
  const minutes = bucketMinutes(bucket);
  if (minutes >= 1440) return iso.slice(5, 10);
  if (minutes >= 60) return `${iso.slice(5, 10)} ${iso.slice(11, 13)}h`;
  return `${iso.slice(5, 10)} ${iso.slice(11, 16)}`;
}

function timeTitle(label, bucket) {
  if (bucket === 'hour_of_day') {
    const hh = String(label).slice(0, 2).padStart(2, '0');
    return `${hh}:00–${hh}:59 UTC`;
  }
  const t = Date.parse(label);
  return Number.isNaN(t) ? String(label) : exact(label);
}

/**
 * The API's sparse heatmap (`{start, bucket_ms, columns, depths, cells:
 * [[row, column, count]]}`) as column labels and dense rows; a dense one
 * (`times`, `cells[row][column]`) passes through.
 */
export function denseHeatmap(data) {
  const depths = data.depths || [];
  if (Array.isArray(data.times)) return { times: data.times, depths, cells: data.cells || [] };
  const n = Number(data.columns) || 0;
  const start = data.start ? Date.parse(data.start) : null;
  const step = Number(data.bucket_ms) || 0;
  const times = Array.from({ length: n }, (_, i) => (start === null || Number.isNaN(start) ? `${String(i).padStart(2, '0')}:00` : new Date(start + i * step).toISOString()));
  const cells = depths.map(() => new Array(n).fill(0));
  for (const c of data.cells || []) {
    if (Array.isArray(c) && cells[c[0]] && c[1] < n) cells[c[0]][c[1]] = Number(c[2]) || 0;
  }
  return { times, depths, cells };
}

/**
 * Depth × time heatmap. `data`: the API's answer (see denseHeatmap) with
 * `bucket`. Returns a figure with the SVG, a legend and a hover readout.
 */
export function heatmap(data, { caption = 'Events by stack depth and time' } = {}) {
  const { times, depths, cells } = denseHeatmap(data);
  const max = Number(data.max) || Math.max(0, ...cells.flat().map(Number));
  const bucket = data.bucket || '1h';
  const readout = h('p', { class: 'readout', 'aria-live': 'polite' }, 'Hover a cell for its count.');
  const fig = h('figure', { class: 'heatmap' });
  if (!times.length || !depths.length) {
    fig.append(h('p', { class: 'muted' }, 'No events in this window.'));
    return fig;
  }
  const left = 56;
  const top = 20;
  const bottom = 34;
  const cw = Math.max(10, Math.min(44, Math.floor(1100 / times.length)));
  const ch = Math.max(14, Math.min(26, Math.floor(260 / depths.length)));
  const width = left + cw * times.length + 64;
  const height = top + ch * depths.length + bottom;
  const bounds = heatSteps(max);
  const svg = s('svg', {
    class: 'heat',
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: 'img',
    'aria-label': `${caption}: ${depths.length} depths × ${times.length} ${bucket === 'hour_of_day' ? 'hours of the day' : 'time buckets'}, at most ${num(max)} events in one cell`,
  });
  // Axis titles and depth labels.
  svg.append(s('text', { x: left - 6, y: 12, class: 'axis-title', 'text-anchor': 'end' }, 'depth'));
  depths.forEach((d, j) => {
    const label = s('text', { x: left - 6, y: top + j * ch + ch / 2 + 4, class: 'axis', 'text-anchor': 'end' }, d === null ? '?' : String(d));
    if (d === null) label.append(s('title', {}, 'depth not kept: events counted but sampled (their group was over its cap)'));
    svg.append(label);
  });
  const every = Math.max(1, Math.ceil((bucket !== 'hour_of_day' && bucketMinutes(bucket) < 1440 ? 74 : 44) / cw));
  times.forEach((t, i) => {
    if (i % every !== 0) return;
    svg.append(
      s('text', { x: left + i * cw + 1, y: top + depths.length * ch + 14, class: 'axis' }, timeLabel(t, bucket)),
      s('line', { x1: left + i * cw, x2: left + i * cw, y1: top + depths.length * ch, y2: top + depths.length * ch + 4, class: 'tick' }),
    );
  });
  svg.append(
    s('text', { x: left, y: height - 4, class: 'axis-title' }, bucket === 'hour_of_day' ? 'hour of day (UTC)' : `time (UTC, one column = ${bucket})`),
  );
  const showNumbers = cw >= 22 && ch >= 14;
  depths.forEach((d, j) => {
    const row = cells[j] || [];
    times.forEach((t, i) => {
      const c = Number(row[i]) || 0;
      const where = `${d === null ? 'depth not kept' : `depth ${d}`} · ${timeTitle(t, bucket)}`;
      const text = `${where}: ${num(c)} ${c === 1 ? 'event' : 'events'}`;
      const step = c > 0 ? stepOf(c, bounds) : -1;
      const rect = s('rect', {
        x: left + i * cw + 0.5,
        y: top + j * ch + 0.5,
        width: cw - 1,
        height: ch - 1,
        fill: c > 0 ? colourFor(step, bounds.length) : '#eef0f3',
        class: 'cell',
        'data-count': c,
        'data-depth': d === null ? '' : d,
        'data-time': t,
      });
      rect.append(s('title', {}, text));
      const show = () => {
        readout.textContent = text;
      };
      rect.addEventListener('mouseenter', show);
      svg.append(rect);
      if (showNumbers && c > 0) {
        const dark = step >= Math.ceil(bounds.length / 2);
        const label = s('text', { x: left + i * cw + cw / 2, y: top + j * ch + ch / 2 + 4, 'text-anchor': 'middle', class: dark ? 'cell-n light' : 'cell-n' }, c > 999 ? '1k+' : String(c));
        label.addEventListener('mouseenter', show);
        svg.append(label);
      }
    });
  });
  const wrap = h('div', { class: 'heat-scroll' }, svg);
  fig.append(wrap, legend(bounds), readout);
  return fig;
}

function legend(bounds) {
  const items = [h('span', { class: 'legend-item' }, swatch('#eef0f3'), '0')];
  let lo = 1;
  bounds.forEach((b, i) => {
    items.push(h('span', { class: 'legend-item' }, swatch(colourFor(i, bounds.length)), lo === b ? num(b) : `${num(lo)}–${num(b)}`));
    lo = b + 1;
  });
  return h('div', { class: 'legend', 'aria-label': 'events per cell' }, h('span', { class: 'legend-title' }, 'events per cell:'), items);
}

function swatch(fill) {
  return s('svg', { width: 14, height: 14, class: 'swatch', 'aria-hidden': 'true' }, s('rect', { x: 0.5, y: 0.5, width: 13, height: 13, fill, class: 'swatch-rect' }));
}

/** A thin horizontal bar for a share of a whole. */
export function bar(count, total, width = 120) {
  const frac = total > 0 ? Math.min(1, count / total) : 0;
  return s(
    'svg',
    { class: 'bar', width, height: 10, viewBox: `0 0 ${width} 10`, 'aria-hidden': 'true' },
    s('rect', { x: 0, y: 0, width, height: 10, class: 'bar-bg' }),
    s('rect', { x: 0, y: 0, width: Math.max(frac > 0 ? 1.5 : 0, frac * width), height: 10, class: 'bar-fg' }),
  );
}

/** A distribution as a table: name, bar, count, share. */
export function distribution(title, items, { limit = 8, total } = {}) {
  const list = (Array.isArray(items) ? items : []).map((it) =>
    typeof it === 'string' ? { name: it, count: null } : { name: it.name ?? it.value ?? '', count: it.count ?? null, others: it.others },
  );
  const sum = total ?? list.reduce((a, b) => a + (Number(b.count) || 0), 0);
  const box = h('div', { class: 'dist' }, h('h3', {}, title));
  if (!list.length) {
    box.append(h('p', { class: 'muted' }, 'none recorded'));
    return box;
  }
  const rows = list.slice(0, limit).map((it) => {
    const pct = sum > 0 && it.count !== null ? Math.round((it.count / sum) * 100) : null;
    return h(
      'tr',
      {},
      h('td', { class: 'dist-name', title: it.name || (it.others ? `${it.others} more values` : 'not recorded: absent from the event, or the event was kept only as a count') }, it.name || h('span', { class: 'muted' }, it.others ? `(${num(it.others)} others)` : '(not recorded)')),
      h('td', { class: 'dist-bar' }, it.count !== null ? bar(it.count, sum, 90) : ''),
      h('td', { class: 'num' }, it.count !== null ? num(it.count) : ''),
      h('td', { class: 'num muted' }, pct !== null ? `${pct}%` : ''),
    );
  });
  box.append(h('table', { class: 'dist-table' }, h('tbody', {}, rows)));
  if (list.length > limit) box.append(h('p', { class: 'muted small' }, `and ${num(list.length - limit)} more`));
  return box;
}

/**
 * Call paths, outermost caller at the top, panic site at the leaves. Chains
 * with one child stay at one indent; only branch points indent.
 */
export function pathTree(root) {
  const total = Number(root && root.count) || 0;
  const tree = h('div', { class: 'paths' });
  const children = (root && root.children) || [];
  if (!children.length) {
    tree.append(h('p', { class: 'muted' }, 'No call paths recorded.'));
    return tree;
  }
  tree.append(branch(children, total, 0));
  return tree;
}

function branch(children, total, level) {
  const ul = h('ul', { class: 'tree' });
  const sorted = [...children].sort((a, b) => (b.count || 0) - (a.count || 0));
  for (const child of sorted) ul.append(chain(child, total, level));
  return ul;
}

function chain(node, total, level) {
  const li = h('li', {});
  let cur = node;
  const rows = [pathRow(cur, total)];
  while (cur.children && cur.children.length === 1) {
    cur = cur.children[0];
    rows.push(pathRow(cur, total));
  }
  const kids = cur.children || [];
  if (!kids.length) {
    rows[rows.length - 1].append(h('span', { class: 'tag site' }, 'panic site'));
    li.append(...rows);
    return li;
  }
  const open = level < 2 || cur.count >= total * 0.2;
  const summary = h('summary', {}, `${kids.length} callees`);
  li.append(...rows, h('details', { open }, summary, branch(kids, total, level + 1)));
  return li;
}

function pathRow(node, total) {
  const pct = total > 0 ? Math.round((node.count / total) * 100) : 0;
  return h(
    'div',
    { class: 'path-row' },
    bar(node.count || 0, total, 60),
    h('span', { class: 'num path-n', title: `${pct}% of the cluster's events` }, num(node.count)),
    h('code', { class: 'fn' }, node.function || '?'),
  );
}
