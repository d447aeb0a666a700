// Demo: a live timeline per realm, drawn as plain SVG. Token lifetimes (bars, with the skew
// margin before `exp` shaded), refreshes made by this tab, new tokens from other tabs (their
// refreshes, or a sign-in there), the worker's round
// trips to this page, pre-warms and auth errors, over the last 4 minutes and the next one.
(() => {  // a classic script next to demo.js: keep its names to itself
  const SVG = 'http://www.w3.org/2000/svg';
  const PAST_S = 240;
  const FUTURE_S = 60;
  const WIDTH = 900;
  const ROW = 64;
  const MARKS = {
    'refresh': { color: '#1a7f37', label: 'refreshed here' },
    'other-tab': { color: '#8250df', label: 'new token from another tab' },
    'worker': { color: '#0969da', label: 'worker round trips' },
    'prewarm': { color: '#bf8700', label: 'pre-warm' },
    'auth-error': { color: '#cf222e', label: 'console:auth-error' },
  };
  const realms = new Map();  // realmURL -> {tokens: [{start, exp}], marks: [{t, kind, text}]}
  let skew = 60;
  let asked = null;  // the worker's token requests counted so far (state().counters)
  const now = () => Date.now() / 1000;

  function realm(url) {
    if (!realms.has(url)) realms.set(url, { tokens: [], marks: [] });
    return realms.get(url);
  }
  function mark(url, kind, text = '') { realm(url).marks.push({ t: now(), kind, text }); }
  function token(url, exp) {
    const r = realm(url);
    const last = r.tokens[r.tokens.length - 1];
    if (last && last.exp === exp) return;
    if (last && last.end === undefined) last.end = now();
    r.tokens.push({ start: now(), exp });
  }

  const localRefresh = new Map();  // realm -> time of this tab's last refresh event
  window.addEventListener('pyauth-web:event', (e) => {
    const d = e.detail;
    if ((d.kind === 'token-set' || d.kind === 'token-refreshed') && d.realmURL) token(d.realmURL, d.exp ?? null);
    if (d.kind === 'token-refreshed') { localRefresh.set(d.realmURL, now()); mark(d.realmURL, 'refresh'); }
    if (d.kind === 'prewarm') for (const r of d.realms || []) mark(r, 'prewarm');
    if (d.kind === 'tokens-cleared') for (const r of realms.values()) { const t = r.tokens[r.tokens.length - 1]; if (t && t.end === undefined) t.end = now(); }
  });
  window.addEventListener('pyauth-web:token-refreshed', (e) => {
    const url = e.detail.realmURL;
    setTimeout(() => {  // this tab's own refresh announces itself first; anything else came from a sibling
      if (now() - (localRefresh.get(url) || 0) > 1) mark(url, 'other-tab');
    }, 50);
  });
  window.addEventListener('console:auth-error', (e) => mark(e.detail.realmURL, 'auth-error', e.detail.reason));

  async function poll() {
    try {
      const state = await pyauthWeb.state();
      skew = state.skew;
      for (const t of state.tokens) token(t.realmURL, t.exp);
      const n = state.counters.token_requests || 0;
      if (asked !== null && n > asked) for (const t of state.tokens) mark(t.realmURL, 'worker', `×${n - asked}`);
      asked = n;
    } catch { /* the runtime is not up yet */ }
    draw();
  }

  function el(name, attrs, parent) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    parent.append(node);
    return node;
  }

  function draw() {
    const host = document.getElementById('timeline');
    const t1 = now() + FUTURE_S;
    const t0 = t1 - PAST_S - FUTURE_S;
    const x = (t) => Math.max(0, Math.min(WIDTH, ((t - t0) / (t1 - t0)) * WIDTH));
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('viewBox', `0 0 ${WIDTH} ${Math.max(1, realms.size) * ROW + 24}`);
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', 'token timeline per realm');
    let y = 0;
    for (const [url, r] of realms) {
      el('text', { x: 4, y: y + 14, 'font-size': 12, fill: '#444' }, svg).textContent = url;
      for (const t of r.tokens) {
        const end = t.end ?? (t.exp ?? t1);
        if (end < t0) continue;
        el('rect', { x: x(t.start), y: y + 22, width: Math.max(1, x(end) - x(t.start)), height: 18, fill: '#a5d6a7', rx: 3 }, svg);
        if (t.exp !== null) {
          el('rect', { x: x(t.exp - skew), y: y + 22, width: Math.max(1, x(t.exp) - x(t.exp - skew)), height: 18, fill: '#ffcc80', rx: 3 }, svg);
        }
      }
      for (const m of r.marks) {
        if (m.t < t0) continue;
        const { color } = MARKS[m.kind];
        el('line', { x1: x(m.t), x2: x(m.t), y1: y + 18, y2: y + 46, stroke: color, 'stroke-width': 2 }, svg);
        if (m.text) el('text', { x: x(m.t) + 3, y: y + 56, 'font-size': 10, fill: color }, svg).textContent = m.text;
      }
      y += ROW;
    }
    el('line', { x1: x(now()), x2: x(now()), y1: 0, y2: y + 4, stroke: '#222', 'stroke-dasharray': '3 3' }, svg);
    el('text', { x: x(now()) + 4, y: y + 18, 'font-size': 11, fill: '#222' }, svg).textContent = 'now';
    el('text', { x: 4, y: y + 18, 'font-size': 11, fill: '#666' }, svg).textContent = `−${PAST_S / 60} min`;
    host.replaceChildren(svg);
  }

  function legend() {
    const items = [['#a5d6a7', 'token lifetime'], ['#ffcc80', `skew margin before exp`],
      ...Object.values(MARKS).map((m) => [m.color, m.label])];
    document.getElementById('legend').replaceChildren(...items.map(([color, label]) => {
      const span = document.createElement('span');
      const swatch = document.createElement('i');
      swatch.style.background = color;
      span.append(swatch, label);
      return span;
    }));
  }

  legend();
  setInterval(poll, 1000);
  poll();
})();
