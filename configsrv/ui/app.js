// palisade's web UI: hash routes (#/, #/graph, #/app/<id>, #/nodes,
// #/policy) over configsrv's JSON API. Each page builds its controls once
// and re-renders only its data on every refresh, so a filter being typed
// keeps its focus while the figures move underneath. The current page polls
// the API every few seconds (no reload); a failed poll keeps the last data
// on screen and says, in a banner, what failed.

import { h, s, fill, appHref, appApiPath, getJSON, getText, isNum, matcher, ApiError,
  fmtDur, fmtRate, fmtPct, fmtInt, fmtBytes, fmtAge, fmtClock } from './util.js';
import { draw } from './graph.js';
import { lineChart, stackedChart } from './charts.js';

const params = new URLSearchParams(location.search);
// Seconds between polls; `?refresh=2` for a livelier demo.
const REFRESH_MS = Math.max(1, Number(params.get('refresh')) || 5) * 1000;
// Rows a table renders at most; a filter narrows the rest.
const ROW_CAP = 1000;

const main = document.getElementById('main');
const banner = document.getElementById('banner');
const staleBanner = document.getElementById('stale');
const updated = document.getElementById('updated');

// Figures for tests and the curious: how long each page's last render took.
const ui = (window.palisadeUi = { renders: {}, refreshes: 0, lastError: null, violations: [], errors: [] });
// Anything the page's Content-Security-Policy blocked, and script errors:
// the tests expect none (a blocked inline style or an injected script would
// land here).
document.addEventListener('securitypolicyviolation', (e) => ui.violations.push(`${e.violatedDirective}: ${e.blockedURI || e.sample}`));
window.addEventListener('error', (e) => ui.errors.push(String(e.message)));

function timed(name, fn) {
  const t0 = performance.now();
  const result = fn();
  const ms = performance.now() - t0;
  ui.renders[name] = ms;
  document.body.dataset['render' + name[0].toUpperCase() + name.slice(1) + 'Ms'] = ms.toFixed(1);
  return result;
}

function cell(content, cls) {
  return h('td', cls ? { class: cls } : null, content);
}

function appLink(id) {
  if (typeof id !== 'string' || !id.startsWith('/')) return h('span', { class: 'muted' }, String(id), ' (outside the mesh)');
  const a = document.createElement('a');
  a.href = appHref(id);
  a.textContent = id;
  return a;
}

// ---------------------------------------------------------------- overview

const COLUMNS = [
  { key: 'id', label: 'App', get: (a) => a.id, text: true },
  { key: 'instances', label: 'Instances', get: (a) => a.instances, num: true },
  { key: 'protocol', label: 'Protocol', get: (a) => a.protocol, text: true },
  { key: 'rate', label: 'Rate /s', get: (a) => a.rate, num: true, title: 'requests per second (HTTP) or connections per second (TCP) over the window' },
  { key: 'error_rate', label: 'Errors', get: (a) => a.error_rate, num: true, title: 'the fraction of requests answered 5xx, by meshd or the app' },
  { key: 'p50', label: 'p50', get: (a) => a.latency && a.latency.p50, num: true, title: 'median request duration, first byte in to last byte out' },
  { key: 'p99', label: 'p99', get: (a) => a.latency && a.latency.p99, num: true, title: '99th percentile of the request duration' },
  { key: 'active', label: 'Active conns', get: (a) => a.active_connections, num: true, title: 'connections open now' },
  { key: 'denied', label: 'Denied', get: (a) => a.denied, num: true, title: 'requests and connections refused by policy over the window' },
];

