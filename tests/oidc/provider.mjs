// Test OpenID Provider for authgate's OIDC relying-party tests.
//
// A real oidc-provider (panva) instance plus a few /test/* endpoints that let an
// automated test log in without a person, rotate signing keys and hand out
// hostile ID tokens. TEST ONLY: binds to 127.0.0.1, keys live in memory.
//
//   PORT=0 OIDC_CONFIG=sample-config.json node provider.mjs
//   -> prints exactly one line "READY http://127.0.0.1:<port>" on stdout.
//
// See README.md for the config format, endpoints and the login HTTP sequence.

import http from 'node:http';
import { readFileSync } from 'node:fs';
import { randomBytes, randomUUID } from 'node:crypto';

import Provider, { interactionPolicy } from 'oidc-provider';
// Internal accessor to the provider's keystore (used for runtime key rotation).
// oidc-provider has no "exports" map, so this deep import resolves to the very
// same module instance the library itself uses.
import instance from 'oidc-provider/lib/helpers/weak_cache.js';
import {
  generateKeyPair, exportJWK, CompactSign, decodeJwt, decodeProtectedHeader,
} from 'jose';

const HOST = '127.0.0.1';
const log = (...a) => process.stderr.write(`[oidc-test-provider] ${a.join(' ')}\n`);

// ---------------------------------------------------------------- config
const DEFAULT_CONFIG = {
  clients: [{
    client_id: 'authgate',
    client_secret: 'authgate-test-secret',
    redirect_uris: ['http://127.0.0.1:8080/oidc/callback'],
  }],
  accounts: [{
    sub: 'alice', email: 'alice@example.com', email_verified: true, name: 'Alice Example',
  }],
};

function loadConfig() {
  const path = process.env.OIDC_CONFIG;
  const cfg = path ? JSON.parse(readFileSync(path, 'utf8')) : DEFAULT_CONFIG;
  if (!Array.isArray(cfg.clients) || !cfg.clients.length) throw new Error('config: "clients" must be a non-empty array');
  if (!Array.isArray(cfg.accounts) || !cfg.accounts.length) throw new Error('config: "accounts" must be a non-empty array');
  for (const c of cfg.clients) {
    if (!c.client_id || !c.client_secret || !Array.isArray(c.redirect_uris)) {
      throw new Error(`config: client needs client_id, client_secret, redirect_uris: ${JSON.stringify(c)}`);
    }
  }
  for (const a of cfg.accounts) if (!a.sub) throw new Error('config: every account needs "sub"');
  return cfg;
}

const cfg = loadConfig();
const accounts = new Map(cfg.accounts.map((a) => [String(a.sub), a]));
const defaultAccount = cfg.default_account ?? cfg.accounts[0].sub;

// ---------------------------------------------------------------- keys
const ALG = 'RS256';
async function newSigningKey() {
  const { privateKey } = await generateKeyPair(ALG, { extractable: true });
  const jwk = await exportJWK(privateKey);
  return { ...jwk, kid: `k-${randomUUID()}`, alg: ALG, use: 'sig' };
}
const publicPart = ({ d, p, q, dp, dq, qi, oth, ...pub }) => pub;

// signingKeys[0] is the ACTIVE key (oidc-provider signs with the first match).
let signingKeys = [await newSigningKey()];

// ---------------------------------------------------------------- test state
let pendingLogin = null; // { account, client_id? } set by /test/login, consumed by the next interaction
let pendingIdToken = null; // overrides for the next id_token, set by /test/next-id-token

// ---------------------------------------------------------------- provider
const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(Number(process.env.PORT ?? 0), HOST, resolve);
});
const { port } = server.address();
const issuer = `http://${HOST}:${port}`;

