// Time-series charts in plain SVG: a line chart and a stacked area chart
// over `series` points ({at: unix seconds, ...figures}). Missing figures
// (null: nothing measured in that scrape) break the line instead of
// pretending to be zero.

import { s, h, isNum } from './util.js';

const W = 560;
const H = 170;
const M = { l: 62, r: 10, t: 10, b: 22 };

function frame(points, maxY, fmt) {
  const t0 = points[0].at, t1 = points[points.length - 1].at;
  const span = Math.max(1, t1 - t0);
  const x = (t) => M.l + ((t - t0) / span) * (W - M.l - M.r);
  const y = (v) => H - M.b - (v / (maxY || 1)) * (H - M.t - M.b);
  const axis = s('g', { class: 'axis' },
    s('line', { x1: M.l, y1: H - M.b, x2: W - M.r, y2: H - M.b }),
    s('line', { x1: M.l, y1: M.t, x2: M.l, y2: H - M.b }),
    s('text', { x: M.l - 6, y: M.t + 8, 'text-anchor': 'end' }, fmt(maxY)),
    s('text', { x: M.l - 6, y: H - M.b, 'text-anchor': 'end' }, '0'),
    s('text', { x: M.l, y: H - 6 }, new Date(t0 * 1000).toLocaleTimeString()),
    s('text', { x: W - M.r, y: H - 6, 'text-anchor': 'end' }, new Date(t1 * 1000).toLocaleTimeString()),
    s('line', { class: 'grid', x1: M.l, y1: M.t, x2: W - M.r, y2: M.t }));
  return { x, y, axis };
}

function empty(title, why) {
  return h('figure', { class: 'chart empty' }, h('figcaption', null, title), h('p', { class: 'muted' }, why));
}

function legend(lines) {
  return h('div', { class: 'legend' }, lines.map((l) => h('span', { class: 'key ' + l.cls }, l.label)));
}

// lines: [{key, label, cls}]; fmt formats the y axis; the axis reaches at
// least `floor` (an all-zero error rate reads 0 of 1%, not 0 of 100%).
export function lineChart(title, points, lines, fmt, floor = 0) {
  const pts = (points || []).filter((p) => isNum(p.at));
  if (pts.length < 2) return empty(title, 'Not enough scrapes in the window yet.');
  let maxY = floor;
  for (const p of pts) for (const l of lines) if (isNum(p[l.key])) maxY = Math.max(maxY, p[l.key]);
  if (maxY === 0) maxY = 1;
  const { x, y, axis } = frame(pts, maxY * 1.1, fmt);
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart-svg', role: 'img', 'aria-label': title }, axis);
  for (const l of lines) {
    let d = '';
    let pen = false;
    for (const p of pts) {
      const v = p[l.key];
      if (!isNum(v)) { pen = false; continue; }
      d += (pen ? 'L' : 'M') + x(p.at).toFixed(1) + ',' + y(v).toFixed(1);
      pen = true;
    }
    if (d) svg.appendChild(s('path', { class: 'line ' + l.cls, d }));
  }
  return h('figure', { class: 'chart' }, h('figcaption', null, title), svg, legend(lines));
}

// Layers stacked bottom-up in the order given, each point's layers summed.
export function stackedChart(title, points, layers, fmt) {
  const pts = (points || []).filter((p) => isNum(p.at) && layers.some((l) => isNum(p[l.key])));
  if (pts.length < 2) return empty(title, 'No timed requests in the window yet.');
  let maxY = 0;
  for (const p of pts) maxY = Math.max(maxY, layers.reduce((sum, l) => sum + (isNum(p[l.key]) ? p[l.key] : 0), 0));
  if (maxY === 0) maxY = 1;
  const { x, y, axis } = frame(pts, maxY * 1.1, fmt);
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart-svg', role: 'img', 'aria-label': title }, axis);
  const base = pts.map(() => 0);
  for (const l of layers) {
    const top = pts.map((p, i) => base[i] + (isNum(p[l.key]) ? p[l.key] : 0));
    const upper = pts.map((p, i) => x(p.at).toFixed(1) + ',' + y(top[i]).toFixed(1));
    const lower = pts.map((p, i) => x(p.at).toFixed(1) + ',' + y(base[i]).toFixed(1)).reverse();
    svg.appendChild(s('polygon', { class: 'area ' + l.cls, points: upper.concat(lower).join(' ') }, s('title', null, l.label)));
    top.forEach((v, i) => { base[i] = v; });
  }
  return h('figure', { class: 'chart' }, h('figcaption', null, title), svg, legend(layers));
}