const overview = {
  title: 'Apps',
  sort: { key: 'rate', dir: -1 },
  filter: '',
  paths: () => ['/v1/apps'],
  mount(root) {
    this.input = h('input', { type: 'search', placeholder: 'Filter apps by id…', 'aria-label': 'filter apps', value: this.filter });
    this.input.addEventListener('input', () => { this.filter = this.input.value; this.render(); });
    this.summary = h('span', { class: 'muted' });
    this.head = h('tr');
    this.body = h('tbody');
    this.more = h('p', { class: 'note' });
    fill(root, h('h1', null, 'Apps'), h('div', { class: 'toolbar' }, this.input, this.summary),
      h('table', { class: 'data', id: 'apps' }, h('thead', null, this.head), this.body), this.more);
    this.renderHead();
    this.render();
  },
  renderHead() {
    fill(this.head, COLUMNS.map((c) => {
      const th = h('th', { class: 'sortable' + (c.num ? ' num' : ''), scope: 'col', tabindex: 0, title: c.title }, c.label);
      if (this.sort.key === c.key) th.setAttribute('aria-sort', this.sort.dir > 0 ? 'ascending' : 'descending');
      const pick = () => {
        this.sort = this.sort.key === c.key ? { key: c.key, dir: -this.sort.dir } : { key: c.key, dir: c.num ? -1 : 1 };
        this.renderHead();
        this.render();
      };
      th.addEventListener('click', pick);
      th.addEventListener('keydown', (e) => { if (e.key === 'Enter') pick(); });
      return th;
    }));
  },
  update([apps]) {
    this.data = apps;
    this.render();
  },
  render() {
    if (!this.data) return;
    timed('overview', () => {
      const list = Array.isArray(this.data.apps) ? this.data.apps : [];
      const match = matcher(this.filter);
      const col = COLUMNS.find((c) => c.key === this.sort.key) || COLUMNS[0];
      const dir = this.sort.dir;
      // Keys computed once per row, compared with < (localeCompare is
      // several times slower, and ids are ASCII in practice).
      const keyed = [];
      for (const a of list) if (match(a.id)) keyed.push({ a, k: col.get(a), id: String(a.id) });
      const cmp = (x, y) => (x < y ? -1 : x > y ? 1 : 0);
      keyed.sort((x, y) => {
        // Unmeasured figures sink to the bottom whichever way the sort goes.
        const xm = x.k === null || x.k === undefined, ym = y.k === null || y.k === undefined;
        if (xm || ym) return xm === ym ? cmp(x.id, y.id) : xm ? 1 : -1;
        const c = col.num ? x.k - y.k : cmp(String(x.k), String(y.k));
        return c * dir || cmp(x.id, y.id);
      });
      const rows = keyed.map((r) => r.a);
      const shown = rows.slice(0, ROW_CAP);
      // Rows built with bare DOM calls (no helper per cell): this loop is
      // the one that runs a thousand times per refresh.
      const frag = document.createDocumentFragment();
      for (const a of shown) {
        const unhealthy = isNum(a.healthy) && isNum(a.instances) && a.healthy < a.instances;
        const erring = isNum(a.error_rate) && a.error_rate >= 0.01;
        const tr = document.createElement('tr');
        if (erring) tr.className = 'bad';
        else if (unhealthy) tr.className = 'warn';
        const idCell = tr.insertCell();
        idCell.className = 'id';
        idCell.appendChild(appLink(a.id));
        const add = (text, cls) => {
          const td = tr.insertCell();
          if (cls) td.className = cls;
          td.textContent = text;
        };
        add(isNum(a.healthy) && isNum(a.instances) ? `${a.healthy}/${a.instances}` : fmtInt(a.instances), 'num' + (unhealthy ? ' warn-text' : ''));
        add(a.protocol ? String(a.protocol) : '—');
        add(fmtRate(a.rate), 'num');
        add(fmtPct(a.error_rate), 'num' + (erring ? ' bad-text' : ''));
        add(fmtDur(a.latency && a.latency.p50), 'num');
        add(fmtDur(a.latency && a.latency.p99), 'num');
        add(fmtInt(a.active_connections), 'num');
        add(fmtInt(a.denied), 'num' + (a.denied > 0 ? ' bad-text' : ''));
        frag.appendChild(tr);
      }
      this.body.replaceChildren(frag);
      const span = isNum(this.data.window_seconds) ? ` · figures over the last ${this.data.window_seconds} s` : '';
      this.summary.textContent = `${rows.length} of ${list.length} apps${span}`;
      this.more.textContent = rows.length > shown.length ? `Showing the first ${shown.length} of ${rows.length}; narrow the filter to see the rest.` : '';
      if (!list.length) this.more.textContent = 'No apps yet: configsrv has not read Marathon, or Marathon runs none.';
    });
  },
};

// ------------------------------------------------------------------- graph