// login prompt: also (re)authenticate when login_hint names another account than
// the session's, or when /test/login queued an account.
const policy = interactionPolicy.base();
policy.get('login').checks.add(new interactionPolicy.Check(
  'test_login_switch',
  'test harness requested a (different) account',
  (ctx) => {
    const { oidc } = ctx;
    if (oidc.result?.login) return interactionPolicy.Check.NO_NEED_TO_PROMPT;
    const hint = oidc.params.login_hint;
    if (hint !== undefined && oidc.session.accountId && hint !== oidc.session.accountId) {
      return interactionPolicy.Check.REQUEST_PROMPT;
    }
    if (pendingLogin && (!pendingLogin.client_id || pendingLogin.client_id === oidc.params.client_id)) {
      return interactionPolicy.Check.REQUEST_PROMPT;
    }
    return interactionPolicy.Check.NO_NEED_TO_PROMPT;
  },
));

const provider = new Provider(issuer, {
  clients: cfg.clients.map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    redirect_uris: c.redirect_uris,
    post_logout_redirect_uris: c.post_logout_redirect_uris ?? [],
    response_types: ['code'],
    grant_types: ['authorization_code'],
    token_endpoint_auth_method: c.token_endpoint_auth_method ?? 'client_secret_basic',
    id_token_signed_response_alg: ALG,
  })),
  jwks: { keys: signingKeys },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  // false => claims of the requested scopes (email, name, ...) are put in the
  // ID token too, not only served by userinfo. Set "conform_id_token_claims": true
  // in the config for oidc-provider's strict default.
  conformIdTokenClaims: cfg.conform_id_token_claims ?? false,
  pkce: { required: () => true }, // S256 is the only method oidc-provider supports
  features: {
    devInteractions: { enabled: false },
    userinfo: { enabled: true },
  },
  interactions: {
    policy,
    url: (ctx, interaction) => `/interaction/${interaction.uid}`,
  },
  async findAccount(ctx, id) {
    const a = accounts.get(String(id));
    if (!a) return undefined;
    return {
      accountId: String(a.sub),
      async claims() {
        return {
          sub: String(a.sub),
          ...(a.email !== undefined && { email: a.email }),
          ...(a.email_verified !== undefined && { email_verified: a.email_verified }),
          ...(a.name !== undefined && { name: a.name }),
        };
      },
    };
  },
  ttl: cfg.ttl ?? undefined,
  renderError(ctx, out, error) {
    ctx.type = 'json';
    ctx.body = out;
    if (error && !error.expose) log('error:', error.stack || error);
  },
});

function applyKeys(keys) {
  const int = instance(provider);
  int.keystore.clear();
  for (const k of keys) int.keystore.add(structuredClone(k));
  int.jwks = { keys: keys.map(publicPart) };
  signingKeys = keys;
}

// ---------------------------------------------------------------- helpers
async function readJson(ctx) {
  const chunks = [];
  for await (const c of ctx.req) chunks.push(c);
  const raw = Buffer.concat(chunks).toString('utf8').trim();
  return raw ? JSON.parse(raw) : {};
}
const b64u = (x) => Buffer.from(typeof x === 'string' ? x : JSON.stringify(x)).toString('base64url');

async function signWith(payload, header, key) {
  return new CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
    .setProtectedHeader(header)
    .sign(key);
}

