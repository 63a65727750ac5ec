// The service graph: apps as boxes, flows as edges, laid out in columns by
// how far an app sits downstream of the callers (longest path over the flow
// graph with cycles broken). The layout is deterministic and linear in apps
// and flows, so a thousand apps lay out in milliseconds and the picture does
// not jump between refreshes.

import { s } from './util.js';

const NODE_W = 200;
const NODE_H = 22;
const ROW = 30;
const COL_GAP = 120;
const PAD = 24;
const LABEL_CHARS = 28;
const BAND_GAP = 50;

// Columns for `nodes` (ids) and `edges` ({source, destination}):
// a Map id -> {x, y, rank}, plus the drawing's size.
export function layout(nodes, edges) {
  const ids = [...nodes].sort();
  const index = new Map(ids.map((id, i) => [id, i]));
  const out = ids.map(() => []);
  const indeg = ids.map(() => 0);
  const seen = new Set();
  for (const e of edges) {
    const a = index.get(e.source), b = index.get(e.destination);
    if (a === undefined || b === undefined || a === b) continue;
    const key = a + ' ' + b;
    if (seen.has(key)) continue;
    seen.add(key);
    out[a].push(b);
  }
  for (const list of out) list.sort((x, y) => x - y);

  // Break cycles: drop edges that point back into the current DFS path
  // (iterative, so a long chain cannot overflow the stack).
  const colour = new Uint8Array(ids.length); // 0 new, 1 on path, 2 done
  const keep = ids.map(() => []);
  for (let root = 0; root < ids.length; root++) {
    if (colour[root]) continue;
    const stack = [[root, 0]];
    colour[root] = 1;
    while (stack.length) {
      const top = stack[stack.length - 1];
      const [v, i] = top;
      if (i < out[v].length) {
        top[1]++;
        const w = out[v][i];
        if (colour[w] === 1) continue; // back edge: a cycle, not a rank step
        keep[v].push(w);
        if (colour[w] === 0) { colour[w] = 1; stack.push([w, 0]); }
      } else {
        colour[v] = 2;
        stack.pop();
      }
    }
  }
  for (const list of keep) for (const w of list) indeg[w]++;
  const hasPred = indeg.map((n) => n > 0);

  // Longest path from the callers (Kahn's order on the acyclic rest).
  const rank = new Int32Array(ids.length);
  const queue = [];
  for (let v = 0; v < ids.length; v++) if (indeg[v] === 0) queue.push(v);
  for (let q = 0; q < queue.length; q++) {
    const v = queue[q];
    for (const w of keep[v]) {
      if (rank[v] + 1 > rank[w]) rank[w] = rank[v] + 1;
      if (--indeg[w] === 0) queue.push(w);
    }
  }
  // Callers that nothing calls sit right before their nearest callee, not
  // all in the first column: a lone client of a deep service is drawn next
  // to it rather than with a long edge through the columns in between.
  for (let v = 0; v < ids.length; v++) {
    if (hasPred[v] || !keep[v].length) continue;
    let nearest = Infinity;
    for (const w of keep[v]) nearest = Math.min(nearest, rank[w]);
    rank[v] = Math.max(0, nearest - 1);
  }
  const linked = new Uint8Array(ids.length);
  for (let v = 0; v < ids.length; v++) for (const w of out[v]) { linked[v] = 1; linked[w] = 1; }
  let maxRank = 0;
  for (let v = 0; v < ids.length; v++) if (linked[v] && rank[v] > maxRank) maxRank = rank[v];

  // Ranks in order; apps without flows get a column group of their own at the end.
  const groups = [];
  for (let r = 0; r <= maxRank + 1; r++) groups.push([]);
  for (let v = 0; v < ids.length; v++) groups[linked[v] ? rank[v] : maxRank + 1].push(v);

  // Long columns wrap into several, so a thousand apps make a wide block
  // rather than a thirty-thousand-pixel strip.
  const perCol = Math.max(12, Math.min(60, Math.ceil(Math.sqrt(ids.length) * 1.2)));
  const preds = ids.map(() => []);
  for (let v = 0; v < ids.length; v++) for (const w of out[v]) preds[w].push(v);
  const row = new Float64Array(ids.length);
  const placed = new Uint8Array(ids.length);
  const columns = [];
  for (const group of groups) {
    if (!group.length) continue;
    // Order a column by where its callers sit (fewer crossings), then by id.
    const key = (v) => {
      let sum = 0, n = 0;
      for (const u of preds[v]) if (placed[u]) { sum += row[u]; n++; }
      return n ? sum / n : -1;
    };
    const keyed = group.map((v) => [key(v), v]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    keyed.forEach(([, v], i) => {
      if (i % perCol === 0) columns.push([]);
      columns[columns.length - 1].push(v);
      row[v] = i % perCol;
    });
    for (const v of group) placed[v] = 1;
  }
  // Many columns (long call chains) wrap into bands, like lines of text, so
  // that the drawing keeps roughly the window's shape and "fit" stays legible.
  const colW = NODE_W + COL_GAP;
  const rowsPerCol = columns.reduce((m, c) => Math.max(m, c.length), 1);
  const bandH = rowsPerCol * ROW + BAND_GAP;
  const perBand = Math.max(6, Math.ceil(Math.sqrt((1.6 * columns.length * bandH) / colW)));
  const pos = new Map();
  columns.forEach((members, c) => {
    const band = Math.floor(c / perBand);
    const x = PAD + (c % perBand) * colW;
    members.forEach((v, r) => {
      pos.set(ids[v], { x, y: PAD + band * bandH + r * ROW, rank: rank[v] });
    });
  });
  const bands = Math.max(1, Math.ceil(columns.length / perBand));
  const cols = Math.max(1, Math.min(perBand, columns.length));
  return {
    pos,
    width: PAD * 2 + cols * colW - COL_GAP,
    height: PAD * 2 + (bands - 1) * bandH + rowsPerCol * ROW,
  };
}

function shortLabel(id) {
  return id.length <= LABEL_CHARS ? id : '…' + id.slice(id.length - LABEL_CHARS + 1);
}

const SVG_NS = 'http://www.w3.org/2000/svg';
// The app id of each drawn box, for the click handler (ids stay out of
// attributes: they are Marathon's strings, kept as text only).
const nodeIds = new WeakMap();

const VERDICT_TEXT = { allow: 'allowed', deny: 'denied', would_deny: 'would be denied' };

// Draws the graph into `svg` (an <svg> element). `model` is
// {nodes: [id], flows: [{source, destination, allowed, denied, would_deny}],
//  idle: Set of ids without flows, onOpen(id)}.
export function draw(svg, model) {
  const { pos, width, height } = layout(model.nodes, model.flows);
  svg.replaceChildren();
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('width', width);
  svg.setAttribute('height', height);
  svg.dataset.nodes = String(pos.size);

  const defs = s('defs', null,
    ...['allow', 'deny', 'would_deny'].map((v) =>
      s('marker', { id: 'arrow-' + v, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 8, markerHeight: 8, markerUnits: 'userSpaceOnUse', orient: 'auto-start-reverse', class: 'arrow ' + v },
        s('path', { d: 'M0,0 L10,5 L0,10 z' }))));
  const edgeLayer = s('g', { class: 'edges' });
  const labelLayer = s('g', { class: 'edge-labels' });
  const nodeLayer = s('g', { class: 'nodes' });

  let maxVolume = 1;
  for (const f of model.flows) maxVolume = Math.max(maxVolume, (f.allowed || 0) + (f.denied || 0) + (f.would_deny || 0));
  const scale = Math.log1p(maxVolume);

  let drawnDenied = 0;
  const labelSlots = new Map();
  for (const f of model.flows) {
    const a = pos.get(f.source), b = pos.get(f.destination);
    if (!a || !b) continue;
    // One edge per verdict seen, side by side: a denied flow is never
    // hidden under the allowed traffic of the same pair.
    const parts = [['allow', f.allowed], ['deny', f.denied], ['would_deny', f.would_deny]].filter(([, n]) => n > 0);
    if (!parts.length) parts.push(['allow', 0]);
    parts.forEach(([verdict, n], i) => {
      const off = (i - (parts.length - 1) / 2) * 6;
      const sx = a.x + NODE_W, sy = a.y + NODE_H / 2 + off;
      const tx = b.x, ty = b.y + NODE_H / 2 + off;
      let d;
      if (f.source === f.destination) {
        d = `M${sx},${sy - 4} C${sx + 40},${sy - 30} ${sx + 40},${sy + 30} ${sx},${sy + 4}`;
      } else {
        const bend = Math.max(40, Math.abs(tx - sx) / 2.5);
        d = `M${sx},${sy} C${sx + bend},${sy} ${tx - bend},${ty} ${tx},${ty}`;
      }
      const what = `${f.source} → ${f.destination}: ${n} ${VERDICT_TEXT[verdict]}`;
      const w = 1 + 3 * (Math.log1p(n) / scale);
      // Bare DOM calls: this runs once per edge, thousands of times.
      const g = document.createElementNS(SVG_NS, 'g');
      g.setAttribute('class', 'edge ' + verdict);
      g.setAttribute('data-verdict', verdict);
      const title = document.createElementNS(SVG_NS, 'title');
      title.textContent = what;
      const path = document.createElementNS(SVG_NS, 'path');
      path.setAttribute('d', d);
      path.setAttribute('stroke-width', w.toFixed(2));
      path.setAttribute('marker-end', `url(#arrow-${verdict})`);
      g.append(title, path);
      edgeLayer.appendChild(g);
      if (verdict !== 'allow') {
        drawnDenied++;
        // Between neighbouring columns the label sits on the edge's
        // midpoint; a longer edge's midpoint may fall on another app's box,
        // so its label goes in the gap before the callee's column instead,
        // several callers' labels stacked there.
        let mx, my;
        if (f.source === f.destination) {
          mx = sx + 34;
          my = sy;
        } else if (tx > sx && tx - sx <= COL_GAP + 1) {
          mx = (sx + tx) / 2;
          my = (sy + ty) / 2;
        } else {
          const slot = labelSlots.get(f.destination) || 0;
          labelSlots.set(f.destination, slot + 1);
          mx = tx - COL_GAP / 2;
          my = ty + slot * 17;
        }
        const text = (verdict === 'deny' ? '✕ denied ' : '⚠ would deny ') + n;
        labelLayer.appendChild(s('g', { class: 'edge-label ' + verdict, dataset: { verdict } },
          s('title', null, what),
          s('rect', { x: mx - text.length * 3.4 - 4, y: my - 9, width: text.length * 6.8 + 8, height: 16, rx: 3 }),
          s('text', { x: mx, y: my + 3, 'text-anchor': 'middle' }, text)));
      }
    });
  }

  for (const [id, p] of pos) {
    const app = id.startsWith('/');
    let cls = 'node';
    if (model.idle && model.idle.has(id)) cls += ' idle';
    if (!app) cls += ' external';
    const box = document.createElementNS(SVG_NS, 'g');
    box.setAttribute('class', cls);
    box.setAttribute('transform', `translate(${p.x},${p.y})`);
    if (app) box.setAttribute('tabindex', '0');
    const title = document.createElementNS(SVG_NS, 'title');
    title.textContent = id;
    const rect = document.createElementNS(SVG_NS, 'rect');
    rect.setAttribute('width', NODE_W);
    rect.setAttribute('height', NODE_H);
    rect.setAttribute('rx', 4);
    const text = document.createElementNS(SVG_NS, 'text');
    text.setAttribute('x', 8);
    text.setAttribute('y', 15);
    text.textContent = shortLabel(id);
    box.append(title, rect, text);
    if (app) nodeIds.set(box, id);
    nodeLayer.appendChild(box);
  }
  // One pair of listeners per drawing surface, not two per app.
  svg.palisadeOpen = model.onOpen;
  if (!svg.dataset.listening) {
    svg.dataset.listening = 'yes';
    const open = (e) => {
      const box = e.target.closest && e.target.closest('g.node');
      const id = box && nodeIds.get(box);
      if (id && svg.palisadeOpen) svg.palisadeOpen(id);
    };
    svg.addEventListener('click', open);
    svg.addEventListener('keydown', (e) => { if (e.key === 'Enter') open(e); });
  }
  svg.append(defs, edgeLayer, nodeLayer, labelLayer);
  return { nodes: pos.size, deniedEdges: drawnDenied, width, height };
}