const graph = {
  title: 'Service graph',
  filter: '',
  top: 200,
  deniedOnly: false,
  idle: false,
  // 0: fit the window's width, but never smaller than half size (text stays
  // readable; a larger graph scrolls).
  zoom: 0,
  paths: () => ['/v1/flows', '/v1/apps'],
  mount(root) {
    const input = h('input', { type: 'search', placeholder: 'Filter by app id…', 'aria-label': 'filter flows', value: this.filter });
    input.addEventListener('input', () => { this.filter = input.value; this.render(); });
    const top = h('select', { 'aria-label': 'flows shown' },
      [50, 200, 1000, 0].map((n) => h('option', { value: n, selected: n === this.top }, n ? `top ${n} flows` : 'all flows')));
    top.addEventListener('change', () => { this.top = Number(top.value); this.render(); });
    const denied = h('input', { type: 'checkbox', checked: this.deniedOnly });
    denied.addEventListener('change', () => { this.deniedOnly = denied.checked; this.render(); });
    const idle = h('input', { type: 'checkbox', checked: this.idle });
    idle.addEventListener('change', () => { this.idle = idle.checked; this.render(); });
    const zoom = (f) => () => {
      const now = Number(this.svg.getAttribute('width')) / Number(this.svg.dataset.w) || 1;
      this.zoom = f ? Math.min(2, Math.max(0.05, now * f)) : 'fit';
      this.applyZoom();
    };
    this.summary = h('p', { class: 'note' });
    this.svg = s('svg', { class: 'graph', id: 'graph', role: 'img', 'aria-label': 'service graph' });
    this.wrap = h('div', { class: 'graph-wrap' }, this.svg);
    this.deniedBody = h('tbody');
    this.deniedNote = h('p', { class: 'note' });
    const sample = (cls) => s('svg', { width: 34, height: 10 }, s('line', { x1: 0, y1: 5, x2: 34, y2: 5, class: cls }));
    fill(root, h('h1', null, 'Service graph'),
      h('div', { class: 'toolbar' }, input, top,
        h('label', null, denied, ' denied only'), h('label', null, idle, ' apps without flows'),
        h('button', { type: 'button', onclick: zoom(1.25), title: 'zoom in' }, '+'),
        h('button', { type: 'button', onclick: zoom(0.8), title: 'zoom out' }, '−'),
        h('button', { type: 'button', onclick: zoom(0), title: 'fit the window' }, 'fit')),
      h('div', { class: 'legend-graph' },
        h('span', null, sample('leg-allow'), 'allowed'),
        h('span', null, sample('leg-deny'), 'denied (blocked)'),
        h('span', null, sample('leg-would'), 'would be denied (audit mode)'),
        h('span', null, 'Click an app to open it.')),
      this.summary, this.wrap,
      h('h2', null, 'Denied flows'), this.deniedNote,
      h('table', { class: 'data', id: 'denied-flows' },
        h('thead', null, h('tr', null, h('th', null, 'Source'), h('th', null, 'Destination'),
          h('th', { class: 'num' }, 'Denied'), h('th', { class: 'num' }, 'Would be denied'), h('th', { class: 'num' }, 'Allowed'))),
        this.deniedBody));
    // The legend's samples share the edges' look.
    for (const [cls, stroke, dash] of [['leg-allow', '#8d99a8', ''], ['leg-deny', '#c0392b', '7 4'], ['leg-would', '#b9770e', '2 3']]) {
      const line = root.querySelector('line.' + cls);
      line.setAttribute('stroke', stroke);
      line.setAttribute('stroke-width', 2);
      if (dash) line.setAttribute('stroke-dasharray', dash);
    }
    this.render();
  },
  applyZoom() {
    const w = Number(this.svg.dataset.w), hgt = Number(this.svg.dataset.h);
    if (!w) return;
    const fit = Math.min(1, (this.wrap.clientWidth - 4) / w);
    const z = this.zoom === 'fit' ? fit : this.zoom || Math.max(0.5, fit);
    this.svg.setAttribute('width', Math.round(w * z));
    this.svg.setAttribute('height', Math.round(hgt * z));
  },
  update([flows, apps]) {
    this.flows = flows;
    this.apps = apps;
    this.render();
  },
  render() {
    if (!this.flows) return;
    timed('graph', () => {
      const all = Array.isArray(this.flows.flows) ? this.flows.flows : [];
      const match = matcher(this.filter);
      const blocked = (f) => (f.denied || 0) + (f.would_deny || 0) > 0;
      let list = all.filter((f) => match(f.source) || match(f.destination));
      if (this.deniedOnly) list = list.filter(blocked);
      // Denied flows first (they are why one looks), then by volume.
      const volume = (f) => (f.allowed || 0) + (f.denied || 0) + (f.would_deny || 0);
      list.sort((a, b) => (blocked(b) - blocked(a)) || volume(b) - volume(a) ||
        String(a.source).localeCompare(String(b.source)) || String(a.destination).localeCompare(String(b.destination)));
      const shown = this.top ? list.slice(0, this.top) : list;
      const nodes = new Set();
      for (const f of shown) { nodes.add(String(f.source)); nodes.add(String(f.destination)); }
      const idle = new Set();
      const appList = this.apps && Array.isArray(this.apps.apps) ? this.apps.apps : [];
      if (this.idle) {
        for (const a of appList) if (match(a.id) && !nodes.has(a.id)) { nodes.add(a.id); idle.add(a.id); }
      }
      const flows = shown.map((f) => ({ ...f, source: String(f.source), destination: String(f.destination) }));
      const drawn = draw(this.svg, { nodes, flows, idle, onOpen: (id) => { location.hash = appHref(id); } });
      this.svg.dataset.w = drawn.width;
      this.svg.dataset.h = drawn.height;
      this.applyZoom();
      const denied = all.filter((f) => (f.denied || 0) > 0).length;
      const would = all.filter((f) => (f.would_deny || 0) > 0).length;
      const span = isNum(this.flows.window_seconds) ? ` in the last ${this.flows.window_seconds} s` : '';
      this.summary.textContent = `${all.length} flows${span}: ${denied} denied, ${would} would be denied. ` +
        `Showing ${shown.length} of ${list.length} matching, ${nodes.size} apps` + (idle.size ? ` (${idle.size} without flows)` : '') + '.';
      if (!all.length) this.summary.textContent = 'No flows observed yet: flows appear once meshd has judged a connection and configsrv has scraped it.';

      const deniedRows = list.filter(blocked).slice(0, ROW_CAP);
      const frag = document.createDocumentFragment();
      for (const f of deniedRows) {
        frag.appendChild(h('tr', { class: f.denied > 0 ? 'bad' : 'warn', dataset: { verdict: f.denied > 0 ? 'deny' : 'would_deny' } },
          cell(appLink(f.source), 'id'), cell(appLink(f.destination), 'id'),
          cell(fmtInt(f.denied), 'num bad-text'), cell(fmtInt(f.would_deny), 'num'), cell(fmtInt(f.allowed), 'num')));
      }
      this.deniedBody.replaceChildren(frag);
      this.deniedNote.textContent = deniedRows.length ? 'Sources refused by policy (denied), or that audit mode let through but would refuse (would be denied).' : 'No denied flows in the window.';
    });
  },
};

