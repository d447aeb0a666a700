"""Imported before the loader takes Pyodide's memory snapshot: the pure-Python core and PyJWT.

Nothing here touches the browser (``js``) or reads a token, so the snapshot holds code only.
"""

import secrets  # noqa: F401 - the adapter's DPoP proofs (jti)

from pyauth_web import (  # noqa: F401
    authflow,
    dpop,
    oauth,
    options,
    prewarm,
    protocol,
    record,
    refresh,
    sse,
    sse_policy,
    tokens,
    ws_rotation,
)
