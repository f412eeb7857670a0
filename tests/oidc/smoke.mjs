// Smoke test for the test OpenID Provider: starts provider.mjs on a free port
// with sample-config.json and exercises the code flow, the automated login,
// key rotation and every hostile ID token mode. Exits non-zero on failure and
// ends with a line "N passed, N failed".
//
//   npm ci && node smoke.mjs

import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import assert from 'node:assert/strict';

import { createLocalJWKSet, jwtVerify, decodeJwt, decodeProtectedHeader } from 'jose';
import { driveLogin, CookieJar } from './drive-login.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const configPath = join(here, 'sample-config.json');
const config = JSON.parse(readFileSync(configPath, 'utf8'));
const [basic, post] = config.clients;

// ------------------------------------------------------------ start provider
async function startProvider() {
  const child = spawn(process.execPath, [join(here, 'provider.mjs')], {
    env: { ...process.env, PORT: '0', OIDC_CONFIG: configPath },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stderr = [];
  child.stderr.on('data', (d) => stderr.push(d));
  const issuer = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`provider not ready in 15s: ${Buffer.concat(stderr)}`)), 15000);
    child.once('exit', (code) => reject(new Error(`provider exited ${code}: ${Buffer.concat(stderr)}`)));
    createInterface({ input: child.stdout }).once('line', (line) => {
      clearTimeout(timer);
      const m = /^READY (http:\/\/127\.0\.0\.1:\d+)$/.exec(line);
      if (m) resolve(m[1]); else reject(new Error(`unexpected first line: ${line}`));
    });
  });
  return { child, issuer, stderr };
}

const { child, issuer } = await startProvider();
console.log(`provider up: ${issuer} (pid ${child.pid})`);

// ------------------------------------------------------------ helpers
const b64u = (b) => Buffer.from(b).toString('base64url');
const disco = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();

async function jwks() {
  return (await fetch(disco.jwks_uri)).json();
}

function authUrl(client, extra = {}) {
  const verifier = b64u(randomBytes(32));
  const p = {
    client_id: client.client_id,
    response_type: 'code',
    scope: 'openid email profile',
    redirect_uri: client.redirect_uris[0],
    state: b64u(randomBytes(12)),
    nonce: b64u(randomBytes(12)),
    code_challenge: b64u(createHash('sha256').update(verifier).digest()),
    code_challenge_method: 'S256',
    ...extra,
  };
  for (const [k, v] of Object.entries(p)) if (v === undefined) delete p[k];
  return { url: `${disco.authorization_endpoint}?${new URLSearchParams(p)}`, verifier, ...p };
}

async function exchange(client, code, verifier) {
  const form = new URLSearchParams({
    grant_type: 'authorization_code', code, redirect_uri: client.redirect_uris[0], code_verifier: verifier,
  });
  const headers = { 'content-type': 'application/x-www-form-urlencoded' };
  if ((client.token_endpoint_auth_method ?? 'client_secret_basic') === 'client_secret_basic') {
    const enc = (s) => encodeURIComponent(s); // RFC 6749 2.3.1: form-urlencode then base64
    headers.authorization = `Basic ${Buffer.from(`${enc(client.client_id)}:${enc(client.client_secret)}`).toString('base64')}`;
  } else {
    form.set('client_id', client.client_id);
    form.set('client_secret', client.client_secret);
  }
  const res = await fetch(disco.token_endpoint, { method: 'POST', headers, body: form });
  return { status: res.status, body: await res.json() };
}

// full flow -> { tokens, req, callback, hops }
async function codeFlow(client, extra = {}, jar = new CookieJar()) {
  const req = authUrl(client, extra);
  const { location, hops } = await driveLogin(req.url, { jar });
  const cb = new URL(location);
  assert.equal(`${cb.origin}${cb.pathname}`, client.redirect_uris[0]);
  assert.equal(cb.searchParams.get('state'), req.state, 'state echoed');
  assert.equal(cb.searchParams.get('iss'), issuer, 'iss in authorization response (RFC 9207)');
  const code = cb.searchParams.get('code');
  assert.ok(code, `code in callback: ${location}`);
  const tok = await exchange(client, code, req.verifier);
  assert.equal(tok.status, 200, JSON.stringify(tok.body));
  return { tokens: tok.body, req, hops, jar };
}