// --------------------------------------------------------------------- app

const TIMING = [
  ['client_rtt', 'Client RTT', 'rtt'],
  ['connect', 'Backend connect', 'connect'],
  ['response', 'App response', 'response'],
  ['transfer', 'Data transfer', 'transfer'],
];

// Outcomes that changed Marathon, and those that mean something is wrong.
const SCALED = new Set(['scaled_up', 'scaled_down']);
const TROUBLE = new Set(['error', 'capacity', 'stale_metrics']);

// The autoscaler's decisions for one app, newest first (GET /v1/autoscale/decisions?app=).
function autoscaleTable(decisions) {
  if (!decisions.length) {
    return h('p', { class: 'muted', id: 'autoscale-none' },
      'No autoscaling decisions. Decisions come from the configsrv run with --autoscale, for apps whose policy has an autoscale block.');
  }
  const fmtValue = (v) => (isNum(v) ? (Math.round(v * 10) / 10).toString() : '—');
  return h('table', { class: 'data', id: 'autoscale-decisions' },
    h('thead', null, h('tr', null, h('th', null, 'When'), h('th', null, 'Metric'), h('th', { class: 'num' }, 'Value'),
      h('th', { class: 'num' }, 'Target'), h('th', { class: 'num' }, 'Instances'), h('th', null, 'Outcome'), h('th', null, 'Reason'))),
    h('tbody', null, decisions.slice(0, ROW_CAP).map((d) => h('tr', { dataset: { outcome: String(d.outcome) } },
      cell(isNum(d.time) ? fmtClock(d.time * 1000) : '—'), cell(String(d.metric ?? '—'), 'mono'),
      cell(fmtValue(d.value), 'num'), cell(fmtValue(d.target), 'num'),
      cell(`${fmtInt(d.from)} → ${fmtInt(d.to)}`, 'num'),
      cell(h('span', { class: 'badge ' + (SCALED.has(d.outcome) ? 'ok' : TROUBLE.has(d.outcome) ? 'bad' : 'warn') }, String(d.outcome ?? 'unknown'))),
      cell(String(d.reason ?? ''))))));
}