// Rebuild an ID token according to the override spec (see README).
async function rebuildIdToken(original, spec, clientId) {
  const payload = decodeJwt(original);
  const now = Math.floor(Date.now() / 1000);
  Object.assign(payload, spec.claims ?? {});
  if (spec.exp_offset !== undefined) payload.exp = now + Number(spec.exp_offset);
  if (spec.iat_offset !== undefined) payload.iat = now + Number(spec.iat_offset);
  for (const c of spec.unset ?? []) delete payload[c];

  const mode = spec.mode ?? 'resign';
  const active = signingKeys[0];
  switch (mode) {
    case 'resign':
      return signWith(payload, { alg: ALG, kid: active.kid, ...spec.header }, active);
    case 'none':
      return `${b64u({ alg: 'none', ...spec.header })}.${b64u(payload)}.`;
    case 'hs256': {
      const client = cfg.clients.find((c) => c.client_id === clientId) ?? cfg.clients[0];
      return signWith(payload, { alg: 'HS256', ...spec.header }, new TextEncoder().encode(client.client_secret));
    }
    case 'bad_signature': {
      const jwt = await signWith(payload, { alg: ALG, kid: active.kid, ...spec.header }, active);
      const [h, p, s] = jwt.split('.');
      const sig = Buffer.from(s, 'base64url');
      sig[0] ^= 0xff; sig[sig.length - 1] ^= 0xff;
      return `${h}.${p}.${sig.toString('base64url')}`;
    }
    case 'unknown_kid': {
      const rogue = await newSigningKey();
      return signWith(payload, { alg: ALG, kid: rogue.kid, ...spec.header }, rogue);
    }
    case 'wrong_key_known_kid': {
      const rogue = await newSigningKey();
      return signWith(payload, { alg: ALG, kid: active.kid, ...spec.header }, rogue);
    }
    default:
      throw Object.assign(new Error(`unknown mode ${mode}`), { status: 400 });
  }
}

const MODES = ['resign', 'none', 'hs256', 'bad_signature', 'unknown_kid', 'wrong_key_known_kid'];

// ---------------------------------------------------------------- interaction (auto-login)
async function autoInteraction(ctx) {
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const { prompt, params, session } = details;
  const result = {};
  let accountId;
  let grant;

  if (prompt.name === 'login') {
    let wanted = params.login_hint;
    if (wanted === undefined && pendingLogin
      && (!pendingLogin.client_id || pendingLogin.client_id === params.client_id)) {
      wanted = pendingLogin.account;
      pendingLogin = null;
    }
    wanted ??= defaultAccount;
    if (wanted === '__deny__' || !accounts.has(String(wanted))) {
      const url = await provider.interactionResult(ctx.req, ctx.res, {
        error: 'access_denied',
        error_description: wanted === '__deny__' ? 'test harness denied the login' : `unknown test account ${wanted}`,
      }, { mergeWithLastSubmission: false });
      ctx.status = 303;
      ctx.set('Location', url);
      return;
    }
    accountId = String(wanted);
    if (session?.accountId && session.accountId !== accountId) {
      // Account switch in an existing browser session. oidc-provider would answer
      // the resume with an auto-submitting logout <form> (needs JS); instead end
      // the old session server-side and detach it from this interaction, so the
      // resume just starts a fresh session for the new account.
      const old = session.uid ? await provider.Session.findByUid(session.uid) : undefined;
      if (old) await old.destroy();
      delete details.session;
      await details.save(details.exp - Math.floor(Date.now() / 1000));
    }
    result.login = { accountId };
    grant = new provider.Grant({ accountId, clientId: params.client_id });
  } else {
    accountId = session.accountId;
    grant = details.grantId ? await provider.Grant.find(details.grantId) : undefined;
    grant ??= new provider.Grant({ accountId, clientId: params.client_id });
  }

  // Grant everything that was asked for.
  if (params.scope) grant.addOIDCScope(params.scope);
  if (params.claims) {
    const claims = typeof params.claims === 'string' ? JSON.parse(params.claims) : params.claims;
    if (claims.id_token) grant.addOIDCClaims(Object.keys(claims.id_token));
    if (claims.userinfo) grant.addOIDCClaims(Object.keys(claims.userinfo));
  }
  result.consent = { grantId: await grant.save() };

  const url = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
  ctx.status = 303;
  ctx.set('Location', url);
}

