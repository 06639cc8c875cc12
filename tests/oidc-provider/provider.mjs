// The OpenID provider the Portcullis OIDC tests run: panva's oidc-provider,
// unmodified, on a loopback port, with its development login and consent
// pages. Started by `portcullis_tests::oidc_provider::OidcProvider`.
//
// Environment: PORT (loopback port to listen on), CLIENTS (JSON array of
// client metadata). Prints "listening <issuer>" once it accepts.
//
// Test hooks (on this provider only, under /test/): the tests play a
// malicious or broken token endpoint with *real* provider-signed ID tokens,
// which is how token substitution happens in the wild:
// - GET /test/id-tokens?client_id=…  the ID tokens issued to that client;
// - POST /test/substitute {"id_token": "…"}  the next token response carries
//   that ID token instead of its own (once);
// - GET /test/refresh-grants?client_id=…  how many refresh-token grants that
//   client was answered (to prove a refresh is single-flight);
// - POST /test/sign-logout-token {claims}  a logout token with those claims,
//   signed with the provider's own published key: a token that passes the
//   signature check and breaks another rule (a nonce, no events), as only a
//   broken or hostile provider would send.
//
// The provider signs with one RS256 key made at start (its JWKS publishes
// it), so the hook signs exactly as the provider does.
//
// Refresh tokens are issued to every client allowed the grant, and rotated
// on every use (a reused one is refused and revokes the grant, as a
// provider with reuse detection does). ACCESS_TOKEN_TTL (seconds, default
// 600) sets the access tokens' lifetime.
import Provider from 'oidc-provider';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';

const port = Number(process.env.PORT);
if (!Number.isInteger(port) || port <= 0) {
  console.error('PORT must be a port number');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;
const clients = JSON.parse(process.env.CLIENTS ?? '[]');

const issued = new Map(); // client_id -> [id_token, …]
const refreshGrants = new Map(); // client_id -> count
const accessTokenTtl = Number(process.env.ACCESS_TOKEN_TTL ?? 600);
let substitute = null;

const { privateKey } = await generateKeyPair('RS256', { extractable: true });
const signingKid = 'test-provider-key';
const signingJwk = { ...(await exportJWK(privateKey)), kid: signingKid, alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  jwks: { keys: [signingJwk] },
  clients: clients.map((client) => ({
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    ...client,
  })),
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  // The provider's own HTTP client refuses special-use addresses (loopback
  // included) before connecting; the stacks under test live on loopback.
  fetch: (url, options) => {
    const { dispatcher, ...rest } = options;
    return globalThis.fetch(url, rest);
  },
  cookies: { keys: ['portcullis-test-provider-cookie-key'] },
  claims: { openid: ['sub'], profile: ['name'] },
  findAccount: async (_ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, name: id }),
  }),
  ttl: { IdToken: 600, AccessToken: accessTokenTtl, Session: 3600, Interaction: 600, Grant: 3600, RefreshToken: 3600 },
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: true,
});

provider.use(async (ctx, next) => {
  if (ctx.path === '/test/id-tokens' && ctx.method === 'GET') {
    ctx.type = 'json';
    ctx.body = issued.get(ctx.query.client_id) ?? [];
    return;
  }
  if (ctx.path === '/test/refresh-grants' && ctx.method === 'GET') {
    ctx.type = 'json';
    ctx.body = refreshGrants.get(ctx.query.client_id) ?? 0;
    return;
  }
  if (ctx.path === '/test/sign-logout-token' && ctx.method === 'POST') {
    let body = '';
    for await (const chunk of ctx.req) body += chunk;
    ctx.type = 'text';
    ctx.body = await new SignJWT(JSON.parse(body).claims)
      .setProtectedHeader({ alg: 'RS256', kid: signingKid, typ: 'logout+jwt' })
      .sign(privateKey);
    return;
  }
  if (ctx.path === '/test/substitute' && ctx.method === 'POST') {
    let body = '';
    for await (const chunk of ctx.req) body += chunk;
    substitute = JSON.parse(body).id_token;
    ctx.status = 204;
    return;
  }
  await next();
  if (ctx.path === '/token' && ctx.status === 200 && ctx.oidc?.params?.grant_type === 'refresh_token') {
    const clientId = ctx.oidc?.client?.clientId;
    if (clientId) refreshGrants.set(clientId, (refreshGrants.get(clientId) ?? 0) + 1);
  }
  if (ctx.path === '/token' && ctx.status === 200 && ctx.body?.id_token) {
    const clientId = ctx.oidc?.client?.clientId;
    if (clientId) issued.set(clientId, [...(issued.get(clientId) ?? []), ctx.body.id_token]);
    if (substitute) {
      ctx.body = { ...ctx.body, id_token: substitute };
      substitute = null;
    }
  }
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});