const app = {
  title: 'App',
  paths() { return [appApiPath(this.id), { optional: '/v1/autoscale/decisions?app=' + encodeURIComponent(this.id) }]; },
  mount(root, id) {
    this.id = id;
    this.body = h('div');
    fill(root, h('p', { class: 'note' }, h('a', { href: '#/' }, '← all apps')), h('h1', { id: 'app-id' }, id), this.body);
  },
  update([a, decisions]) {
    timed('app', () => this.render(a, Array.isArray(decisions) ? decisions : []));
  },
  render(a, decisions) {
    const latency = a.latency || {};
    const timing = a.timing || {};
    const card = (k, v, cls, figure) => h('div', { class: 'card' + (cls ? ' ' + cls : ''), dataset: figure ? { figure } : null },
      h('div', { class: 'v' }, v), h('div', { class: 'k' }, k));
    const ports = Array.isArray(a.service_ports) ? a.service_ports.join(', ') : '—';
    const backends = Array.isArray(a.backends) ? a.backends : [];
    const draining = backends.filter((b) => b.draining);
    const sources = Array.isArray(a.sources) ? a.sources : [];
    const errors = Array.isArray(a.errors) ? a.errors : [];

    const p50 = TIMING.map(([k]) => (timing[k] && isNum(timing[k].p50) ? timing[k].p50 : 0));
    const sum = p50.reduce((x, y) => x + y, 0);
    const bar = h('div', { class: 'breakdown', role: 'img', 'aria-label': 'p50 timing breakdown' },
      sum > 0 ? TIMING.map(([, label, cls], i) => h('span', { class: cls, style: null, title: `${label}: ${fmtDur(p50[i])}`, dataset: { share: (p50[i] / sum).toFixed(4) } })) : null);
    // Widths through CSSOM, not a style attribute: the page's policy allows no inline styles.
    if (sum > 0) [...bar.children].forEach((el, i) => { el.style.width = (100 * p50[i] / sum).toFixed(2) + '%'; });

    const series = Array.isArray(a.series) ? a.series : [];
    fill(this.body,
      h('p', { class: 'muted' }, `${a.protocol || 'protocol unknown'} · service port${Array.isArray(a.service_ports) && a.service_ports.length === 1 ? '' : 's'} ${ports}`),
      errors.length ? h('div', { class: 'banner error', id: 'app-errors' }, h('strong', null, 'This app\'s policy or labels have errors; it keeps its last good settings:'),
        h('ul', { class: 'errors' }, errors.map((e) => h('li', { class: 'mono' }, String(e))))) : null,
      h('div', { class: 'cards', id: 'app-figures' },
        card('requests/s', fmtRate(a.rate), null, 'rate'),
        card('error rate', fmtPct(a.error_rate), a.error_rate >= 0.01 ? 'bad-text' : null, 'error_rate'),
        card('p50', fmtDur(latency.p50)), card('p90', fmtDur(latency.p90)), card('p99', fmtDur(latency.p99)),
        card('instances (healthy)', isNum(a.healthy) ? `${a.healthy}/${fmtInt(a.instances)}` : fmtInt(a.instances)),
        card('active connections', fmtInt(a.active_connections)),
        card('denied', fmtInt(a.denied), a.denied > 0 ? 'bad-text' : null),
        card('bytes in / out', `${fmtBytes(a.bytes_in)} / ${fmtBytes(a.bytes_out)}`)),
      h('h2', null, 'Where the time goes'),
      h('p', { class: 'note' }, 'Per request, median (p50) of each step; percentiles come from the merged histograms of every node.'),
      bar,
      h('div', { class: 'legend' }, TIMING.map(([, label, cls]) => h('span', { class: 'key ' + cls }, label))),
      h('table', { class: 'data', id: 'timing' },
        h('thead', null, h('tr', null, h('th', null, 'Step'), h('th', { class: 'num' }, 'p50'), h('th', { class: 'num' }, 'p90'), h('th', { class: 'num' }, 'p99'))),
        h('tbody', null, TIMING.concat([['total', 'Total', 'total']]).map(([k, label]) => {
          const t = timing[k] || (k === 'total' ? latency : {});
          return h('tr', { dataset: { step: k } }, cell(label), cell(fmtDur(t.p50), 'num'), cell(fmtDur(t.p90), 'num'), cell(fmtDur(t.p99), 'num'));
        }))),
      h('h2', null, 'Over time'),
      h('div', { class: 'grid2' },
        lineChart('Requests per second', series, [{ key: 'rate', label: 'rate', cls: 'c1' }], fmtRate),
        lineChart('Latency', series, [{ key: 'p50', label: 'p50', cls: 'c1' }, { key: 'p99', label: 'p99', cls: 'c2' }], fmtDur),
        stackedChart('Timing breakdown (p50)', series, [
          { key: 'client_rtt_p50', label: 'client RTT', cls: 'rtt' },
          { key: 'connect_p50', label: 'connect', cls: 'connect' },
          { key: 'response_p50', label: 'response', cls: 'response' },
          { key: 'transfer_p50', label: 'transfer', cls: 'transfer' }], fmtDur),
        lineChart('Error rate', series, [{ key: 'error_rate', label: 'errors', cls: 'c2' }], fmtPct, 0.01)),
      h('h2', null, `Backends (${backends.length}${draining.length ? `, ${draining.length} draining` : ''})`),
      backends.length ? h('table', { class: 'data', id: 'backends' },
        h('thead', null, h('tr', null, h('th', null, 'Task'), h('th', null, 'Address'), h('th', null, 'Node'), h('th', null, 'Health'), h('th', null, 'State'))),
        h('tbody', null, backends.map((b) => {
          const healthy = b.health === 'healthy';
          return h('tr', { class: b.draining ? 'warn' : healthy ? null : 'bad' },
            cell(String(b.task ?? '—'), 'id mono'), cell(String(b.address ?? '—'), 'mono'), cell(String(b.node ?? '—'), 'mono'),
            cell(h('span', { class: 'badge ' + (healthy ? 'ok' : 'bad') }, String(b.health ?? 'unknown'))),
            cell(b.draining ? h('span', { class: 'badge warn' }, 'draining') : 'serving'));
        }))) : h('p', { class: 'muted' }, 'No running tasks.'),
      h('h2', null, 'Sources'),
      h('p', { class: 'note' }, 'Apps seen calling this app in the window (allowed or not).'),
      sources.length ? h('ul', { id: 'sources' }, sources.map((src) => h('li', null, appLink(src)))) : h('p', { class: 'muted' }, 'No callers in the window.'),
      h('h2', null, 'Autoscaling'),
      autoscaleTable(decisions));
  },
};

