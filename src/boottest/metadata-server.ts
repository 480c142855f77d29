// Serving a cloud's instance-metadata stand-in to the guest: an HTTP server on 127.0.0.1 (random port) and the
// QEMU user-network forward that takes the guest's connections to <address>:<port> there.
//
// QEMU's user networking only forwards guest addresses inside the guest network, so the guest network is
// moved into 169.254.169.0/24 (link-local, as on EC2), and each guest connection runs a tiny bridge (this
// Node binary with a 6-line script, started by QEMU's guestfwd `cmd:`) that joins it to the server.
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import type { InstanceMetadataService } from '../clouds/types.js';
import { UserError } from '../util/errors.js';
import { writeFileAtomic } from '../util/fs.js';
import type { VmSpec } from './qemu.js';

const BRIDGE = `import { connect } from 'node:net';
const s = connect(Number(process.argv[2]), '127.0.0.1');
process.stdin.pipe(s);
s.pipe(process.stdout);
s.on('error', () => process.exit(1));
s.on('close', () => process.exit(0));
`;

export interface MetadataEndpoint {
  guestNet: NonNullable<VmSpec['guestNet']>;
  guestFwd: NonNullable<VmSpec['guestFwd']>;
  close(): Promise<void>;
}

/** The guest network for a service at a.b.c.d: a.b.c.0/24 with the usual slirp host, DNS and DHCP addresses. */
export function guestNetFor(address: string): NonNullable<VmSpec['guestNet']> {
  const m = /^(\d+\.\d+\.\d+)\.\d+$/.exec(address);
  if (!m) throw new Error(`not an IPv4 address: ${address}`);
  const p = m[1];
  return { net: `${p}.0/24`, host: `${p}.2`, dns: `${p}.3`, dhcpStart: `${p}.15` };
}

export async function serveMetadata(
  service: InstanceMetadataService,
  runDir: string,
): Promise<MetadataEndpoint> {
  const server: Server = createServer((req, res) => service.handle(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  const bridge = join(runDir, 'imds-bridge.mjs');
  await writeFileAtomic(bridge, BRIDGE);
  // QEMU splits the command at spaces
  const command = `${process.execPath} ${bridge} ${port}`;
  if (/\s/.test(process.execPath) || /\s/.test(bridge)) {
    server.close();
    throw new UserError(
      `the boot test cannot forward ${service.address} through a path with spaces (${process.execPath}, ${bridge})`,
    );
  }
  return {
    guestNet: guestNetFor(service.address),
    guestFwd: { address: service.address, port: service.port, command },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