// ---------------------------------------------------------------- middleware
provider.use(async (ctx, next) => {
  const { path, method } = ctx;
  try {
    if (method === 'GET' && /^\/interaction\/[^/]+$/.test(path)) {
      await autoInteraction(ctx);
      return;
    }

    if (path.startsWith('/test/')) {
      ctx.set('Cache-Control', 'no-store');
      if (path === '/test/login' && (method === 'GET' || method === 'POST')) {
        const body = method === 'POST' ? await readJson(ctx) : {};
        const account = ctx.query.account ?? body.account;
        const clientId = ctx.query.client_id ?? body.client_id;
        if (!account) throw Object.assign(new Error('account is required'), { status: 400 });
        if (account !== '__deny__' && !accounts.has(String(account))) {
          throw Object.assign(new Error(`unknown account ${account}`), { status: 400 });
        }
        pendingLogin = { account: String(account), client_id: clientId };
        ctx.body = { ok: true, next_login: pendingLogin };
        return;
      }
      if (path === '/test/rotate-keys' && method === 'POST') {
        const body = await readJson(ctx);
        const dropOld = ['1', 'true'].includes(String(ctx.query.drop_old)) || body.drop_old === true;
        const fresh = await newSigningKey();
        const previous = signingKeys.map((k) => k.kid);
        applyKeys(dropOld ? [fresh] : [fresh, ...signingKeys]);
        ctx.body = {
          ok: true, active_kid: fresh.kid, previous_kids: previous, published_kids: signingKeys.map((k) => k.kid),
        };
        return;
      }
      if (path === '/test/drop-old-keys' && method === 'POST') {
        applyKeys([signingKeys[0]]);
        ctx.body = { ok: true, active_kid: signingKeys[0].kid, published_kids: [signingKeys[0].kid] };
        return;
      }
      if (path === '/test/keys' && method === 'GET') {
        ctx.body = { active_kid: signingKeys[0].kid, published_kids: signingKeys.map((k) => k.kid) };
        return;
      }
      if (path === '/test/next-id-token') {
        if (method === 'DELETE') {
          pendingIdToken = null;
          ctx.body = { ok: true };
          return;
        }
        if (method === 'POST') {
          const spec = await readJson(ctx);
          if (spec.mode !== undefined && !MODES.includes(spec.mode)) {
            throw Object.assign(new Error(`mode must be one of ${MODES.join(', ')}`), { status: 400 });
          }
          pendingIdToken = spec;
          ctx.body = { ok: true, next_id_token: spec };
          return;
        }
      }
      if (path === '/test/reset' && method === 'POST') {
        pendingLogin = null;
        pendingIdToken = null;
        ctx.body = { ok: true };
        return;
      }
      ctx.status = 404;
      ctx.body = { error: 'not_found', path };
      return;
    }
  } catch (err) {
    ctx.status = err.status ?? 500;
    ctx.body = {
      error: err.error ?? 'test_harness_error',
      error_description: err.error_description ?? err.message,
    };
    if (ctx.status >= 500) log(err.stack);
    return;
  }

  await next();

  // Post-process the token endpoint: apply a queued hostile-ID-token spec.
  if (path === '/token' && method === 'POST' && ctx.status === 200
      && pendingIdToken && ctx.body && typeof ctx.body === 'object' && ctx.body.id_token) {
    const clientId = ctx.oidc?.client?.clientId;
    if (!pendingIdToken.client_id || pendingIdToken.client_id === clientId) {
      const spec = pendingIdToken;
      pendingIdToken = null;
      ctx.body = { ...ctx.body, id_token: await rebuildIdToken(ctx.body.id_token, spec, clientId) };
      log('hostile id_token served, mode', spec.mode ?? 'resign', 'kid', decodeProtectedHeader(ctx.body.id_token).kid ?? '-');
    }
  }
});

server.on('request', provider.callback());

// ---------------------------------------------------------------- lifecycle
const shutdown = (sig) => {
  log(`got ${sig}, exiting`);
  server.close();
  server.closeAllConnections?.();
  process.exit(0);
};
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
// OIDC_EXIT_ON_STDIN_EOF=1: exit when stdin closes, so a test runner that dies (even by
// SIGKILL) leaves no provider behind. The runner keeps stdin open while it needs the provider.
if (process.env.OIDC_EXIT_ON_STDIN_EOF === '1') {
  process.stdin.on('end', () => shutdown('end of stdin'));
  process.stdin.on('error', () => shutdown('stdin error'));
  process.stdin.resume();
}

process.stdout.write(`READY ${issuer}\n`);
