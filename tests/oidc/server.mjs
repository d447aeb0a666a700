// A real OpenID Provider (the certified `oidc-provider` package) on 127.0.0.1 for the tests.
//   node server.mjs PORT CLIENT_ID REDIRECT_URI RESOURCE ACCESS_TOKEN_TTL_S [nonce] [refresh-ttl=S]
// DPoP (RFC 9449) is on, as by default: a token request with a proof gets DPoP-bound tokens
// (cnf.jkt in the JWT access token; the refresh token bound to the same key). With `nonce`
// every DPoP proof must carry a nonce the provider gave (400 use_dpop_nonce + DPoP-Nonce first).
// With `refresh-ttl=S`, access tokens from the refresh_token grant live S seconds (the first
// one, from the code exchange, ACCESS_TOKEN_TTL_S).
// Public client (PKCE, no secret), authorization_code + refresh_token grants, JWT access
// tokens for RESOURCE, refresh tokens rotated on every use (reusing one revokes the grant).
// Prints one JSON line per event on stdout: {"event":"listening"} first, then grant results.
import { randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

const [port, clientId, redirectUri, resource, ttl, ...flags] = process.argv.slice(2);
const requireNonce = flags.includes('nonce');
const refreshTTL = flags.filter((f) => f.startsWith('refresh-ttl=')).map((f) => Number(f.slice(12)))[0];
// (A function of the request: the resource server's own accessTokenTTL would apply to both.)
const accessTTL = (ctx) => (refreshTTL && ctx && ctx.oidc && ctx.oidc.params
  && ctx.oidc.params.grant_type === 'refresh_token' ? refreshTTL : Number(ttl));
const issuer = `http://127.0.0.1:${port}`;
const log = (event) => process.stdout.write(`${JSON.stringify({ t: Date.now() / 1000, ...event })}\n`);

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    token_endpoint_auth_method: 'none',
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
  }],
  ttl: { AccessToken: (ctx) => accessTTL(ctx), RefreshToken: 3600, Grant: 3600, Session: 3600, Interaction: 600 },
  features: {
    devInteractions: { enabled: true },
    dPoP: requireNonce
      ? { enabled: true, nonceSecret: randomBytes(32), requireNonce: () => true }
      : { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'api',
        audience: resource,
        accessTokenFormat: 'jwt',
      }),
    },
  },
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  clientBasedCORS: () => true,
});

provider.on('grant.success', (ctx) => log({ event: 'grant.success', grant_type: ctx.oidc.params.grant_type }));
provider.on('grant.error', (ctx, err) => log({ event: 'grant.error', grant_type: ctx.oidc.params?.grant_type, error: err.error, description: err.error_description }));
provider.on('grant.revoked', (_ctx, grantId) => log({ event: 'grant.revoked', grantId }));
provider.on('server_error', (_ctx, err) => log({ event: 'server_error', error: String(err) }));

const server = provider.listen(Number(port), '127.0.0.1', () => log({ event: 'listening', issuer }));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
