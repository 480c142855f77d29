// Bundles the compiled CLI (tsc's output in DIST/src) into one CommonJS file, DIST/cli/main.cjs, which
// libexec/cli.cjs loads with a V8 code cache (see there).
//
// Why: a run used to open about 160 files as ES modules (ours, yaml's, pino's, commander's), and resolving,
// linking and compiling them one by one was a fifth of `./build configs`. As one CommonJS file the same code
// loads in a single read, and the modules that only some steps need (the pipeline, builders, cloud plugins)
// are still evaluated only when a run reaches them: esbuild wraps every dynamically imported module in a
// function that runs on first import.
// Packages that are large, native or only used by some steps (the AWS SDK, ssh2, openpgp, CycloneDX, the HOCON
// parser) stay outside the bundle and are loaded from node_modules (with require()) when first used. ES-module-only
// packages (execa, p-limit) are bundled: the loader compiles the bundle as a script, where a dynamic import() of a
// package would fail, so the bundle must not contain one (checked below).
// tsc's source maps are carried through (DIST/cli/main.cjs.map), so `--debug` stack traces name the TypeScript
// sources. The first line holds a digest of the rest: the code cache is keyed by it.
//
//   node libexec/bundle.mjs DIST        (run by ./build after tsc)
import { createHash } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';

const dist = resolve(process.argv[2] ?? 'dist');
const require = createRequire(import.meta.url);
const esbuild = require('esbuild');

const EXTERNAL = [
  '@aws-sdk/*',
  '@smithy/*',
  '@cyclonedx/*',
  '@pushcorn/*',
  'openpgp',
  'packageurl-js',
  'ssh2',
];

const out = join(dist, 'cli', 'main.cjs');
await esbuild.build({
  entryPoints: [join(dist, 'src', 'cli', 'main.js')],
  outfile: `${out}.tmp`,
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  external: EXTERNAL,
  sourcemap: 'external',
  // non-ASCII characters are escaped, so the loader can read the file as Latin-1 (no UTF-8 decoding)
  charset: 'ascii',
  logLevel: 'warning',
  // the one ES module feature the sources use that CommonJS lacks (main.ts finds the repository from it)
  define: { 'import.meta.url': '__bundleUrl' },
  banner: { js: "const __bundleUrl = require('node:url').pathToFileURL(__filename).href;" },
  footer: { js: '//# sourceMappingURL=main.cjs.map' },
});
const body = readFileSync(`${out}.tmp`, 'utf8');
const dynamic = /(?<![\w$.])import\((["'`][^"'`]*["'`])\)/.exec(body);
if (dynamic) {
  console.error(
    `bundle: the bundle still has a dynamic import(${dynamic[1]}): libexec/cli.cjs cannot run it; bundle that package (remove it from EXTERNAL)`,
  );
  process.exit(1);
}
const id = createHash('sha256').update(body).digest('hex').slice(0, 32);
// (one line more shifts every line of the bundle: the map's mappings start with an empty line for it)
writeFileSync(out, `// bundle ${id}\n${body}`);
const mapFile = `${out}.tmp.map`;
const map = JSON.parse(readFileSync(mapFile, 'utf8'));
map.mappings = `;${map.mappings}`;
map.file = 'main.cjs';
writeFileSync(`${out}.map`, JSON.stringify(map));
rmSync(`${out}.tmp`);
rmSync(mapFile);
