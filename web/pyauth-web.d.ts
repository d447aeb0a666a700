// TypeScript declarations for pyauth-web's loader: `window.pyauthWeb` and its events.
// Shipped in the bundle (`pyauth-web.d.ts`) and in the package's static files. Reference it
// from a host written in TypeScript: `/// <reference path="./pyauth/pyauth-web.d.ts" />`.
// tests/e2e/test_types.py compiles a sample host against it (tsc --noEmit) and checks in
// Chromium that the members declared here are exactly those the real object has.

export {};

declare global {
  namespace PyAuthWeb {
    /** `configure()` options. Leave one out (or pass null) to keep its current value. At most
     * one refresher per call (`refresh`, `refreshURL` or `oauth`). */
    interface ConfigureOptions {
      /** The host's own refresh: resolve with the new token. Throw an error with a numeric
       * `status` to classify the failure; other errors count as network errors. */
      refresh?: ((realmURL: string) => Promise<string>) | null;
      /** POST with credentials, body `{"realmURL"}`, answer JSON `{"token"}`. */
      refreshURL?: string | null;
      /** The OAuth 2.0 refresh_token grant for a public client with rotation. */
      oauth?: { tokenEndpoint: string; clientId: string; scope?: string | null } | null;
      /** Seconds before `exp` at which a token counts as expired (default 60). */
      skew?: number | null;
      /** Seconds of random lead for proactive refreshes (default 5). */
      jitter?: number | null;
      /** Retries of retryable failures (network, 429, 5xx): full-jitter exponential backoff. */
      retry?: { attempts?: number; base?: number; cap?: number } | null;
      /** Seconds one refresh attempt may take (default 10). */
      refreshTimeout?: number | null;
      /** Seconds to wait for another tab's refresh (default 15, more than refreshTimeout). */
      lockTimeout?: number | null;
      /** What a redirect does to a request that carries the realm's token. */
      redirects?: Record<string, RedirectMode> | null;
      /** Realms whose (opaque) tokens are DPoP-bound (RFC 9449); a JWT with `cnf.jkt` is recognised without it. */
      dpop?: string[] | null;
    }

    type RedirectMode = 'follow' | 'error';

    /** A server-sent event, as `stream()` hands it over. */
    interface StreamEvent {
      type: string;
      data: string;
      id: string | null;
    }

    type StreamState = 'connecting' | 'open' | 'reconnecting' | 'expired' | 'fatal' | 'closed';

    interface StreamOptions {
      onEvent?: (event: StreamEvent) => void;
      onStateChange?: (state: StreamState) => void;
      /** Fetch what was missed before re-subscribing (after a reconnect). */
      resync?: () => Promise<unknown>;
    }

    interface StreamHandle {
      close(): void;
    }

    type SocketState = 'connecting' | 'open' | 'rotating' | 'closed';

    interface SocketOptions {
      onMessage?: (data: string) => void;
      onStateChange?: (state: SocketState) => void;
      /** Where the token goes: a first message (default) or the URL's query. */
      tokenIn?: 'message' | 'url';
    }

    interface RotatingSocket {
      /** Sends now, or buffers while (re)connecting; throws once the socket is closed. */
      send(message: string): void;
      close(): void;
      readonly state: SocketState;
    }

    interface TokenState {
      realmURL: string;
      exp: number | null;
      fresh: boolean;
      refreshAt: number | null;
      failed: boolean;
    }

    interface State {
      realms: string[];
      skew: number;
      tokens: TokenState[];
      counters: Record<string, number>;
    }

    /** The loader's configuration, from the script tag's data- attributes. */
    interface Config {
      readonly base: string;
      readonly sw: string | null;
      readonly swScope: string | null;
      readonly realms: readonly string[];
      /** `data-dpop`: realms whose (opaque) tokens are DPoP-bound, as `configure({dpop})`. */
      readonly dpop: readonly string[];
      readonly storageKey: string;
      readonly skew: number | null;
      readonly refreshURL: string | null;
      /** `data-snapshot`: 'auto' restores the bundle's memory snapshot on a first visit when the
       *  link is fast enough to make it pay, 'on' always, 'off' never (boot Pyodide). */
      readonly snapshot: 'auto' | 'on' | 'off';
      /** `data-boot`: 'idle' starts the runtime after the host's load event and idle time. */
      readonly boot: 'now' | 'idle';
      readonly recover: boolean;
      /** 'external': the runtime waits for `attach(pyodide)` instead of loading its own. */
      readonly pyodide: 'own' | 'external';
    }

    /** `console:auth-error`: once per failure episode and tab. */
    interface AuthErrorDetail {
      realmURL: string;
      reason: string;
      status: number | null;
      recoverable: boolean;
    }

    /** `pyauth-web:token-refreshed`: a newer token is in place (this tab or another). */
    interface TokenRefreshedDetail {
      realmURL: string;
    }

    type EventKind =
      | 'token-set'
      | 'token-refreshed'
      | 'token-removed'
      | 'tokens-cleared'
      | 'storage-sync'
      | 'prewarm'
      | 'warning'
      | 'auth-error'
      | 'recovered';

    /** `pyauth-web:event`, for dashboards: `kind` plus fields that depend on it. */
    interface EventDetail {
      kind: EventKind;
      realmURL?: string;
      realms?: string[];
      exp?: number | null;
      message?: string;
      reason?: string;
      status?: number | null;
      recoverable?: boolean;
      count?: number;
    }

    type Fetch = (input: RequestInfo | URL, init?: RequestInit) => Promise<Response>;

    interface Api {
      /** Resolves with this object once the runtime runs; rejects when it could not start. */
      ready: Promise<Api> | null;
      configure(options: ConfigureOptions): Promise<void>;
      setToken(realmURL: string, token: string, refreshToken?: string | null): Promise<void>;
      removeToken(realmURL: string): Promise<void>;
      clearTokens(): Promise<void>;
      /** Re-read localStorage now (after the host wrote it in this tab) and tell the worker. */
      reload(): Promise<void>;
      /** A single-use URL that joins a dedicated or shared worker fetching it to this app. */
      workerTicket(): Promise<string>;
      /** With `data-pyodide="external"`: run the runtime in the host's Pyodide (the one the
       * bundle ships, same version). Resolves like `ready`; rejects on a version mismatch. */
      attach(pyodide: unknown): Promise<Api>;
      getToken(url: string | URL): Promise<string | null>;
      /** A DPoP proof (compact JWS) for a request the host sends itself, e.g. the code exchange at sign-in; makes the app's key if there is none. */
      dpopProof(method: string, url: string | URL, options?: { nonce?: string }): Promise<string>;
      fetch: Fetch;
      wrapFetch(fetchFn: Fetch): Fetch;
      stream(url: string, options?: StreamOptions): StreamHandle;
      socket(url: string, options?: SocketOptions): Promise<RotatingSocket>;
      state(): Promise<State>;
      /** The Pyodide instance, once ready: run your own Python next to the runtime. */
      pyodide: unknown;
      readonly config: Config;
    }
  }

  interface Window {
    pyauthWeb: PyAuthWeb.Api;
  }

  interface WindowEventMap {
    'console:auth-error': CustomEvent<PyAuthWeb.AuthErrorDetail>;
    'pyauth-web:token-refreshed': CustomEvent<PyAuthWeb.TokenRefreshedDetail>;
    'pyauth-web:event': CustomEvent<PyAuthWeb.EventDetail>;
  }

  // eslint-disable-next-line no-var
  var pyauthWeb: PyAuthWeb.Api;
}
