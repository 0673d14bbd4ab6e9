// A real OpenID Connect provider (panva oidc-provider) for Stratochat's login tests.
//
// It must sit beside its node_modules: ESM resolves 'oidc-provider' relative to this file.
// Configured by the test fixture (tests/services/oidc.py) through the environment:
//   OIDC_PORT                       port to listen on (127.0.0.1 only); the issuer is http://127.0.0.1:<port>
//   OIDC_REDIRECT_URIS              comma-separated redirect URIs of the one client (the app's /authorize)
//   OIDC_POST_LOGOUT_REDIRECT_URIS  comma-separated post-logout redirect URIs (optional)
//   OIDC_CLIENT_ID, OIDC_CLIENT_SECRET  the confidential client
//   OIDC_JWKS                       {"keys": [...]} private signing keys, so a test can rotate them by restarting
// Any login/password is accepted (dev interactions). Accounts whose login starts with "premium" carry
// the Cognito-style claim cognito:groups = ["premium"].
import http from 'node:http';

import Provider from 'oidc-provider';

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is required`);
  return value;
};
const list = (value) => value.split(',').map((s) => s.trim()).filter(Boolean);

const port = Number(env('OIDC_PORT'));
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: env('OIDC_CLIENT_ID', 'stratochat'),
      client_secret: env('OIDC_CLIENT_SECRET', 'stratochat-secret'),
      redirect_uris: list(env('OIDC_REDIRECT_URIS')),
      post_logout_redirect_uris: list(env('OIDC_POST_LOGOUT_REDIRECT_URIS', '')),
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  jwks: JSON.parse(env('OIDC_JWKS')),
  pkce: { required: () => true },
  // Scope claims go into the ID token too, as Cognito puts them there.
  conformIdTokenClaims: false,
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['preferred_username', 'name', 'cognito:groups'],
  },
  cookies: { keys: ['stratochat-test-cookie-key'] },
  features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          email: `${id}@example.test`,
          email_verified: true,
          preferred_username: id,
          name: id,
          ...(id.startsWith('premium') ? { 'cognito:groups': ['premium'] } : {}),
        };
      },
    };
  },
});

// Errors land in the fixture's log file, to explain a failing test.
for (const event of ['server_error', 'authorization.error', 'grant.error', 'end_session.error']) {
  provider.on(event, (ctx, err) => console.error(event, err, err.cause ?? ''));
}

const server = http.createServer(provider.callback());
server.listen(port, '127.0.0.1', () => console.log(`oidc-provider listening on ${issuer}`));
const stop = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
