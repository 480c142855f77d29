import { describe, expect, it } from 'vitest';
import { filterNames, matchGlob } from '../../src/storage/glob.js';
import { profileRegion } from '../../src/storage/s3.js';
import { displayUrl, parseStorageUrl } from '../../src/storage/url.js';
import { UserError } from '../../src/util/errors.js';

const CWD = '/work/project';

describe('parseStorageUrl', () => {
  it.each([
    ['/srv/images', { kind: 'file', dir: '/srv/images' }],
    ['/srv/images/', { kind: 'file', dir: '/srv/images' }],
    ['storage/images', { kind: 'file', dir: '/work/project/storage/images' }],
    ['../elsewhere', { kind: 'file', dir: '/work/elsewhere' }],
    ['file:///srv/images', { kind: 'file', dir: '/srv/images' }],
    ['file:///srv/my%20images/', { kind: 'file', dir: '/srv/my images' }],
    ['file://localhost/srv/images', { kind: 'file', dir: '/srv/images' }],
    [
      'ssh://host.example/public_html/images',
      { kind: 'ssh', host: 'host.example', path: 'public_html/images' },
    ],
    ['ssh://host.example//srv/images/', { kind: 'ssh', host: 'host.example', path: '/srv/images' }],
    ['ssh://host.example', { kind: 'ssh', host: 'host.example', path: '.' }],
    ['ssh://host.example/', { kind: 'ssh', host: 'host.example', path: '.' }],
    ['ssh://host.example//', { kind: 'ssh', host: 'host.example', path: '/' }],
    [
      'ssh://tomalok@dev.alpinelinux.org:2222/public_html/v3.20/cloud/aws/x86_64',
      {
        kind: 'ssh',
        user: 'tomalok',
        host: 'dev.alpinelinux.org',
        port: 2222,
        path: 'public_html/v3.20/cloud/aws/x86_64',
      },
    ],
    ['ssh://[::1]:22/x', { kind: 'ssh', host: '::1', port: 22, path: 'x' }],
    ['s3://my-bucket', { kind: 's3', bucket: 'my-bucket', prefix: '' }],
    ['s3://my-bucket/', { kind: 's3', bucket: 'my-bucket', prefix: '' }],
    ['s3://my-bucket/images/v3.20//aws/', { kind: 's3', bucket: 'my-bucket', prefix: 'images/v3.20/aws' }],
    ['SSH://host/x', { kind: 'ssh', host: 'host', path: 'x' }],
  ])('%s', (url, expected) => {
    expect(parseStorageUrl(url, CWD)).toEqual(expected);
  });

  it.each([
    ['', /storage URL is empty/],
    ['ftp://host/x', /^storage URL ftp:\/\/host\/x: unsupported scheme "ftp:\/\/"/],
    ['https://bucket.s3.amazonaws.com/x', /unsupported scheme "https:\/\/"/],
    ['file://otherhost/x', /file:\/\/otherhost\/x: file:\/\/ URLs take an absolute path/],
    ['ssh:///just/a/path', /no host/],
    ['ssh://user:secret@host/x', /^storage URL ssh:\/\/user:\*\*\*@host\/x: passwords in ssh:\/\/ URLs/],
    ['ssh://host:99999/x', /not a valid URL/],
    ['ssh://host/x?y=1', /query strings/],
    ['s3://Bad_Bucket/x', /"Bad_Bucket" is not a valid S3 bucket name/],
    ['s3://bucket:80/x', /no user or port/],
  ])('%s is refused', (url, message) => {
    let err: unknown;
    try {
      parseStorageUrl(url, CWD);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).not.toContain('secret');
  });

  it('hides passwords when printing', () => {
    expect(displayUrl('ssh://u:pw@host/x')).toBe('ssh://u:***@host/x');
    expect(displayUrl('ssh://u@host:22/x')).toBe('ssh://u@host:22/x');
    expect(displayUrl('/a:b@c')).toBe('/a:b@c');
  });
});

describe('globs', () => {
  it.each([
    ['*', 'a.yaml', true],
    ['*', '.a.yaml.1234.ab12cd34.tmp', false],
    ['.*', '.hidden', true],
    ['alpine-*-r*.yaml', 'alpine-3.20.1-aws-r12.yaml', true],
    ['alpine-*-r*.yaml', 'alpine-3.20.1-aws-r12.yaml.sha512', false],
    ['r?.yaml', 'r1.yaml', true],
    ['r?.yaml', 'r10.yaml', false],
    ['a.b', 'aXb', false],
    ['a+(b)[c]{d}^$|', 'a+(b)[c]{d}^$|', true],
    ['*.yaml', 'x\n.yaml', true],
  ])('%s vs %j → %s', (pattern, name, expected) => {
    expect(matchGlob(pattern, name)).toBe(expected);
  });

  it('filters and sorts names', () => {
    expect(filterNames(['b.yaml', '.tmp', 'a.yaml', 'a.txt'], '*.yaml')).toEqual(['a.yaml', 'b.yaml']);
    expect(filterNames(['b', 'a', '.c'])).toEqual(['a', 'b']);
  });
});

describe('AWS config region', () => {
  const ini = [
    '[default]',
    'region = eu-west-1',
    '',
    '[profile release]',
    'output = json',
    'region=us-west-2',
    '[profile empty]',
    'output = text',
  ].join('\n');
  it.each([
    ['default', 'eu-west-1'],
    ['release', 'us-west-2'],
    ['empty', undefined],
    ['missing', undefined],
  ])('%s → %s', (profile, region) => {
    expect(profileRegion(ini, profile)).toBe(region);
  });
});
