// Runs the bundled CLI (dist/cli/main.cjs, made by libexec/bundle.mjs) with a V8 code cache.
//
// Why: most of a short run (`./build configs`, `./build state --help`) is spent compiling code the first time it
// is called: the YAML parser, the logger, the option parser, the config resolution. V8 can save the compiled
// bytecode of every function a run used and take it back on the next start (Node 22 does this with
// module.enableCompileCache(); Node 20, which this tool supports, does not have it). So the bundle is compiled
// with vm.Script and the cache in dist/cli/main.cjs.<id>[.<flags>].cache, where <id> is the digest on the bundle's
// first line: a cache is only ever used with the bundle it was made from (V8 itself only compares the source
// length); <flags> is a digest of the V8 flags the run was started with, if any.
//
// The cache is written, atomically, at the end of a run that had none, whose cache V8 refused (another Node or
// V8 flags), or whose step the cache has not seen yet (so it grows to cover --help, configs, state, local, ...;
// the steps it covers are listed in a sidecar file). A cache that cannot be read or written (a read-only
// checkout, another user) only costs the time it would have saved. With --debug (--enable-source-maps) the
// bundle is loaded with require(), so stack traces go through the source maps to the TypeScript sources.
'use strict';
const { createHash } = require('node:crypto');
const { readFileSync, renameSync, writeFileSync, rmSync } = require('node:fs');
const { join } = require('node:path');
const Module = require('node:module');
const vm = require('node:vm');

const file = join(__dirname, '..', 'dist', 'cli', 'main.cjs');

function run() {
  if (process.sourceMapsEnabled) {
    require(file);
    return;
  }
  // (the bundle is ASCII: libexec/bundle.mjs escapes everything else; Latin-1 skips UTF-8 decoding, ~2 ms)
  const source = readFileSync(file, 'latin1');
  const id = /^\/\/ bundle ([0-9a-f]+)\n/.exec(source)?.[1];
  if (!id) {
    require(file);
    return;
  }
  // V8 refuses a cache made under other V8 flags (./build runs `configs` with --no-opt), so each set of flags
  // has its own
  const flags = process.execArgv.filter((a) => a !== '--enable-source-maps').join(' ');
  const flagsId = flags ? `.${createHash('sha256').update(flags).digest('hex').slice(0, 8)}` : '';
  const cacheFile = `${file}.${id}${flagsId}.cache`;
  const seenFile = `${cacheFile}.steps`;
  // the first word that is not an option: the step (or a flag alone: --help, --version)
  const kind = process.argv.slice(2).find((a) => !a.startsWith('-')) ?? process.argv[2] ?? '';
  let cachedData;
  let seen = [];
  try {
    cachedData = readFileSync(cacheFile);
    seen = readFileSync(seenFile, 'utf8').split('\n').filter(Boolean);
  } catch {
    // no cache yet (or no list of steps: the cache is rewritten)
  }
  // (the bundle has no dynamic import(): libexec/bundle.mjs refuses to make one that has)
  const script = new vm.Script(Module.wrap(source), { filename: file, cachedData });
  if (!cachedData || script.cachedDataRejected || !seen.includes(kind)) {
    process.once('exit', () => {
      const tmp = `${cacheFile}.${process.pid}.tmp`;
      try {
        writeFileSync(tmp, script.createCachedData());
        renameSync(tmp, cacheFile);
        const steps = script.cachedDataRejected ? [kind] : [...new Set([...seen, kind])];
        writeFileSync(`${seenFile}.${process.pid}.tmp`, `${steps.join('\n')}\n`);
        renameSync(`${seenFile}.${process.pid}.tmp`, seenFile);
      } catch {
        try {
          rmSync(tmp, { force: true });
        } catch {
          // nothing was written
        }
      }
    });
  }
  const mod = new Module(file, module);
  mod.filename = file;
  mod.paths = Module._nodeModulePaths(join(__dirname, '..', 'dist', 'cli'));
  const req = (id) => mod.require(id);
  req.resolve = (request, options) => Module._resolveFilename(request, mod, false, options);
  req.cache = Module._cache;
  req.main = mod;
  mod.loaded = true;
  script.runInThisContext()(mod.exports, req, mod, file, join(__dirname, '..', 'dist', 'cli'));
}

run();
