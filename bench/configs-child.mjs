// One cold measurement (run by bench/configs.ts in a fresh node process, on the compiled dist/):
// resolve a config tree and produce images.yaml text; prints the figures as one JSON line.
// Usage: node bench/configs-child.mjs <root> <configsDir> <releasesUrl> <now ISO>
const [root, configsDir, releasesUrl, now] = process.argv.slice(2);
const t0 = performance.now();
const { resolveConfigsDir } = await import(`${root}/dist/src/config/index.js`);
const { imagesYamlText, parseImagesYaml } = await import(`${root}/dist/src/config/images-yaml.js`);
const { silentLogger } = await import(`${root}/dist/src/util/log.js`);
const t1 = performance.now();
const result = await resolveConfigsDir(configsDir, {
  releasesUrl,
  cdnUrl: 'https://dl-cdn.alpinelinux.org/alpine',
  now: new Date(now),
  log: silentLogger(),
  workDir: '/tmp/bench-work',
});
const t2 = performance.now();
const text = imagesYamlText(result.images);
const t3 = performance.now();
parseImagesYaml(text, 'images.yaml');
const t4 = performance.now();
process.stdout.write(
  `${JSON.stringify({
    import: t1 - t0,
    resolve: t2 - t1,
    write: t3 - t2,
    read: t4 - t3,
    bytes: text.length,
    ...result.stats,
  })}\n`,
);
