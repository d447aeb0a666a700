// Demo page wiring: buttons, an image grid behind auth, and live panels of state and events.
const realm = document.body.dataset.realm;
const grid = document.getElementById('images');
const eventsEl = document.getElementById('events');

function logEvent(text) {
  const li = document.createElement('li');
  li.textContent = `${new Date().toLocaleTimeString()}  ${text}`;
  eventsEl.prepend(li);
}

function loadImages() {
  grid.replaceChildren();
  const bust = Date.now();
  for (let i = 0; i < 12; i++) {
    const fig = document.createElement('figure');
    const img = new Image(96, 96);
    img.alt = `image ${i}`;
    img.onload = () => { fig.className = 'loaded'; };
    img.onerror = () => { fig.className = 'broken'; fig.textContent = '401'; };
    img.src = `${realm}img/card-${i}?v=${bust}`;
    fig.append(img);
    grid.append(fig);
  }
}

async function mint(ttl) {
  const resp = await fetch('/token', { method: 'POST', body: JSON.stringify({ realm, ttl }),
                                       headers: { 'Content-Type': 'application/json' } });
  return (await resp.json()).token;
}

async function refreshState() {
  try {
    const state = await pyauthWeb.state();
    const now = Date.now() / 1000;
    const lines = state.tokens.map((t) => `${t.realmURL}\n  exp in ${t.exp === null ? '∞' : Math.round(t.exp - now) + ' s'}  ${t.fresh ? 'fresh' : 'STALE (within skew)'}`);
    document.getElementById('state').textContent =
      (lines.join('\n') || '(no tokens)') + `\n\nskew ${state.skew} s\n` + JSON.stringify(state.counters, null, 1);
  } catch (err) {
    document.getElementById('state').textContent = String(err);
  }
}

window.addEventListener('pyauth-web:event', (e) => logEvent(`${e.detail.kind} ${e.detail.realmURL || e.detail.message || ''}`));
document.getElementById('login').onclick = async () => { await pyauthWeb.setToken(realm, await mint(120)); loadImages(); };
document.getElementById('short').onclick = async () => { await pyauthWeb.setToken(realm, await mint(70)); loadImages(); };
document.getElementById('logout').onclick = async () => { await pyauthWeb.clearTokens(); loadImages(); };
document.getElementById('reload').onclick = loadImages;
document.getElementById('api').onclick = async () => {
  const resp = await pyauthWeb.fetch(`${realm}api/profile`);
  logEvent(`API ${resp.status} ${JSON.stringify(await resp.json())}`);
};
window.addEventListener('console:auth-error', (e) => logEvent(`console:auth-error ${JSON.stringify(e.detail)}`));

function startStream() {
  const out = document.getElementById('sse');
  let state = '';
  pyauthWeb.stream(`${realm}sse/ticker?count=100000&interval=2`, {
    onEvent: (e) => { out.textContent = `stream ${state}: event ${e.id} (${e.data})`; },
    onStateChange: (s) => { state = s; out.textContent = `stream ${s}`; },
  });
}

const t0 = performance.now();
pyauthWeb.ready.then(async () => {
  logEvent(`Python runtime ready in ${Math.round(performance.now() - t0)} ms`);
  if (!(await pyauthWeb.getToken(realm))) await pyauthWeb.setToken(realm, await mint(120));
  loadImages();
  startStream();
  setInterval(refreshState, 1000);
  refreshState();
}, (err) => logEvent(`runtime failed: ${err.message}`));