// ------------------------------------------------------------------- nodes

const nodes = {
  title: 'Nodes',
  paths: () => ['/v1/nodes'],
  mount(root) {
    this.summary = h('p', { class: 'note' });
    this.body = h('tbody');
    fill(root, h('h1', null, 'Nodes'), h('p', { class: 'muted' }, 'Every node and active Mesos agent: which generation configsrv rendered for it, and whether a meshd there runs it (covered). An uncovered agent that runs tasks is a hole in the mesh.'),
      this.summary,
      h('table', { class: 'data', id: 'nodes' }, h('thead', null, h('tr', null,
        ['Node', 'Agent', 'Covered', 'Reachable', 'Rendered', 'Applied', 'Converged', 'Last scrape', 'Reload errors', 'Last error'].map((t) => h('th', null, t)))),
      this.body));
  },
  update([data]) {
    timed('nodes', () => {
      const list = Array.isArray(data.nodes) ? data.nodes.slice() : [];
      const rendered = (n) => n.rendered ?? n.generation;
      const converged = (n) => n.converged ?? (isNum(n.applied) && n.applied === rendered(n));
      const unreachable = (n) => n.reachable === false;
      const isCovered = (n) => n.covered ?? (converged(n) && !unreachable(n));
      // An active agent whose tasks no meshd serves: the worst trouble.
      const hole = (n) => n.agent === true && !isCovered(n) && (n.tasks ?? 0) > 0;
      // Trouble first: holes, unreachable, then behind, then by name.
      const rank = (n) => (hole(n) ? 0 : unreachable(n) ? 1 : converged(n) ? 3 : 2);
      list.sort((a, b) => rank(a) - rank(b) || String(a.node).localeCompare(String(b.node)));
      const frag = document.createDocumentFragment();
      for (const n of list) {
        const down = unreachable(n), ok = converged(n), cov = isCovered(n), gap = hole(n);
        frag.appendChild(h('tr', { class: gap || down ? 'bad' : ok ? null : 'warn',
          dataset: { reachable: down ? 'false' : 'true', converged: ok ? 'true' : 'false', covered: cov ? 'true' : 'false', agent: n.agent === true ? 'true' : 'false', uncoveredAgent: gap ? 'true' : 'false' } },
          cell(String(n.node), 'mono'),
          cell(n.agent === true ? `agent, ${fmtInt(n.tasks ?? 0)} task${n.tasks === 1 ? '' : 's'}` : '—'),
          cell(cov ? h('span', { class: 'badge ok' }, 'covered')
            : h('span', { class: gap ? 'badge bad' : 'badge warn', title: gap ? 'an active agent running tasks with no meshd serving them' : 'no meshd runs the latest generation here' }, gap ? 'uncovered, runs tasks' : 'uncovered')),
          cell(down ? h('span', { class: 'badge bad' }, 'unreachable') : n.reachable === true ? h('span', { class: 'badge ok' }, 'yes') : '—'),
          cell(fmtGen(rendered(n)), 'mono'),
          cell(fmtGen(n.applied), 'mono'),
          cell(ok ? h('span', { class: 'badge ok' }, 'converged') : h('span', { class: 'badge warn' }, isNum(n.applied) ? 'behind' : 'unknown')),
          cell(fmtAge(n.last_scrape)),
          cell(fmtInt(n.reload_errors), 'num'),
          cell(String(n.error ?? n.last_error ?? ''), 'id bad-text')));
      }
      this.body.replaceChildren(frag);
      const down = list.filter(unreachable).length, conv = list.filter(converged).length;
      // Covered: its meshd answers and runs the latest generation (DESIGN.md's node coverage).
      const covered = list.filter(isCovered).length;
      const holes = list.filter(hole).length;
      const agentsOpen = list.filter((n) => n.agent === true && !isCovered(n)).length;
      const keeper = data.ensure_meshd && data.ensure_meshd.outcome
        ? ` meshd keeper: ${data.ensure_meshd.outcome}${data.ensure_meshd.message ? ` (${data.ensure_meshd.message})` : ''}.` : '';
      this.summary.textContent = list.length
        ? `${list.length} nodes, ${covered} covered: ${conv} converged, ${list.length - conv} not converged, ${down} unreachable.`
          + (agentsOpen ? ` ${agentsOpen} active agent${agentsOpen === 1 ? '' : 's'} without a covering meshd, ${holes} of them running tasks.` : '') + keeper
        : 'No nodes yet.';
    });
  },
};

