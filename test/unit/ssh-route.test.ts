import { describe, expect, it } from 'vitest';
import { parseSshConfig, resolveSshConfig } from '../../src/storage/ssh-config.js';
import { expandProxyCommand, parseJumpHop, parseProxyJump, parseSshG } from '../../src/storage/ssh-route.js';

describe('ssh -G output', () => {
  it('takes the settings ssh resolved, defaults included', () => {
    const cfg = parseSshG(
      [
        'host storage',
        'user builder',
        'hostname 10.0.0.5',
        'port 2222',
        'identitiesonly yes',
        'stricthostkeychecking false',
        'identityfile ~/.ssh/id_rsa',
        'identityfile ~/.ssh/id_ed25519',
        'userknownhostsfile /home/b/.ssh/known_hosts /home/b/.ssh/known_hosts2',
        'connecttimeout none',
        'proxyjump jump@bastion:2200,second',
        'proxycommand none',
        '',
      ].join('\n'),
    );
    expect(cfg).toEqual({
      user: 'builder',
      hostName: '10.0.0.5',
      port: 2222,
      identitiesOnly: true,
      strictHostKeyChecking: 'no',
      identityFiles: ['~/.ssh/id_rsa', '~/.ssh/id_ed25519'],
      userKnownHostsFiles: ['/home/b/.ssh/known_hosts', '/home/b/.ssh/known_hosts2'],
      proxyJump: 'jump@bastion:2200,second',
    });
    expect(parseSshG('stricthostkeychecking ask\nproxycommand nc %h %p\nconnecttimeout 7\n')).toEqual({
      identityFiles: [],
      strictHostKeyChecking: 'ask',
      proxyCommand: 'nc %h %p',
      connectTimeoutSec: 7,
    });
  });
});

describe('ProxyJump and ProxyCommand', () => {
  it('hops: [user@]host[:port], IPv6 in brackets, ssh:// URIs', () => {
    expect(parseJumpHop('bastion')).toEqual({ host: 'bastion' });
    expect(parseJumpHop('ops@bastion:2200')).toEqual({ user: 'ops', host: 'bastion', port: 2200 });
    expect(parseJumpHop('[::1]:22')).toEqual({ host: '::1', port: 22 });
    expect(parseJumpHop('ssh://ops@b.example:2022')).toEqual({ user: 'ops', host: 'b.example', port: 2022 });
    expect(() => parseJumpHop('a:b:c')).toThrow(/ProxyJump "a:b:c": expected \[user@\]host\[:port\]/);
    expect(parseProxyJump('a, b@c:1')).toEqual([{ host: 'a' }, { user: 'b', host: 'c', port: 1 }]);
    expect(parseProxyJump('none')).toEqual([]);
  });

  it('ProxyCommand tokens as ssh expands them', () => {
    expect(
      expandProxyCommand('nc %h %p # %r %n 100%%', {
        host: '10.0.0.5',
        port: 22,
        user: 'u',
        alias: 'storage',
      }),
    ).toBe('nc 10.0.0.5 22 # u storage 100%');
  });

  it('the built-in parser (no ssh installed) reads ProxyJump and ProxyCommand as written', () => {
    const blocks = parseSshConfig(
      'Host a\n  ProxyJump j1,j2\nHost b\n  ProxyCommand sh -c "nc %h %p"\nHost *\n  ProxyJump ignored\n',
    );
    expect(resolveSshConfig(blocks, 'a').proxyJump).toBe('j1,j2');
    expect(resolveSshConfig(blocks, 'b').proxyCommand).toBe('sh -c "nc %h %p"');
    expect(resolveSshConfig(blocks, 'b').proxyJump).toBe('ignored');
  });
});
