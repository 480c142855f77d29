import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  checkHostKey,
  expandPath,
  hostKeyAlgorithms,
  keyBlobType,
  knownHostName,
  matchPatternList,
  parseKnownHosts,
  parseSshConfig,
  resolveSshConfig,
} from '../../src/storage/ssh-config.js';

describe('ssh config', () => {
  const text = `
# global options come first
IdentityFile ~/.ssh/global_key

Host storage storage.example
  HostName files.example.org
  User release
  Port=2200
  IdentityFile ~/.ssh/storage_%r
  IdentitiesOnly yes

Host *.example !blocked.example
  StrictHostKeyChecking accept-new
  User nobody
  UserKnownHostsFile ~/.ssh/kh_a ~/.ssh/kh_b

Match host storage
  User ignored

Host *
  ConnectTimeout 7
  Port 2222
`;
  const blocks = parseSshConfig(text);

  it('applies the first value per key from every matching Host block', () => {
    expect(resolveSshConfig(blocks, 'storage')).toEqual({
      hostName: 'files.example.org',
      user: 'release',
      port: 2200,
      identityFiles: ['~/.ssh/global_key', '~/.ssh/storage_%r'],
      identitiesOnly: true,
      connectTimeoutSec: 7,
    });
    expect(resolveSshConfig(blocks, 'storage.example')).toMatchObject({
      user: 'release',
      strictHostKeyChecking: 'accept-new',
      userKnownHostsFiles: ['~/.ssh/kh_a', '~/.ssh/kh_b'],
    });
  });

  it('honours negated patterns and ignores Match blocks', () => {
    expect(resolveSshConfig(blocks, 'blocked.example')).toEqual({
      identityFiles: ['~/.ssh/global_key'],
      connectTimeoutSec: 7,
      port: 2222,
    });
    expect(resolveSshConfig(blocks, 'other')).not.toHaveProperty('user');
  });

  it('expands ~ and %-tokens', () => {
    const vars = { home: '/home/me', localUser: 'me', host: 'h', remoteUser: 'release', port: 22 };
    expect(expandPath('~/.ssh/storage_%r', vars)).toBe('/home/me/.ssh/storage_release');
    expect(expandPath('%d/k_%h_%u_%p%%', vars)).toBe('/home/me/k_h_me_22%');
    expect(expandPath('/abs/~x', vars)).toBe('/abs/~x');
  });

  it('matches pattern lists like ssh', () => {
    expect(matchPatternList(['*.example.org', '!bad.example.org'], 'good.example.org')).toBe(true);
    expect(matchPatternList(['*.example.org', '!bad.example.org'], 'bad.example.org')).toBe(false);
    expect(matchPatternList(['host?'], 'HOST1')).toBe(true);
  });
});

function blob(type: string, body: Buffer = randomBytes(32)): Buffer {
  const t = Buffer.from(type);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(t.length);
  return Buffer.concat([len, t, body]);
}

describe('known_hosts', () => {
  const ed = blob('ssh-ed25519');
  const rsa = blob('ssh-rsa');
  const other = blob('ssh-ed25519');
  const salt = randomBytes(20);
  const hashed = `|1|${salt.toString('base64')}|${createHmac('sha1', salt).update('[10.0.0.5]:2222').digest('base64')}`;
  const text = [
    '# comment',
    `plain.example,192.0.2.1 ssh-ed25519 ${ed.toString('base64')} comment`,
    `*.wild.example ssh-rsa ${rsa.toString('base64')}`,
    `${hashed} ssh-ed25519 ${ed.toString('base64')}`,
    `@revoked * ssh-ed25519 ${other.toString('base64')}`,
    `@cert-authority *.example ssh-ed25519 ${rsa.toString('base64')}`,
    'garbage',
  ].join('\n');
  const entries = parseKnownHosts(text);

  it('parses entries and markers', () => {
    expect(entries).toHaveLength(5);
    expect(entries[3]?.marker).toBe('revoked');
    expect(keyBlobType(ed)).toBe('ssh-ed25519');
  });

  it('names hosts like ssh', () => {
    expect(knownHostName('h', 22)).toBe('h');
    expect(knownHostName('h', 2222)).toBe('[h]:2222');
  });

  it.each([
    ['plain.example', ed, 'match'],
    ['192.0.2.1', ed, 'match'],
    ['plain.example', rsa, 'mismatch'],
    ['a.wild.example', rsa, 'match'],
    ['[10.0.0.5]:2222', ed, 'match'],
    ['10.0.0.5', ed, 'unknown'],
    ['unknown.example', ed, 'unknown'],
    ['plain.example', other, 'revoked'],
  ])('%s → %s', (name, key, verdict) => {
    expect(checkHostKey(entries, name as string, key as Buffer)).toBe(verdict);
  });

  it('prefers the host key types already known for the host', () => {
    expect(hostKeyAlgorithms(entries, 'a.wild.example').slice(0, 3)).toEqual([
      'rsa-sha2-512',
      'rsa-sha2-256',
      'ssh-rsa',
    ]);
    expect(hostKeyAlgorithms(entries, 'plain.example')[0]).toBe('ssh-ed25519');
    expect(hostKeyAlgorithms(entries, 'nowhere')).toHaveLength(7);
  });
});
