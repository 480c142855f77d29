import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AlpineReleases, edgeRelease, tomorrow } from '../../src/config/releases.js';
import { UserError } from '../../src/util/errors.js';
import { CDN_URL, FIXTURES, NOW, RELEASES_URL } from '../fixtures/config-helpers.js';

const opts = { releasesUrl: RELEASES_URL, cdnUrl: CDN_URL, now: NOW };

describe('releases.json (fixture modelled on alpinelinux.org/releases.json)', () => {
  it('takes each branch’s newest release by date, its notes page and its end of life', async () => {
    const r = await AlpineReleases.load(opts);
    expect(r.latest).toBe('3.24');
    // 3.22 lists its releases out of order: the newest by date wins
    expect(await r.versionInfo('3.22')).toEqual({
      version: '3.22',
      release: '3.22.4',
      end_of_life: '2027-05-01',
      arches: expect.arrayContaining(['x86_64', 'aarch64']),
      notes: 'https://alpinelinux.org/posts/Alpine-3.22.4-released.html',
    });
    expect((await r.versionInfo('3.23')).notes).toBe(
      'https://alpinelinux.org/posts/Alpine-3.23.3-released.html',
    );
    // a release without notes
    expect(await r.versionInfo('3.24')).toMatchObject({
      release: '3.24.1',
      notes: null,
      end_of_life: '2028-05-01',
    });
    expect(await r.versionInfo()).toMatchObject({ version: '3.24' });
    expect(await r.versionInfo('latest-stable')).toMatchObject({ version: '3.24' });
    expect(await r.versionInfo('v3.20')).toMatchObject({ release: '3.20.8', end_of_life: '2026-04-01' });
  });

  it('edge is released today (UTC YYYYMMDD) and ends tomorrow', async () => {
    const now = new Date('2026-12-31T23:30:00Z');
    const r = await AlpineReleases.load({ ...opts, now });
    expect(await r.versionInfo('edge')).toMatchObject({
      version: 'edge',
      release: '20261231',
      end_of_life: '2027-01-01',
      notes: null,
    });
    expect(edgeRelease(new Date('2026-03-01T00:00:00Z'))).toBe('20260301');
    expect(tomorrow(new Date('2026-02-28T12:00:00Z'))).toBe('2026-03-01');
  });

  it('builds the latest stable virt ISO URL from --cdn-url', async () => {
    const r = await AlpineReleases.load({ ...opts, cdnUrl: 'https://mirror.example/alpine/' });
    expect(r.virtIsoUrl('aarch64')).toBe(
      'https://mirror.example/alpine/v3.24/releases/aarch64/alpine-virt-3.24.1-aarch64.iso',
    );
    expect(r.repoUrl('main', 'x86_64', 'edge')).toBe('https://mirror.example/alpine/edge/main/x86_64');
  });

  it('looks up a version missing from releases.json as a release candidate in the mirror (file://)', async () => {
    const r = await AlpineReleases.load(opts);
    expect(await r.versionInfo('3.25')).toEqual({
      version: '3.25',
      release: '3.25.0_rc1',
      end_of_life: '2026-03-02',
      arches: expect.arrayContaining(['x86_64']),
      notes: null,
    });
    expect(r.known()).toContain('3.25');
  });

  it('a version that is neither listed nor a candidate is a clear error', async () => {
    const r = await AlpineReleases.load(opts);
    await expect(r.versionInfo('3.99')).rejects.toThrow(
      /version "3\.99" is not in releases\.json .*no release candidate could be found: .*v3\.99\/main\/x86_64: directory not found/,
    );
    await expect(r.versionInfo('banana')).rejects.toThrow(/not an x\.y version/);
  });

  it('rejects files of the wrong shape, naming the URL and the field', async () => {
    const parse = (data: unknown) => () => AlpineReleases.parse(data, opts);
    expect(parse([])).toThrow(/releases\.json file:.*: top level: expected an object/);
    expect(parse({})).toThrow(/release_branches: expected a list/);
    expect(parse({ release_branches: [{ rel_branch: 3 }] })).toThrow(
      /release_branches\[0\]\.rel_branch: expected a string/,
    );
    expect(parse({ release_branches: [{ rel_branch: 'v3.1', eol_date: 'soon' }] })).toThrow(
      /release_branches\[0\]\.eol_date: expected a YYYY-MM-DD date/,
    );
    expect(parse({ release_branches: [{ rel_branch: 'v3.1', releases: [{ version: '3.1.0' }] }] })).toThrow(
      /release_branches\[0\]\.releases\[0\]\.date/,
    );
    expect(parse({ release_branches: [{ rel_branch: 'edge' }] })).toThrow(/no release branch with a release/);
    expect(
      parse({
        release_branches: [{ rel_branch: 'v3.1', releases: [{ version: '3.1.0', date: '2020-01-01' }] }],
      }),
    ).not.toThrow();
  });

  it('a missing or broken file is a UserError naming the URL', async () => {
    await expect(
      AlpineReleases.load({ ...opts, releasesUrl: `file://${join(FIXTURES, 'nope.json')}` }),
    ).rejects.toThrow(/releases\.json file:.*nope\.json: file not found/);
    await expect(
      AlpineReleases.load({ ...opts, releasesUrl: `file://${join(FIXTURES, 'cdn', 'README.md')}` }),
    ).rejects.toThrow(/not valid JSON/);
    await expect(
      AlpineReleases.load({ ...opts, releasesUrl: 'ftp://x/releases.json' }),
    ).rejects.toBeInstanceOf(UserError);
  });
});