function fmtGen(g) {
  return isNum(g) ? String(g) : '—';
}

// ------------------------------------------------------------------ policy

const policy = {
  title: 'Policy',
  filter: '',
  paths: () => ['/v1/policy', { text: '/v1/policy/proposed' }],
  mount(root) {
    this.head = h('p', { class: 'muted' });
    this.errors = h('div', { id: 'policy-errors' });
    this.proposed = h('pre', { class: 'policy', id: 'proposed' });
    this.copied = h('span', { class: 'muted', 'aria-live': 'polite' });
    const copy = h('button', { type: 'button', id: 'copy-proposed' }, 'Copy');
    copy.addEventListener('click', () => this.copy());
    const download = h('button', { type: 'button', id: 'download-proposed' }, 'Download');
    download.addEventListener('click', () => this.download());
    const input = h('input', { type: 'search', placeholder: 'Show the policy in force for apps matching…', 'aria-label': 'filter effective policy', value: this.filter });
    input.addEventListener('input', () => { this.filter = input.value; this.renderEffective(); });
    this.effective = h('pre', { class: 'policy', id: 'effective' });
    fill(root, h('h1', null, 'Policy'), this.head,
      h('h2', null, 'Errors'), this.errors,
      h('h2', null, 'Proposed policy'),
      h('p', { class: 'note' }, 'Allow-lists learned from the flows observed in the window (allowed and would-be-denied sources per app). Review it, then commit it to the policy repository.'),
      h('div', { class: 'toolbar' }, copy, download, this.copied), this.proposed,
      h('h2', null, 'Policy in force'), h('div', { class: 'toolbar' }, input), this.effective);
  },
  update([p, proposed]) {
    this.policy = p;
    timed('policy', () => {
      const apps = p.apps && typeof p.apps === 'object' ? Object.keys(p.apps) : [];
      const d = p.defaults && typeof p.defaults === 'object' ? p.defaults : null;
      this.head.textContent = `${apps.length} apps in the policy in force` + (p.commit ? ` · commit ${p.commit}` : ' · from the policy directory') +
        (d && d.action ? ` · traffic no rule allows: ${d.action}${d.mode ? ` (${d.mode} mode)` : ''}` : '');
      const errs = p.errors && typeof p.errors === 'object' ? Object.entries(p.errors).filter(([, l]) => Array.isArray(l) && l.length) : [];
      const files = Array.isArray(p.files) ? p.files.filter((f) => f && f.error) : [];
      if (!errs.length && !files.length) {
        fill(this.errors, h('p', { class: 'ok' }, 'No policy errors.'));
      } else {
        fill(this.errors,
          files.length ? h('div', { class: 'panel' }, h('strong', null, 'Files that could not be used (the last good policy stays in force):'),
            h('ul', { class: 'errors' }, files.map((f) => h('li', { class: 'mono' }, `${f.file}: ${f.error}`)))) : null,
          errs.length ? h('table', { class: 'data' }, h('thead', null, h('tr', null, h('th', null, 'App'), h('th', null, 'Errors (the app keeps its last good settings)'))),
            h('tbody', null, errs.map(([id, list]) => h('tr', { class: 'bad' }, cell(appLink(id), 'id'),
              cell(h('ul', { class: 'errors' }, list.map((e) => h('li', { class: 'mono' }, String(e)))), 'id'))))) : null);
      }
      if (this.proposed.textContent !== proposed) this.proposed.textContent = proposed;
      this.text = proposed;
      this.renderEffective();
    });
  },
  renderEffective() {
    const apps = this.policy && this.policy.apps && typeof this.policy.apps === 'object' ? this.policy.apps : {};
    const match = matcher(this.filter);
    const ids = Object.keys(apps).filter(match).sort();
    const shown = ids.slice(0, 50);
    // One line per field, YAML-like, values as compact JSON.
    const entry = (v) => (v && typeof v === 'object' && !Array.isArray(v)
      ? Object.entries(v).map(([k, x]) => `  ${k}: ${JSON.stringify(x)}`).join('\n')
      : '  ' + JSON.stringify(v));
    const text = shown.map((id) => `${id}:\n${entry(apps[id])}`).join('\n') +
      (ids.length > shown.length ? `\n… ${ids.length - shown.length} more; narrow the filter.` : '');
    if (this.effective.textContent !== text) this.effective.textContent = text || 'No app matches.';
  },
  async copy() {
    try {
      await navigator.clipboard.writeText(this.text || '');
      this.copied.textContent = 'Copied.';
    } catch {
      // No clipboard permission (plain http, old browser): select it for Ctrl-C.
      const range = document.createRange();
      range.selectNodeContents(this.proposed);
      const sel = getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      this.copied.textContent = 'Selected: press Ctrl-C to copy.';
    }
  },
  download() {
    const url = URL.createObjectURL(new Blob([this.text || ''], { type: 'application/yaml' }));
    const a = h('a', { href: url, download: 'proposed-policy.yaml' });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  },
};

