// A host page written in TypeScript, compiled against the shipped declarations
// (tests/unit/test_types.py: tsc --noEmit --strict). It must compile as it is.
/// <reference path="../../web/pyauth-web.d.ts" />

async function main(): Promise<void> {
  await window.pyauthWeb.ready;
  window.addEventListener('console:auth-error', (e) => {
    const realm: string = e.detail.realmURL;
    const status: number | null = e.detail.status;
    console.warn(`sign in again for ${realm} (${e.detail.reason}, ${status})`);
  });
  window.addEventListener('pyauth-web:token-refreshed', (e) => console.log(e.detail.realmURL.length));
  window.addEventListener('pyauth-web:event', (e) => {
    if (e.detail.kind === 'recovered') console.log(e.detail.count ?? 0);
  });
  await pyauthWeb.configure({ refreshURL: '/session/token', skew: 30, retry: { attempts: 2 } });
  await pyauthWeb.configure({ oauth: { tokenEndpoint: 'https://op.example/token', clientId: 'spa' } });
  await pyauthWeb.configure({ refresh: async (realmURL) => `token-for-${realmURL}` });
  await pyauthWeb.setToken('https://api.example/', 'header.payload.sig', 'refresh');
  const token: string | null = await pyauthWeb.getToken('https://api.example/orders');
  const response: Response = await pyauthWeb.fetch('https://api.example/orders', { method: 'GET' });
  const wrapped = pyauthWeb.wrapFetch(window.fetch);
  await wrapped(new URL('https://api.example/x'));
  const stream = pyauthWeb.stream('https://api.example/events', {
    onEvent: (ev) => console.log(ev.type, ev.data, ev.id),
    onStateChange: (state) => { if (state === 'expired') stream.close(); },
  });
  const socket = await pyauthWeb.socket('wss://api.example/ws', { tokenIn: 'message' });
  socket.send('hello');
  const state = await pyauthWeb.state();
  console.log(token, response.status, state.tokens.map((t) => t.fresh), socket.state, pyauthWeb.config.realms);
  if (pyauthWeb.config.pyodide === 'external') await pyauthWeb.attach({});
  await pyauthWeb.removeToken('https://api.example/');
  await pyauthWeb.clearTokens();
}

void main();
