// Small helpers shared by the pages: building DOM nodes (text always goes
// in as text nodes, never as markup: app ids come from Marathon and may
// hold anything), formatting figures, and fetching the API.

const SVG_NS = 'http://www.w3.org/2000/svg';

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
  return el;
}

function setAttrs(el, attrs) {
  if (!attrs) return;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

// An HTML element: h('a', {href: '#/'}, 'text', child, ...).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  return append(el, children);
}

// An SVG element, same shape as h().
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  return append(el, children);
}

// Replaces everything inside el.
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

// The UI's address of an app page. encodeURIComponent keeps any character
// of an app id from ending the fragment or meaning anything.
export function appHref(id) {
  return '#/app/' + encodeURIComponent(id);
}

// The API path of one app: `/v1/apps/shop/web` for `/shop/web`, each
// segment encoded so that `?`, `#` or `%` in an id cannot change the request.
export function appApiPath(id) {
  return '/v1/apps' + id.split('/').map(encodeURIComponent).join('/');
}

export function isNum(v) {
  return typeof v === 'number' && Number.isFinite(v);
}

// Seconds as a duration a person reads at a glance.
export function fmtDur(sec) {
  if (!isNum(sec)) return '—';
  const a = Math.abs(sec);
  if (a === 0) return '0';
  if (a < 1e-3) return (sec * 1e6).toFixed(a < 1e-5 ? 1 : 0) + ' µs';
  if (a < 1) return (sec * 1e3).toFixed(a < 1e-2 ? 2 : a < 0.1 ? 1 : 0) + ' ms';
  return sec.toFixed(a < 10 ? 2 : 1) + ' s';
}

// One formatter, made once: toLocaleString builds a new one per call.
const INT = new Intl.NumberFormat('en', { maximumFractionDigits: 0 });

export function fmtRate(v) {
  if (!isNum(v)) return '—';
  if (v === 0) return '0';
  if (v < 0.01) return v.toExponential(1);
  if (v < 10) return v.toFixed(2);
  if (v < 1000) return v.toFixed(1);
  return INT.format(Math.round(v));
}

export function fmtPct(frac) {
  if (!isNum(frac)) return '—';
  if (frac === 0) return '0%';
  const p = frac * 100;
  return (p < 0.1 ? p.toFixed(3) : p < 10 ? p.toFixed(2) : p.toFixed(1)) + '%';
}

export function fmtInt(v) {
  return isNum(v) ? INT.format(Math.round(v)) : '—';
}

export function fmtBytes(v) {
  if (!isNum(v)) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? String(Math.round(v)) : v.toFixed(1)) + ' ' + units[i];
}

// Unix seconds as "12 s ago" (or the clock time when long ago).
export function fmtAge(unix, nowMs = Date.now()) {
  if (!isNum(unix)) return '—';
  const age = nowMs / 1000 - unix;
  if (age < -5) return new Date(unix * 1000).toLocaleTimeString();
  if (age < 90) return Math.max(0, Math.round(age)) + ' s ago';
  if (age < 5400) return Math.round(age / 60) + ' min ago';
  return new Date(unix * 1000).toLocaleString();
}

export function fmtClock(ms) {
  return new Date(ms).toLocaleTimeString();
}

// An API failure, with the path and what the server said.
export class ApiError extends Error {
  constructor(path, status, detail) {
    super(`GET ${path}: ${status ? status + ' ' : ''}${detail}`);
    this.path = path;
    this.status = status;
  }
}

const TIMEOUT_MS = 8000;

async function request(path) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
  let r;
  try {
    r = await fetch(path, { signal: ctl.signal, cache: 'no-store', headers: { Accept: 'application/json, application/yaml, text/plain' } });
  } catch (e) {
    throw new ApiError(path, 0, ctl.signal.aborted ? `no answer within ${TIMEOUT_MS / 1000} s` : 'configsrv unreachable (' + e.message + ')');
  } finally {
    clearTimeout(timer);
  }
  if (!r.ok) {
    // The API's errors are {"error": "..."}; anything else is shown as text.
    let detail = r.statusText || 'error';
    const text = await r.text().catch(() => '');
    try {
      const body = JSON.parse(text);
      if (body && typeof body.error === 'string') detail = body.error;
    } catch {
      if (text) detail = text.slice(0, 300);
    }
    throw new ApiError(path, r.status, detail);
  }
  return r;
}

export async function getJSON(path) {
  const r = await request(path);
  try {
    return await r.json();
  } catch (e) {
    throw new ApiError(path, r.status, 'the answer is not JSON (' + e.message + ')');
  }
}

export async function getText(path) {
  return (await request(path)).text();
}

// Case-insensitive substring filter, on ids.
export function matcher(query) {
  const q = query.trim().toLowerCase();
  if (!q) return () => true;
  return (text) => String(text).toLowerCase().includes(q);
}