// ------------------------------------------------------------ the refresh

const PAGES = { overview, graph, app, nodes, policy };
let current = null;
// Each refresh takes a ticket; only the latest may touch the page or arm the
// timer, so a slow answer for a page the user left, or a refresh started
// twice (navigation, a tab shown again), never shows stale data or starts a
// second polling chain.
let ticket = 0;
let timer = null;
let lastOk = null;

function route() {
  const hash = location.hash.replace(/^#/, '') || '/';
  if (hash.startsWith('/app/')) {
    let id;
    try { id = decodeURIComponent(hash.slice(5)); } catch { id = hash.slice(5); }
    return { page: 'app', arg: id };
  }
  const name = hash.slice(1);
  return { page: PAGES[name] && name !== 'app' ? name : 'overview', arg: null };
}

function navigate() {
  const r = route();
  current = { name: r.page, page: PAGES[r.page], arg: r.arg };
  for (const a of document.querySelectorAll('header.top nav a')) {
    a.classList.toggle('active', a.dataset.nav === (r.page === 'app' ? 'overview' : r.page));
  }
  document.title = (r.page === 'app' ? r.arg : current.page.title) + ' · palisade';
  main.replaceChildren();
  current.page.mount(main, r.arg);
  refresh();
}

async function refresh() {
  clearTimeout(timer);
  const mine = ++ticket;
  const page = current.page;
  const wanted = page.paths();
  try {
    const [status, ...results] = await Promise.all([
      getJSON('/v1/status').catch(() => null),
      // `{optional: path}`: a part of the page that may be missing (null) without failing the rest.
      ...wanted.map((p) => (typeof p === 'string' ? getJSON(p) : p.optional ? getJSON(p.optional).catch(() => null) : getText(p.text))),
    ]);
    if (mine !== ticket) return; // the user moved on meanwhile
    page.update(results);
    lastOk = Date.now();
    ui.lastError = null;
    banner.hidden = true;
    document.body.dataset.state = 'ok';
    updated.textContent = 'updated ' + fmtClock(lastOk);
    showStale(status);
  } catch (e) {
    if (mine !== ticket) return;
    ui.lastError = String(e.message || e);
    document.body.dataset.state = 'error';
    // An unknown app is an answer, not an outage; a page that cannot show
    // an answer is a bug, not the API's fault.
    const gone = e.status === 404 && current.name === 'app';
    const what = !(e instanceof ApiError) ? 'This page could not show the answer: ' : gone ? 'Not found: ' : 'The API did not answer: ';
    if (!(e instanceof ApiError)) ui.errors.push(ui.lastError);
    fill(banner, h('strong', null, what), ui.lastError,
      gone ? '' : lastOk ? ` — showing data from ${fmtClock(lastOk)}; retrying every ${REFRESH_MS / 1000} s.` : ` — retrying every ${REFRESH_MS / 1000} s.`);
    banner.hidden = false;
    updated.textContent = lastOk ? 'stale since ' + fmtClock(lastOk) : 'no data';
  } finally {
    if (mine === ticket) {
      ui.refreshes++;
      document.body.dataset.refreshes = String(ui.refreshes);
      timer = setTimeout(refresh, REFRESH_MS);
    }
  }
}

function showStale(status) {
  const sources = status && status.sources && typeof status.sources === 'object' ? Object.entries(status.sources) : [];
  const stale = sources.filter(([, v]) => v && v.stale);
  const problems = stale.map(([name, v]) => `${name}: ${v.error || 'stale'}`);
  if (status && status.publish_error) problems.push('publishing: ' + status.publish_error);
  staleBanner.hidden = !problems.length;
  if (problems.length) fill(staleBanner, h('strong', null, 'configsrv keeps its last good state: '), problems.join('; '));
}

// A hidden tab does not poll; it catches up as soon as it is shown again.
document.addEventListener('visibilitychange', () => {
  if (document.hidden) clearTimeout(timer);
  else if (current) refresh();
});
window.addEventListener('hashchange', navigate);
navigate();
