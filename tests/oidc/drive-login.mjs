// Drive an authorization request through the test provider without a browser:
// GET the authorization URL, follow the provider's own redirects by hand with a
// cookie jar, and stop at the first redirect that leaves the provider's origin
// (that is the client's redirect_uri?code=...&state=...&iss=...).
//
// Library:  import { driveLogin, CookieJar } from './drive-login.mjs'
//           const { location, hops } = await driveLogin(authorizationUrl)
// CLI:      node drive-login.mjs '<authorization-url>'   (prints the hops on
//           stderr and the final Location on stdout)
//
// This is the same sequence a Rust test with reqwest must do (see README.md).

export class CookieJar {
  #cookies = new Map(); // key: name + '\0' + path

  store(url, setCookieHeaders) {
    const u = new URL(url);
    for (const line of setCookieHeaders) {
      const [pair, ...attrs] = line.split(';').map((s) => s.trim());
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      let path = '/';
      let expired = false;
      for (const a of attrs) {
        const [k, v = ''] = a.split('=');
        if (k.toLowerCase() === 'path') path = v || '/';
        if (k.toLowerCase() === 'expires' && Date.parse(v) <= Date.now()) expired = true;
        if (k.toLowerCase() === 'max-age' && Number(v) <= 0) expired = true;
      }
      const key = `${name}\0${path}`;
      if (expired || value === '') this.#cookies.delete(key);
      else this.#cookies.set(key, { name, value, path, host: u.host });
    }
  }

  header(url) {
    const u = new URL(url);
    const out = [];
    for (const c of this.#cookies.values()) {
      if (c.host !== u.host) continue;
      if (u.pathname === c.path || u.pathname.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`)) {
        out.push(`${c.name}=${c.value}`);
      }
    }
    return out.join('; ');
  }

  names() {
    return [...this.#cookies.values()].map((c) => `${c.name} (path ${c.path})`);
  }
}

export async function driveLogin(authorizationUrl, { jar = new CookieJar(), maxHops = 10 } = {}) {
  const origin = new URL(authorizationUrl).origin;
  const hops = [];
  let url = authorizationUrl;
  for (let i = 0; i < maxHops; i++) {
    const cookie = jar.header(url);
    const res = await fetch(url, { redirect: 'manual', headers: cookie ? { cookie } : {} });
    jar.store(url, res.headers.getSetCookie());
    const location = res.headers.get('location');
    hops.push({
      url,
      sent_cookies: cookie ? cookie.split('; ').map((c) => c.split('=')[0]) : [],
      status: res.status,
      set_cookies: res.headers.getSetCookie().map((c) => c.split(';')[0].split('=')[0] + (/path=([^;]*)/i.exec(c) ? ` (path ${/path=([^;]*)/i.exec(c)[1]})` : '')),
      location,
    });
    if (![302, 303].includes(res.status) || !location) {
      const body = await res.text();
      const err = new Error(`unexpected ${res.status} at ${url}: ${body.slice(0, 500)}`);
      err.hops = hops;
      throw err;
    }
    await res.arrayBuffer().catch(() => {});
    const next = new URL(location, url);
    if (next.origin !== origin) return { location: next.toString(), hops, jar };
    url = next.toString();
  }
  const err = new Error(`too many redirects starting at ${authorizationUrl}`);
  err.hops = hops;
  throw err;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const target = process.argv[2];
  if (!target) {
    process.stderr.write('usage: node drive-login.mjs <authorization-url>\n');
    process.exit(2);
  }
  const { location, hops } = await driveLogin(target);
  for (const h of hops) process.stderr.write(`${JSON.stringify(h)}\n`);
  process.stdout.write(`${location}\n`);
}
