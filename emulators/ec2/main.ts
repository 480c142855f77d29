/**
 * Run the EC2 emulator on its own: `npm run emulator:ec2 -- --port 8600 --copy-seconds 5`.
 * Prints the endpoint to use as AWS_ENDPOINT_URL_EC2 and logs one line per request.
 */
import { parseArgs } from 'node:util';
import { startEc2Emulator } from './server.js';

const HELP = `usage: npm run emulator:ec2 -- [options]

  --port N                 listen on port N (default 0: any free port)
  --host ADDR              listen address (default 127.0.0.1)
  --latency MS[-MS]        delay before every API answer (default 0)
  --import-seconds S       time an import task takes (default 2)
  --copy-seconds S         time a copied image stays pending (default 2)
  --register-seconds S     time a registered image stays pending (default 0.2)
  --throttle-every N       throttle every Nth request with RequestLimitExceeded
  --fail-import            import tasks fail with a ClientError
  --fail-copy-region R     copies into region R fail (repeatable)
  --public-quota N         at most N public AMIs per region (ResourceLimitExceeded beyond)
  --s3-endpoint URL        check imported objects in this S3 endpoint (path style)
  --quiet                  do not log requests
  -h, --help               this help`;

function seconds(v: string | undefined, dflt: number, flag: string): number {
  if (v === undefined) return dflt * 1000;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${flag}: expected a number of seconds, got "${v}"`);
  return n * 1000;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      latency: { type: 'string' },
      'import-seconds': { type: 'string' },
      'copy-seconds': { type: 'string' },
      'register-seconds': { type: 'string' },
      'throttle-every': { type: 'string' },
      'fail-import': { type: 'boolean' },
      'fail-copy-region': { type: 'string', multiple: true },
      'public-quota': { type: 'string' },
      's3-endpoint': { type: 'string' },
      quiet: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return;
  }
  const port = values.port === undefined ? 0 : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`--port: expected a port number 0-65535, got "${values.port}"`);
  }
  let apiMs: number | [number, number] = 0;
  if (values.latency) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(values.latency);
    if (!m) throw new Error(`--latency: expected MS or MIN-MAX in ms, got "${values.latency}"`);
    apiMs = m[2] ? [Number(m[1]), Number(m[2])] : Number(m[1]);
  }
  const intOpt = (v: string | undefined, flag: string): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`${flag}: expected a whole number, got "${v}"`);
    return n;
  };
  const emu = await startEc2Emulator({
    port,
    host: values.host,
    latency: {
      apiMs,
      importMs: seconds(values['import-seconds'], 2, '--import-seconds'),
      copyMs: seconds(values['copy-seconds'], 2, '--copy-seconds'),
      registerMs: seconds(values['register-seconds'], 0.2, '--register-seconds'),
    },
    faults: {
      throttleEvery: intOpt(values['throttle-every'], '--throttle-every'),
      failImport: values['fail-import'] ?? false,
      failCopyRegions: values['fail-copy-region'] ?? [],
      publicQuota: intOpt(values['public-quota'], '--public-quota'),
    },
    s3Endpoint: values['s3-endpoint'],
    log: values.quiet ? undefined : (line) => process.stderr.write(`${new Date().toISOString()} ${line}\n`),
  });
  process.stdout.write(`EC2 emulator listening on ${emu.url}\n`);
  process.stdout.write(`  export AWS_ENDPOINT_URL_EC2=${emu.url}\n`);
  process.stdout.write(`  account ${emu.ownerId}; regions: ${emu.enabledRegions().join(' ')}\n`);
  const stop = () => {
    emu.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`emulator:ec2: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(2);
});