async function verifyIdToken(idToken, client, nonce) {
  const { payload, protectedHeader } = await jwtVerify(idToken, createLocalJWKSet(await jwks()), {
    issuer, audience: client.client_id, algorithms: ['RS256'],
  });
  assert.equal(payload.nonce, nonce, 'nonce');
  return { payload, protectedHeader };
}

const post_ = (path, body) => fetch(`${issuer}${path}`, {
  method: 'POST', headers: { 'content-type': 'application/json' }, body: body ? JSON.stringify(body) : undefined,
}).then(async (r) => ({ status: r.status, body: await r.json() }));

// ------------------------------------------------------------ tests
let passed = 0; let failed = 0;
async function test(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok   - ${name}`);
  } catch (err) {
    failed++;
    console.log(`FAIL - ${name}\n       ${err.stack?.split('\n').slice(0, 3).join('\n       ')}`);
    if (err.hops) console.log(err.hops);
  }
}

await test('discovery', async () => {
  assert.equal(disco.issuer, issuer);
  assert.deepEqual(disco.code_challenge_methods_supported, ['S256']);
  assert.equal(disco.authorization_response_iss_parameter_supported, true);
  for (const m of ['client_secret_basic', 'client_secret_post']) assert.ok(disco.token_endpoint_auth_methods_supported.includes(m));
});

await test('code flow + PKCE + client_secret_basic, ID token verified (sig, iss, aud, nonce)', async () => {
  const { tokens, req, hops } = await codeFlow(basic);
  console.log('       hops:');
  for (const h of hops) console.log(`         ${h.status} ${new URL(h.url).pathname} sent=[${h.sent_cookies}] set=[${h.set_cookies}] -> ${h.location.replace(/\?.*/, '?...')}`);
  const { payload, protectedHeader } = await verifyIdToken(tokens.id_token, basic, req.nonce);
  if (process.env.SMOKE_VERBOSE) console.log("       id_token header", protectedHeader, "payload", payload);
  assert.equal(payload.sub, 'alice');
  assert.equal(payload.email, 'alice@example.com');
  assert.equal(payload.email_verified, true);
  assert.equal(payload.name, 'Alice Example');
  assert.ok(protectedHeader.kid);
  assert.equal(tokens.token_type, 'Bearer');
  const ui = await (await fetch(disco.userinfo_endpoint, { headers: { authorization: `Bearer ${tokens.access_token}` } })).json();
  assert.equal(ui.email, 'alice@example.com');
});

await test('client_secret_post client, login_hint=bob selects bob', async () => {
  const { tokens, req } = await codeFlow(post, { login_hint: 'bob' });
  const { payload } = await verifyIdToken(tokens.id_token, post, req.nonce);
  assert.equal(payload.sub, 'bob');
  assert.equal(payload.email_verified, false);
});

await test('GET /test/login?account=bob switches account even with an existing session', async () => {
  const jar = new CookieJar();
  const first = await codeFlow(basic, {}, jar);
  assert.equal(decodeJwt(first.tokens.id_token).sub, 'alice');
  const again = await codeFlow(basic, {}, jar); // session reused: no interaction
  assert.equal(again.hops.length, 1, 'existing session -> single redirect');
  assert.equal((await (await fetch(`${issuer}/test/login?account=bob`)).json()).ok, true);
  const third = await codeFlow(basic, {}, jar);
  assert.equal(decodeJwt(third.tokens.id_token).sub, 'bob');
  const fourth = await codeFlow(basic, { login_hint: 'alice' }, jar); // login_hint mismatch -> re-login
  assert.equal(decodeJwt(fourth.tokens.id_token).sub, 'alice');
  const fifth = await codeFlow(basic, {}, jar); // alice's session persists
  assert.equal(fifth.hops.length, 1);
  assert.equal(decodeJwt(fifth.tokens.id_token).sub, 'alice');
});

await test('login_hint=__deny__ -> redirect_uri?error=access_denied', async () => {
  const req = authUrl(basic, { login_hint: '__deny__' });
  const { location } = await driveLogin(req.url);
  const cb = new URL(location);
  assert.equal(cb.searchParams.get('error'), 'access_denied');
  assert.equal(cb.searchParams.get('state'), req.state);
});

await test('PKCE is required (no code_challenge -> error redirect)', async () => {
  const req = authUrl(basic, { code_challenge: undefined, code_challenge_method: undefined });
  const { location } = await driveLogin(req.url);
  assert.equal(new URL(location).searchParams.get('error'), 'invalid_request');
});

await test('wrong code_verifier -> invalid_grant', async () => {
  const req = authUrl(basic);
  const { location } = await driveLogin(req.url);
  const tok = await exchange(basic, new URL(location).searchParams.get('code'), b64u(randomBytes(32)));
  assert.equal(tok.status, 400);
  assert.equal(tok.body.error, 'invalid_grant');
});

await test('POST /test/rotate-keys: new kid signs, old kid still published', async () => {
  const before = await jwks();
  const oldKid = before.keys[0].kid;
  const r = await post_('/test/rotate-keys');
  assert.equal(r.status, 200);
  const after = await jwks();
  assert.deepEqual(after.keys.map((k) => k.kid), [r.body.active_kid, oldKid]);
  const { tokens, req } = await codeFlow(basic);
  const { protectedHeader } = await verifyIdToken(tokens.id_token, basic, req.nonce);
  assert.equal(protectedHeader.kid, r.body.active_kid);
  assert.equal(decodeProtectedHeader(tokens.id_token).kid, r.body.active_kid);
});

await test('POST /test/rotate-keys?drop_old=1 and /test/drop-old-keys: only the new kid remains', async () => {
  const r = await post_('/test/rotate-keys?drop_old=1');
  assert.deepEqual((await jwks()).keys.map((k) => k.kid), [r.body.active_kid]);
  const r2 = await post_('/test/rotate-keys');
  assert.equal((await jwks()).keys.length, 2);
  const r3 = await post_('/test/drop-old-keys');
  assert.deepEqual(r3.body.published_kids, [r2.body.active_kid]);
  assert.deepEqual((await jwks()).keys.map((k) => k.kid), [r2.body.active_kid]);
  const { tokens, req } = await codeFlow(basic);
  await verifyIdToken(tokens.id_token, basic, req.nonce);
});

// hostile ID tokens -------------------------------------------------
async function hostile(spec, client = basic) {
  const r = await post_('/test/next-id-token', spec);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const { tokens, req } = await codeFlow(client);
  return { idToken: tokens.id_token, req };
}
const rejects = async (p, re) => assert.rejects(p, re);

await test('claims override: aud', async () => {
  const { idToken, req } = await hostile({ claims: { aud: 'someone-else' } });
  await rejects(verifyIdToken(idToken, basic, req.nonce), /aud/);
});
await test('claims override: iss', async () => {
  const { idToken, req } = await hostile({ claims: { iss: 'http://127.0.0.1:1' } });
  await rejects(verifyIdToken(idToken, basic, req.nonce), /iss/);
});
await test('claims override: exp in the past (exp_offset=-3600)', async () => {
  const { idToken, req } = await hostile({ exp_offset: -3600 });
  await rejects(verifyIdToken(idToken, basic, req.nonce), /exp/);
});
await test('claims override: iat in the future (iat_offset=+3600), still validly signed', async () => {
  const { idToken, req } = await hostile({ iat_offset: 3600 });
  // NB: jose's jwtVerify does NOT reject a future iat (only with maxTokenAge);
  // the RP has to check iat itself if it wants to.
  const { payload } = await verifyIdToken(idToken, basic, req.nonce);
  assert.ok(payload.iat > Date.now() / 1000 + 3000);
});
await test('claims override: nonce', async () => {
  const { idToken, req } = await hostile({ claims: { nonce: 'not-your-nonce' } });
  await rejects(verifyIdToken(idToken, basic, req.nonce), /nonce/);
});
await test('claims override: email_verified=false still validly signed', async () => {
  const { idToken, req } = await hostile({ claims: { email_verified: false } });
  const { payload } = await verifyIdToken(idToken, basic, req.nonce);
  assert.equal(payload.email_verified, false);
  assert.equal(payload.sub, 'alice');
});
await test('unset: nonce removed', async () => {
  const { idToken, req } = await hostile({ unset: ['nonce'] });
  assert.equal(decodeJwt(idToken).nonce, undefined);
  await rejects(verifyIdToken(idToken, basic, req.nonce), /nonce/);
});
await test('mode none (alg=none, empty signature)', async () => {
  const { idToken, req } = await hostile({ mode: 'none' });
  assert.equal(decodeProtectedHeader(idToken).alg, 'none');
  assert.ok(idToken.endsWith('.'));
  await rejects(verifyIdToken(idToken, basic, req.nonce));
});
await test('mode hs256 (HMAC with the client secret)', async () => {
  const { idToken, req } = await hostile({ mode: 'hs256' });
  assert.equal(decodeProtectedHeader(idToken).alg, 'HS256');
  // prove it really is HMAC(client_secret)
  await jwtVerify(idToken, new TextEncoder().encode(basic.client_secret), { algorithms: ['HS256'] });
  await rejects(verifyIdToken(idToken, basic, req.nonce));
});
await test('mode bad_signature', async () => {
  const { idToken, req } = await hostile({ mode: 'bad_signature' });
  await rejects(verifyIdToken(idToken, basic, req.nonce), /signature verification failed/);
});
await test('mode unknown_kid', async () => {
  const { idToken, req } = await hostile({ mode: 'unknown_kid' });
  const kid = decodeProtectedHeader(idToken).kid;
  assert.ok(!(await jwks()).keys.some((k) => k.kid === kid));
  await rejects(verifyIdToken(idToken, basic, req.nonce), /no applicable key/);
});
await test('mode wrong_key_known_kid', async () => {
  const { idToken, req } = await hostile({ mode: 'wrong_key_known_kid' });
  assert.ok((await jwks()).keys.some((k) => k.kid === decodeProtectedHeader(idToken).kid));
  await rejects(verifyIdToken(idToken, basic, req.nonce), /signature verification failed/);
});
await test('override is one-shot and client_id-scoped', async () => {
  await post_('/test/next-id-token', { mode: 'none', client_id: post.client_id });
  const a = await codeFlow(basic); // not affected
  await verifyIdToken(a.tokens.id_token, basic, a.req.nonce);
  const b = await codeFlow(post); // affected
  assert.equal(decodeProtectedHeader(b.tokens.id_token).alg, 'none');
  const c = await codeFlow(post); // consumed
  await verifyIdToken(c.tokens.id_token, post, c.req.nonce);
});
await test('DELETE /test/next-id-token clears a pending override', async () => {
  await post_('/test/next-id-token', { mode: 'none' });
  await fetch(`${issuer}/test/next-id-token`, { method: 'DELETE' });
  const a = await codeFlow(basic);
  await verifyIdToken(a.tokens.id_token, basic, a.req.nonce);
});

await test('SIGTERM stops the provider', async () => {
  const exited = new Promise((resolve) => child.once('exit', (code, sig) => resolve({ code, sig })));
  child.kill('SIGTERM');
  const { code } = await exited;
  assert.equal(code, 0);
});

if (child.exitCode === null) child.kill('SIGTERM');
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
