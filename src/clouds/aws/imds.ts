// An EC2 instance-metadata stand-in for the boot test: tiny-cloud-aws and cloud-init's Ec2 data source read
// IMDS at 169.254.169.254, not a NoCloud seed. IMDSv2 only, as AWS images are launched (HttpTokens=required):
// a PUT /latest/api/token with X-aws-ec2-metadata-token-ttl-seconds returns a session token, and every GET must
// carry it in X-aws-ec2-metadata-token, else 401.
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { BootTestInstanceData, InstanceMetadataService } from '../types.js';

const TOKEN_HEADER = 'x-aws-ec2-metadata-token';
const TTL_HEADER = 'x-aws-ec2-metadata-token-ttl-seconds';

/** The metadata tree: a path ending in "/" lists its children, one per line, as IMDS does. */
function tree(d: BootTestInstanceData): Record<string, string> {
  const mac = '52:54:00:12:34:56';
  return {
    'meta-data/instance-id': d.instanceId,
    'meta-data/hostname': d.hostname,
    'meta-data/local-hostname': d.hostname,
    'meta-data/public-hostname': d.hostname,
    'meta-data/ami-id': 'ami-00000000000000000',
    'meta-data/instance-type': 't3.micro',
    'meta-data/placement/availability-zone': 'us-east-1a',
    'meta-data/placement/region': 'us-east-1',
    'meta-data/public-keys/0/openssh-key': d.sshPublicKey,
    [`meta-data/network/interfaces/macs/${mac}/device-number`]: '0',
    [`meta-data/network/interfaces/macs/${mac}/local-ipv4s`]: '169.254.169.15',
    'user-data': d.userData,
  };
}

function listing(t: Record<string, string>, dir: string): string | undefined {
  const kids = new Set<string>();
  for (const k of Object.keys(t)) {
    if (!k.startsWith(dir)) continue;
    const rest = k.slice(dir.length);
    const slash = rest.indexOf('/');
    kids.add(slash < 0 ? rest : rest.slice(0, slash + 1));
  }
  if (kids.size === 0) return undefined;
  // public-keys lists "<index>=<name>"
  if (dir === 'meta-data/public-keys/') return '0=boot-test';
  return [...kids].sort().join('\n');
}

export function createImdsService(
  data: BootTestInstanceData,
  now: () => number = Date.now,
): InstanceMetadataService {
  const t = tree(data);
  const tokens = new Map<string, number>();
  const log: string[] = [];
  /** status and body of one request */
  const route = (req: IncomingMessage, path: string): [number, string?] => {
    if (path === '/latest/api/token') {
      if (req.method !== 'PUT') return [405];
      // a forwarded request did not come from the instance itself
      if (req.headers['x-forwarded-for']) return [403];
      const ttl = Number(req.headers[TTL_HEADER]);
      if (!Number.isInteger(ttl) || ttl < 1 || ttl > 21600) return [400];
      const token = randomBytes(24).toString('base64url');
      tokens.set(token, now() + ttl * 1000);
      return [200, token];
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return [405];
    const token = req.headers[TOKEN_HEADER];
    const exp = typeof token === 'string' ? tokens.get(token) : undefined;
    // IMDSv1 (no token) is refused: the image must use the token flow
    if (exp === undefined || exp < now()) return [401];
    const m = /^\/latest\/(.*)$/.exec(path);
    if (!m) return [404];
    const key = m[1]!;
    const v = t[key];
    if (v !== undefined) return [200, v];
    // a directory lists its children, with or without the trailing slash
    const l = listing(t, key === '' || key.endsWith('/') ? key : `${key}/`);
    return l === undefined ? [404] : [200, l];
  };
  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?')[0]!;
    const [status, body = ''] = route(req, path);
    log.push(`${req.method} ${path} ${status}${req.headers[TOKEN_HEADER] ? ' (token)' : ''}`);
    res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  return {
    name: 'aws-imdsv2',
    address: '169.254.169.254',
    port: 80,
    handle,
    requests: () => [...log],
  };
}
