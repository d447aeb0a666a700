// Must NOT compile: each line misuses the API (tests/unit/test_types.py counts the errors).
/// <reference path="../../web/pyauth-web.d.ts" />

window.addEventListener('console:auth-error', (e) => console.log(e.detail.realmUrl));
void pyauthWeb.configure({ refreshUrl: '/token' });
void pyauthWeb.setToken('https://api.example/');
const n: number = pyauthWeb.config.storageKey;
void pyauthWeb.socket('wss://x/', { tokenIn: 'header' });