describe('releases.json and release candidates over HTTP', () => {
  let server: Server;
  let base = '';
  beforeAll(async () => {
    const json = await readFile(join(FIXTURES, 'releases.json'), 'utf8');
    server = createServer((req, res) => {
      if (req.url === '/releases.json') {
        res.setHeader('content-type', 'application/json');
        res.end(json);
      } else if (req.url === '/alpine/v3.26/main/x86_64/') {
        res.setHeader('content-type', 'text/html');
        res.end(
          [
            '<html><head><title>Index of /alpine/v3.26/main/x86_64/</title></head><body><pre>',
            '<a href="../">../</a>',
            '<a href="APKINDEX.tar.gz">APKINDEX.tar.gz</a>   01-May-2027 10:00  1M',
            '<a href="alpine-baselayout-3.8.0-r0.apk">alpine-baselayout-3.8.0-r0.apk</a>',
            '<a href="alpine-base-3.26.0_rc2-r0.apk">alpine-base-3.26.0_rc2-r0.apk</a>   01-May-2027 10:00  1k',
            '</pre></body></html>',
          ].join('\n'),
        );
      } else {
        res.statusCode = 404;
        res.end('not found');
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise<void>((r) => server.close(() => r()));
  });

  it('reads releases.json over http and finds a release candidate in an HTML index page', async () => {
    const r = await AlpineReleases.load({
      releasesUrl: `${base}/releases.json`,
      cdnUrl: `${base}/alpine`,
      now: NOW,
    });
    expect(r.latest).toBe('3.24');
    expect(await r.versionInfo('3.26')).toMatchObject({
      version: '3.26',
      release: '3.26.0_rc2',
      notes: null,
    });
  });

  it('HTTP errors name the URL and the status', async () => {
    await expect(
      AlpineReleases.load({ releasesUrl: `${base}/missing.json`, cdnUrl: base, now: NOW }),
    ).rejects.toThrow(/releases\.json http:\/\/127\.0\.0\.1:\d+\/missing\.json: HTTP 404/);
    const r = await AlpineReleases.load({
      releasesUrl: `${base}/releases.json`,
      cdnUrl: `${base}/alpine`,
      now: NOW,
    });
    await expect(r.versionInfo('3.27')).rejects.toThrow(/v3\.27\/main\/x86_64\/: HTTP 404/);
  });

  it('an unreachable server suggests --releases-url', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    await expect(
      AlpineReleases.load({ releasesUrl: `http://127.0.0.1:${port}/releases.json`, cdnUrl: base, now: NOW }),
    ).rejects.toThrow(
      /cannot be fetched \(ECONNREFUSED\) \(offline\? pass --releases-url file:\/\/\.\.\. or set ALPINE_RELEASES_URL\)/,
    );
  });
});
