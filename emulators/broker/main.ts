/**
 * Run the identity broker emulator on its own: `npm run emulator:broker -- --port 8601`.
 * Prints the endpoint and the API key to export.
 */
import { parseArgs } from 'node:util';
import { DEFAULT_BROKER_KEY, startBrokerEmulator } from './server.js';

const HELP = `usage: npm run emulator:broker -- [options]

  --port N              listen on port N (default 0: any free port)
  --host ADDR           listen address (default 127.0.0.1)
  --key KEY             an API key that works (repeatable; default ${DEFAULT_BROKER_KEY})
  --expired-key KEY     an API key that has expired (401; repeatable)
  --logout-redirect     answer expired keys with a redirect to /logout instead of 401
  --ttl S               Expires lifetime of every response in seconds (default 3600; 0 = no Expires)
  --rate-limit N        answer the first N requests with 429
  --retry-after S       Retry-After seconds sent with 429
  --quiet               do not log requests
  -h, --help            this help`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      key: { type: 'string', multiple: true },
      'expired-key': { type: 'string', multiple: true },
      'logout-redirect': { type: 'boolean' },
      ttl: { type: 'string' },
      'rate-limit': { type: 'string' },
      'retry-after': { type: 'string' },
      quiet: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return;
  }
  const num = (v: string | undefined, flag: string): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`${flag}: expected a non-negative number, got "${v}"`);
    return n;
  };
  const port = num(values.port, '--port') ?? 0;
  if (!Number.isInteger(port) || port > 65535)
    throw new Error(`--port: expected 0-65535, got "${values.port}"`);
  const ttl = num(values.ttl, '--ttl');
  const broker = await startBrokerEmulator({
    port,
    host: values.host,
    apiKeys: values.key ?? [DEFAULT_BROKER_KEY],
    expiredKeys: values['expired-key'] ?? [],
    logoutRedirect: values['logout-redirect'] ?? false,
    ...(ttl !== undefined ? { ttl: { accounts: ttl, regions: ttl, credentials: ttl } } : {}),
    faults: {
      rateLimitNext: num(values['rate-limit'], '--rate-limit'),
      retryAfter: num(values['retry-after'], '--retry-after'),
    },
    log: values.quiet ? undefined : (line) => process.stderr.write(`${new Date().toISOString()} ${line}\n`),
  });
  const key = (values.key ?? [DEFAULT_BROKER_KEY])[0];
  process.stdout.write(`identity broker emulator listening on ${broker.endpoint}\n`);
  process.stdout.write(`  export IDENTITY_BROKER_ENDPOINT=${broker.endpoint}\n`);
  process.stdout.write(`  export IDENTITY_BROKER_API_KEY=${key}\n`);
  const stop = () => {
    broker.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`emulator:broker: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(2);
});
