# Type stub for Pyodide's `js` module (the page's global scope), limited to the names the adapter
# uses: a misspelt name fails the type check. Values are JS objects: Any.
from typing import Any

AbortController: Any
BroadcastChannel: Any
CustomEvent: Any
Headers: Any
Object: Any
Promise: Any
Request: Any
Response: Any
URL: Any
Uint8Array: Any
WebSocket: Any
caches: Any
console: Any
crypto: Any
document: Any
fetch: Any
localStorage: Any
location: Any
navigator: Any
window: Any
