// A/B benchmark of config resolution: this checkout against another one (e.g. a worktree of the commit before a
// change), warm, in one process, alternating A and B run by run, on the same config trees and releases.json.
// Prints the CPU time (user + system, less sensitive to a busy machine than wall time) of resolve, images.yaml
// text and reading it back: min, p25 and median of N runs each, and the load average.
// Both checkouts need a compiled dist/ (`./build --help` compiles it when stale).
// Usage: node bench/configs-ab.mjs <other checkout> [runs]
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';

const here = resolve(import.meta.dirname, '..');
const other = process.argv[2];
if (!other) {
  console.error('usage: node bench/configs-ab.mjs <other checkout> [runs]');
  process.exit(2);
}
const runs = Number(process.argv[3] ?? 30);
const roots = { base: resolve(other), this: here };
const releasesUrl = `file://${join(here, 'test', 'fixtures', 'releases.json')}`;
const trees = [
  ['YAML configs/ (today)', join(here, 'configs'), new Date().toISOString()],
  ['YAML configs/ (2026-03-01)', join(here, 'configs'), '2026-03-01T12:00:00Z'],
  ['HOCON twin (2026-03-01)', join(here, 'test', 'fixtures', 'hocon', 'configs'), '2026-03-01T12:00:00Z'],
];

const mods = {};
for (const [k, root] of Object.entries(roots)) {
  mods[k] = {
    ...(await import(`${root}/dist/src/config/index.js`)),
    ...(await import(`${root}/dist/src/config/images-yaml.js`)),
    ...(await import(`${root}/dist/src/util/log.js`)),
  };
}

const cpu = (c0) => {
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1000;
};

async function once(m, dir, at) {
  let c0 = process.cpuUsage();
  const r = await m.resolveConfigsDir(dir, {
    releasesUrl,
    cdnUrl: 'https://dl-cdn.alpinelinux.org/alpine',
    now: new Date(at),
    log: m.silentLogger(),
    workDir: '/tmp/bench-work',
  });
  const resolveMs = cpu(c0);
  c0 = process.cpuUsage();
  const text = m.imagesYamlText(r.images);
  const write = cpu(c0);
  c0 = process.cpuUsage();
  m.parseImagesYaml(text, 'images.yaml');
  return { resolve: resolveMs, write, read: cpu(c0), bytes: text.length };
}

const q = (a, p) => [...a].sort((x, y) => x - y)[Math.floor((a.length - 1) * p)];
const fmt = (a, key) => {
  const v = a.map((x) => x[key]);
  return `${key} ${q(v, 0).toFixed(1)}/${q(v, 0.25).toFixed(1)}/${q(v, 0.5).toFixed(1)}`;
};

console.log(`configs A/B: base ${roots.base} vs this ${roots.this}, ${runs} alternating warm runs each`);
console.log('CPU ms as min/p25/median');
for (const [label, dir, at] of trees) {
  for (let i = 0; i < 6; i++) for (const k of ['base', 'this']) await once(mods[k], dir, at);
  const res = { base: [], this: [] };
  const loads = [loadavg()[0]];
  for (let i = 0; i < runs; i++) {
    for (const k of i % 2 ? ['this', 'base'] : ['base', 'this']) res[k].push(await once(mods[k], dir, at));
  }
  loads.push(loadavg()[0]);
  console.log(
    `\n${label} (images.yaml ${res.this[0].bytes} bytes, load average ${loads.map((l) => l.toFixed(1)).join(' -> ')})`,
  );
  for (const k of ['base', 'this']) {
    console.log(
      `  ${k.padEnd(4)}  ${fmt(res[k], 'resolve')}  ${fmt(res[k], 'write')}  ${fmt(res[k], 'read')}`,
    );
  }
}
