/**
 * An EC2 emulator speaking the EC2 Query protocol over HTTP, for the actions the AWS cloud plugin uses.
 * State is kept per region, the region being the one the request was signed for (SigV4 credential scope).
 * Import tasks and image copies advance with the clock (pending -> active -> completed, pending -> available),
 * and faults can be injected: throttling, failing imports, regions whose copies fail, a public-image quota,
 * errors for given actions, and a connection that is held or reset after an action has taken effect.
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { bool, filters, list, obj, parseQuery, type QueryObject, str, strings, tagList } from './query.js';
import {
  DEFAULT_REGIONS,
  type EmuBlockDevice,
  type EmuImage,
  type EmuImportTask,
  type EmuRegion,
  type EmuSnapshot,
  imageState,
  importStatus,
  RegionState,
  snapshotState,
  type Tags,
} from './state.js';
import { errorDocument, responseDocument, type XmlValue } from './xml.js';

export { DEFAULT_REGIONS, type EmuRegion } from './state.js';

export interface Ec2Latency {
  /** delay before every API answer: a fixed number of ms or a [min, max] range */
  apiMs: number | [number, number];
  /** how long an import task takes from ImportSnapshot to completed */
  importMs: number;
  /** how long a copied image stays pending */
  copyMs: number;
  /** how long a registered image stays pending */
  registerMs: number;
}

export interface InjectedError {
  action: string;
  /** only in this region */
  region?: string;
  code: string;
  message?: string;
  status?: number;
  /** how many times (default: every time) */
  times?: number;
}

export interface Ec2Faults {
  /** every Nth request (counting all requests) is throttled with RequestLimitExceeded */
  throttleEvery?: number;
  /** the next N requests are throttled */
  throttleNext?: number;
  /** restrict throttling to these actions */
  throttleActions?: string[];
  /** import tasks fail (true, or the ClientError message to end with) */
  failImport?: boolean | string;
  /** copies into these regions end up `failed` */
  failCopyRegions?: string[];
  /** at most this many public images per region; more gives ResourceLimitExceeded */
  publicQuota?: number;
  /** errors returned instead of performing an action */
  errors?: InjectedError[];
  /** after performing `action`, never answer (`hold`) or drop the connection (`reset`) */
  after?: { action: string; mode: 'hold' | 'reset'; times?: number };
  /** hold these actions this long before performing them (to make two clients race) */
  delay?: { action: string; ms: number }[];
  /** answer like a proxy in the way: an HTML error page with this status instead of the API's answer */
  html?: { status: number; action?: string; times?: number };
}

export interface Ec2EmulatorOptions {
  host?: string;
  port?: number;
  ownerId?: string;
  regions?: readonly EmuRegion[];
  latency?: Partial<Ec2Latency>;
  faults?: Ec2Faults;
  /** S3 endpoint holding the buckets ImportSnapshot reads (path style, unsigned reads); unchecked when absent */
  s3Endpoint?: string;
  /** the access key id a region must be called with (e.g. per-region broker credentials); any when undefined */
  accessKeyFor?: (region: string) => string | undefined;
  now?: () => number;
  /** one line per request */
  log?: (line: string) => void;
}

export interface Ec2Call {
  action: string;
  region: string;
  accessKeyId?: string;
  params: QueryObject;
  status: number;
  code?: string;
  at: number;
}

/** EBS volume types EC2 knows */
const VOLUME_TYPES = ['standard', 'io1', 'io2', 'gp2', 'gp3', 'sc1', 'st1'];
/** filter names each Describe call accepts (tag:KEY, tag-key and tag-value apart) */
const IMAGE_FILTERS = [
  'name',
  'state',
  'image-id',
  'is-public',
  'architecture',
  'owner-id',
  'owner-alias',
  'block-device-mapping.snapshot-id',
  'root-device-name',
  'description',
];
const SNAPSHOT_FILTERS = ['status', 'snapshot-id', 'owner-id', 'description', 'encrypted'];

function checkFilterNames(fs: { name: string }[], known: readonly string[]): void {
  for (const f of fs) {
    if (f.name.startsWith('tag:') || f.name === 'tag-key' || f.name === 'tag-value') continue;
    if (!known.includes(f.name))
      throw new Ec2Error('InvalidParameterValue', `The filter '${f.name}' is invalid`);
  }
}

const ID_CODES: Record<string, string> = {
  ami: 'InvalidAMIID.Malformed',
  snap: 'InvalidSnapshotID.Malformed',
};

/** `ami-` / `snap-` followed by 8 or 17 hex digits, as EC2 ids are; `…Malformed` otherwise. */
function checkId(id: string, kind: 'ami' | 'snap'): void {
  if (!new RegExp(`^${kind}-([0-9a-f]{8}|[0-9a-f]{17})$`).test(id)) {
    throw new Ec2Error(ID_CODES[kind]!, `Invalid id: "${id}"`);
  }
}

function checkTags(tags: { key: string; value: string }[]): void {
  for (const t of tags) {
    if (!t.key || t.key.length > 128)
      throw new Ec2Error('InvalidParameterValue', `Tag key "${t.key}" is invalid`);
    if (t.key.toLowerCase().startsWith('aws:')) {
      throw new Ec2Error(
        'InvalidParameterValue',
        `Tag keys starting with 'aws:' are reserved for internal use`,
      );
    }
    if (t.value.length > 256)
      throw new Ec2Error('InvalidParameterValue', `Tag value for "${t.key}" is too long`);
  }
}

/** A request's parameters without its ClientToken and signature noise, for idempotency checks. */
function requestFingerprint(p: QueryObject): string {
  const { ClientToken: _t, ...rest } = p as Record<string, unknown>;
  return JSON.stringify(rest);
}

export class Ec2Error extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

const DEFAULT_LATENCY: Ec2Latency = { apiMs: 0, importMs: 300, copyMs: 300, registerMs: 50 };
const DAY = 86_400_000;

function hexId(prefix: string, len = 17): string {
  return `${prefix}-${randomBytes(Math.ceil(len / 2))
    .toString('hex')
    .slice(0, len)}`;
}

function tagsXml(tags: Tags): XmlValue[] {
  return [...tags].map(([key, value]) => ({ key, value }));
}

/** `*` and `?` wildcards, as EC2 filters use them. */
function wildcard(pattern: string, value: string): boolean {
  const re = new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
  );
  return re.test(value);
}

function matchesTagFilters(tags: Tags, name: string, values: string[]): boolean | undefined {
  if (name.startsWith('tag:')) {
    const v = tags.get(name.slice(4));
    return v !== undefined && values.some((p) => wildcard(p, v));
  }
  if (name === 'tag-key') return [...tags.keys()].some((k) => values.some((p) => wildcard(p, k)));
  return undefined;
}

export class Ec2Emulator extends EventEmitter {
  readonly ownerId: string;
  readonly latency: Ec2Latency;
  faults: Ec2Faults;
  readonly calls: Ec2Call[] = [];
  private readonly regionList: EmuRegion[];
  private readonly state = new Map<string, RegionState>();
  private readonly sockets = new Set<Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private requestCount = 0;
  private server?: Server;
  private baseUrl = '';

  constructor(private readonly opts: Ec2EmulatorOptions = {}) {
    super();
    this.ownerId = opts.ownerId ?? '123456789012';
    this.latency = { ...DEFAULT_LATENCY, ...opts.latency };
    this.faults = { ...opts.faults };
    this.regionList = [...(opts.regions ?? DEFAULT_REGIONS)];
    for (const r of this.regionList) this.state.set(r.name, new RegionState());
  }

  get url(): string {
    return this.baseUrl;
  }

  now(): number {
    return this.opts.now ? this.opts.now() : Date.now();
  }

  /** Regions an account can use (opted in or not needing opt-in). */
  enabledRegions(): string[] {
    return this.regionList.filter((r) => r.optInStatus !== 'not-opted-in').map((r) => r.name);
  }

  region(name: string): RegionState {
    const s = this.state.get(name);
    if (!s) throw new Error(`emulator has no region ${name}`);
    this.settle(name, s);
    return s;
  }

  /** Images of a region (all regions when omitted), with their state at this moment. */
  images(region?: string): (EmuImage & { state: string })[] {
    const names = region ? [region] : [...this.state.keys()];
    const now = this.now();
    return names.flatMap((r) =>
      [...this.region(r).images.values()].map((i) => ({ ...i, state: imageState(i, now) })),
    );
  }

  snapshots(region?: string): EmuSnapshot[] {
    const names = region ? [region] : [...this.state.keys()];
    return names.flatMap((r) => [...this.region(r).snapshots.values()]);
  }

  importTasks(region?: string): EmuImportTask[] {
    const names = region ? [region] : [...this.state.keys()];
    return names.flatMap((r) => [...this.region(r).importTasks.values()]);
  }

  /** Put an available image (with a completed snapshot) straight into a region, e.g. as a publish source. */
  seedImage(
    region: string,
    init: {
      name: string;
      tags?: Record<string, string>;
      description?: string;
      architecture?: string;
      public?: boolean;
      createdAt?: number;
      lastLaunchedTime?: string;
    },
  ): { imageId: string; snapshotId: string } {
    const s = this.region(region);
    const now = init.createdAt ?? this.now();
    const snap: EmuSnapshot = {
      id: hexId('snap'),
      region,
      ownerId: this.ownerId,
      volumeSize: 1,
      encrypted: false,
      startedAt: now,
      completedAt: now,
      tags: new Map(Object.entries(init.tags ?? {})),
    };
    s.snapshots.set(snap.id, snap);
    const img: EmuImage = {
      id: hexId('ami'),
      region,
      ownerId: this.ownerId,
      name: init.name,
      description: init.description,
      createdAt: now,
      readyAt: now,
      architecture: init.architecture ?? 'x86_64',
      bootMode: 'legacy-bios',
      enaSupport: true,
      sriovNetSupport: 'simple',
      imdsSupport: 'v2.0',
      virtualizationType: 'hvm',
      rootDeviceName: '/dev/xvda',
      blockDevices: [{ deviceName: '/dev/xvda', snapshotId: snap.id, volumeSize: 1, volumeType: 'gp3' }],
      tags: new Map(Object.entries(init.tags ?? {})),
      launchGroups: new Set(init.public ? ['all'] : []),
      launchUsers: new Set(),
      lastLaunchedTime: init.lastLaunchedTime,
    };
    s.images.set(img.id, img);
    return { imageId: img.id, snapshotId: snap.id };
  }

  async listen(): Promise<string> {
    const server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) {
          res.writeHead(500, { 'content-type': 'text/xml' });
          res.end(errorDocument('InternalError', String(err), hexId('req', 32)));
        }
      });
    });
    server.on('connection', (sock) => {
      this.sockets.add(sock);
      sock.on('close', () => this.sockets.delete(sock));
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port ?? 0, this.opts.host ?? '127.0.0.1', () => resolve());
    });
    const addr = server.address() as AddressInfo;
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    this.baseUrl = `http://${host}:${addr.port}`;
    return this.baseUrl;
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private delay(ms: number): Promise<void> {
    if (ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.timers.delete(t);
        resolve();
      }, ms);
      this.timers.add(t);
    });
  }

  private apiDelay(): number {
    const l = this.latency.apiMs;
    if (Array.isArray(l)) return l[0] + Math.random() * (l[1] - l[0]);
    return l;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    const params = req.method === 'POST' ? parseQuery(body) : parseQuery((req.url ?? '').split('?')[1] ?? '');
    const action = str(params, 'Action') ?? '';
    const auth = String(req.headers.authorization ?? '');
    const m = /Credential=([^/,\s]+)\/\d{8}\/([^/]+)\/ec2\/aws4_request/.exec(auth);
    const region = m?.[2] ?? 'us-east-1';
    const accessKeyId = m?.[1];
    const requestId = hexId('req', 32).slice(4);
    const n = ++this.requestCount;

    await this.delay(this.apiDelay());
    for (const d of this.faults.delay ?? []) if (d.action === action) await this.delay(d.ms);
    const html = this.faults.html;
    if (html && (!html.action || html.action === action)) {
      if (html.times !== undefined && --html.times <= 0) this.faults.html = undefined;
      res.writeHead(html.status, { 'content-type': 'text/html' });
      res.end(
        `<html>\r\n<head><title>${html.status} Bad Gateway</title></head>\r\n<body>\r\n<center><h1>${html.status} Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n`,
      );
      return;
    }

    let status = 200;
    let xml: string;
    let code: string | undefined;
    let after: 'hold' | 'reset' | undefined;
    try {
      this.checkAccess(region, accessKeyId);
      this.maybeThrottle(action, n);
      this.maybeInjected(action, region);
      const result = await this.dispatch(action, region, params);
      xml = responseDocument(action, requestId, result);
      after = this.takeAfter(action);
    } catch (err) {
      const e = err instanceof Ec2Error ? err : new Ec2Error('InternalError', String(err), 500);
      status = e.status;
      code = e.code;
      xml = errorDocument(e.code, e.message, requestId);
    }
    const call: Ec2Call = { action, region, accessKeyId, params, status, code, at: this.now() };
    this.calls.push(call);
    this.opts.log?.(
      `${region} ${action} -> ${status}${code ? ` ${code}` : ''}${after ? ` (then ${after})` : ''}`,
    );
    this.emit('call', call);
    if (after === 'hold') return; // the client waits until it gives up or the emulator closes
    if (after === 'reset') {
      req.socket.destroy();
      return;
    }
    res.writeHead(status, { 'content-type': 'text/xml;charset=UTF-8', 'x-amzn-requestid': requestId });
    res.end(xml);
  }

  private checkAccess(region: string, accessKeyId: string | undefined): void {
    const r = this.regionList.find((x) => x.name === region);
    if (!r || r.optInStatus === 'not-opted-in') {
      throw new Ec2Error('AuthFailure', 'AWS was not able to validate the provided access credentials', 401);
    }
    const want = this.opts.accessKeyFor?.(region);
    if (want !== undefined && want !== accessKeyId) {
      throw new Ec2Error(
        'AuthFailure',
        `AWS was not able to validate the provided access credentials (key not valid in ${region})`,
        401,
      );
    }
  }

  private maybeThrottle(action: string, n: number): void {
    const f = this.faults;
    if (f.throttleActions && !f.throttleActions.includes(action)) return;
    let throttle = false;
    if (f.throttleNext && f.throttleNext > 0) {
      f.throttleNext--;
      throttle = true;
    } else if (f.throttleEvery && f.throttleEvery > 0 && n % f.throttleEvery === 0) {
      throttle = true;
    }
    if (throttle) throw new Ec2Error('RequestLimitExceeded', 'Request limit exceeded.', 503);
  }

  private maybeInjected(action: string, region: string): void {
    const errs = this.faults.errors ?? [];
    const e = errs.find((x) => x.action === action && (!x.region || x.region === region));
    if (!e) return;
    if (e.times !== undefined) {
      e.times--;
      if (e.times <= 0) this.faults.errors = errs.filter((x) => x !== e);
    }
    throw new Ec2Error(e.code, e.message ?? `injected ${e.code}`, e.status ?? 400);
  }

  private takeAfter(action: string): 'hold' | 'reset' | undefined {
    const a = this.faults.after;
    if (!a || a.action !== action) return undefined;
    if (a.times !== undefined) {
      a.times--;
      if (a.times <= 0) this.faults.after = undefined;
    }
    return a.mode;
  }

  /** Materialise what the clock has made happen: finished imports produce their snapshot. */
  private settle(regionName: string, s: RegionState): void {
    const now = this.now();
    for (const t of s.importTasks.values()) {
      if (now >= t.doneAt && !t.failure && !t.snapshotId) {
        const snap: EmuSnapshot = {
          id: hexId('snap'),
          region: regionName,
          ownerId: this.ownerId,
          description: `Created by AWS-VMImport service for ${t.id}`,
          volumeSize: t.volumeSize,
          encrypted: t.encrypted,
          kmsKeyId: t.kmsKeyId,
          startedAt: t.doneAt,
          completedAt: t.doneAt,
          tags: new Map(),
        };
        s.snapshots.set(snap.id, snap);
        t.snapshotId = snap.id;
      }
    }
  }

  private async dispatch(action: string, region: string, p: QueryObject): Promise<Record<string, XmlValue>> {
    switch (action) {
      case 'DescribeRegions':
        return this.describeRegions(p);
      case 'ImportSnapshot':
        return this.importSnapshot(region, p);
      case 'DescribeImportSnapshotTasks':
        return this.describeImportSnapshotTasks(region, p);
      case 'DescribeSnapshots':
        return this.describeSnapshots(region, p);
      case 'CreateTags':
        return this.createTags(region, p);
      case 'DeleteSnapshot':
        return this.deleteSnapshot(region, p);
      case 'RegisterImage':
        return this.registerImage(region, p);
      case 'DescribeImages':
        return this.describeImages(region, p);
      case 'CopyImage':
        return this.copyImage(region, p);
      case 'ModifyImageAttribute':
        return this.modifyImageAttribute(region, p);
      case 'ResetImageAttribute':
        return this.resetImageAttribute(region, p);
      case 'EnableImageDeprecation':
        return this.enableImageDeprecation(region, p);
      case 'DeregisterImage':
        return this.deregisterImage(region, p);
      default:
        throw new Ec2Error(
          'InvalidAction',
          `The action ${action || '(none)'} is not valid for this web service.`,
        );
    }
  }

  // ---- actions ----

  private describeRegions(p: QueryObject): Record<string, XmlValue> {
    const all = bool(p, 'AllRegions') === true;
    const names = strings(p, 'RegionName');
    const regions = this.regionList.filter(
      (r) => (all || r.optInStatus !== 'not-opted-in') && (names.length === 0 || names.includes(r.name)),
    );
    return {
      regionInfo: regions.map((r) => ({
        regionName: r.name,
        regionEndpoint: `ec2.${r.name}.amazonaws.com`,
        optInStatus: r.optInStatus,
      })),
    };
  }

  private async importSnapshot(region: string, p: QueryObject): Promise<Record<string, XmlValue>> {
    const dc = obj(p, 'DiskContainer');
    const format = (str(dc, 'Format') ?? '').toUpperCase();
    if (!['VHD', 'VMDK', 'RAW'].includes(format)) {
      throw new Ec2Error(
        'InvalidParameterValue',
        `DiskContainer.Format must be VHD, VMDK or RAW, not "${format}"`,
      );
    }
    const ub = obj(dc, 'UserBucket');
    let bucket = str(ub, 'S3Bucket');
    let key = str(ub, 'S3Key');
    const url = str(dc, 'Url');
    if (!bucket && url) {
      const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(url);
      if (!m) throw new Ec2Error('InvalidParameterValue', `DiskContainer.Url is not an s3:// URL: ${url}`);
      bucket = m[1];
      key = m[2];
    }
    if (!bucket || !key) {
      throw new Ec2Error('InvalidParameterValue', 'DiskContainer needs UserBucket (S3Bucket, S3Key) or Url');
    }
    const encrypted = bool(p, 'Encrypted') === true;
    const kmsKeyId = str(p, 'KmsKeyId');
    if (kmsKeyId && !encrypted) {
      throw new Ec2Error('InvalidParameterCombination', 'KmsKeyId requires Encrypted=true');
    }
    let failure =
      this.faults.failImport === true
        ? 'ClientError: Disk validation failed [emulated import failure]'
        : typeof this.faults.failImport === 'string'
          ? this.faults.failImport
          : undefined;
    let diskImageSize = 0;
    let volumeSize = 1;
    if (this.opts.s3Endpoint && !failure) {
      const checked = await this.inspectS3Object(bucket, key, format);
      diskImageSize = checked.size;
      volumeSize = checked.volumeSize;
      failure = checked.failure;
    }
    const now = this.now();
    const task: EmuImportTask = {
      id: hexId('import-snap'),
      region,
      description: str(p, 'Description') ?? str(dc, 'Description'),
      format,
      url,
      bucket,
      key,
      encrypted,
      kmsKeyId,
      diskImageSize,
      volumeSize,
      createdAt: now,
      doneAt: now + this.latency.importMs,
      failure,
      tags: new Map(),
    };
    for (const spec of list(p, 'TagSpecification')) {
      if (str(spec, 'ResourceType') !== 'import-snapshot-task') {
        throw new Ec2Error(
          'InvalidParameterValue',
          'ImportSnapshot tags only import-snapshot-task resources',
        );
      }
      checkTags(tagList(spec, 'Tag'));
      for (const t of tagList(spec, 'Tag')) task.tags.set(t.key, t.value);
    }
    this.region(region).importTasks.set(task.id, task);
    return {
      importTaskId: task.id,
      description: task.description,
      snapshotTaskDetail: this.taskDetail(task, now),
      tagSet: tagsXml(task.tags),
    };
  }

  /** Read the object as the import service would: it must exist, and a VHD ends with a `conectix` footer. */
  private async inspectS3Object(
    bucket: string,
    key: string,
    format: string,
  ): Promise<{ size: number; volumeSize: number; failure?: string }> {
    const base = this.opts.s3Endpoint!.replace(/\/+$/, '');
    const url = `${base}/${encodeURIComponent(bucket)}/${key.split('/').map(encodeURIComponent).join('/')}`;
    let head: Response;
    try {
      head = await fetch(url, { method: 'HEAD' });
    } catch (err) {
      return {
        size: 0,
        volumeSize: 1,
        failure: `ClientError: cannot read s3://${bucket}/${key}: ${String(err)}`,
      };
    }
    if (!head.ok) {
      return {
        size: 0,
        volumeSize: 1,
        failure: `ClientError: Unable to read s3://${bucket}/${key} (HTTP ${head.status})`,
      };
    }
    const size = Number(head.headers.get('content-length') ?? 0);
    let virtual = size;
    if (format === 'VHD') {
      if (size < 512) {
        return {
          size,
          volumeSize: 1,
          failure: 'ClientError: Disk validation failed [Invalid VHD: too small]',
        };
      }
      const tail = await fetch(url, { headers: { range: `bytes=${size - 512}-${size - 1}` } });
      const footer = Buffer.from(await tail.arrayBuffer());
      if (footer.length !== 512 || footer.subarray(0, 8).toString('latin1') !== 'conectix') {
        return {
          size,
          volumeSize: 1,
          failure: 'ClientError: Disk validation failed [Unsupported VHD Footer]',
        };
      }
      virtual = Number(footer.readBigUInt64BE(48));
    }
    return { size, volumeSize: Math.max(1, Math.ceil(virtual / 2 ** 30)) };
  }

  private taskDetail(t: EmuImportTask, now: number): XmlValue {
    const st = importStatus(t, now);
    return {
      description: t.description,
      diskImageSize: t.diskImageSize,
      encrypted: t.encrypted,
      format: t.format,
      kmsKeyId: t.kmsKeyId,
      progress: st.progress,
      snapshotId: st.status === 'completed' ? t.snapshotId : undefined,
      status: st.status,
      statusMessage: st.message,
      url: t.url,
      userBucket: t.bucket ? { s3Bucket: t.bucket, s3Key: t.key } : undefined,
    };
  }

  private describeImportSnapshotTasks(region: string, p: QueryObject): Record<string, XmlValue> {
    const s = this.region(region);
    const ids = strings(p, 'ImportTaskId');
    const now = this.now();
    const tasks = ids.length
      ? ids.map((id) => {
          const t = s.importTasks.get(id);
          if (!t)
            throw new Ec2Error('InvalidConversionTaskId.Malformed', `The import task ${id} does not exist`);
          return t;
        })
      : [...s.importTasks.values()];
    return {
      importSnapshotTaskSet: tasks.map((t) => ({
        importTaskId: t.id,
        description: t.description,
        snapshotTaskDetail: this.taskDetail(t, now),
        tagSet: tagsXml(t.tags),
      })),
    };
  }

  private checkOwners(p: QueryObject): boolean {
    const owners = strings(p, 'Owner');
    return owners.length === 0 || owners.some((o) => o === 'self' || o === this.ownerId);
  }

  private describeSnapshots(region: string, p: QueryObject): Record<string, XmlValue> {
    const s = this.region(region);
    const now = this.now();
    const ids = strings(p, 'SnapshotId');
    for (const id of ids) {
      checkId(id, 'snap');
      if (!s.snapshots.has(id))
        throw new Ec2Error('InvalidSnapshot.NotFound', `The snapshot '${id}' does not exist.`);
    }
    const fs = filters(p);
    checkFilterNames(fs, SNAPSHOT_FILTERS);
    const snaps = [...s.snapshots.values()].filter((snap) => {
      if (!this.checkOwners(p)) return false;
      if (ids.length && !ids.includes(snap.id)) return false;
      return fs.every((f) => {
        const t = matchesTagFilters(snap.tags, f.name, f.values);
        if (t !== undefined) return t;
        if (f.name === 'status') return f.values.includes(snapshotState(snap, now));
        if (f.name === 'snapshot-id') return f.values.includes(snap.id);
        if (f.name === 'owner-id') return f.values.includes(snap.ownerId);
        if (f.name === 'description') return f.values.some((v) => wildcard(v, snap.description ?? ''));
        if (f.name === 'encrypted') return f.values.includes(String(snap.encrypted));
        return false;
      });
    });
    return {
      snapshotSet: snaps.map((snap) => ({
        snapshotId: snap.id,
        volumeId: 'vol-ffffffff',
        status: snapshotState(snap, now),
        startTime: new Date(snap.startedAt),
        progress: snapshotState(snap, now) === 'completed' ? '100%' : '50%',
        ownerId: snap.ownerId,
        description: snap.description,
        volumeSize: snap.volumeSize,
        encrypted: snap.encrypted,
        kmsKeyId: snap.kmsKeyId,
        tagSet: tagsXml(snap.tags),
      })),
    };
  }

  private findResourceTags(s: RegionState, id: string): Tags {
    if (id.startsWith('ami-') || id.startsWith('snap-')) checkId(id, id.startsWith('ami-') ? 'ami' : 'snap');
    if (id.startsWith('ami-')) {
      const i = s.images.get(id);
      if (!i) throw new Ec2Error('InvalidAMIID.NotFound', `The image id '[${id}]' does not exist`);
      return i.tags;
    }
    if (id.startsWith('snap-')) {
      const sn = s.snapshots.get(id);
      if (!sn) throw new Ec2Error('InvalidSnapshot.NotFound', `The snapshot '${id}' does not exist.`);
      return sn.tags;
    }
    if (id.startsWith('import-snap-')) {
      const t = s.importTasks.get(id);
      if (!t) throw new Ec2Error('InvalidID', `The ID '${id}' is not valid`);
      return t.tags;
    }
    throw new Ec2Error('InvalidID', `The ID '${id}' is not valid`);
  }

  private createTags(region: string, p: QueryObject): Record<string, XmlValue> {
    const s = this.region(region);
    const ids = strings(p, 'ResourceId');
    const tags = tagList(p, 'Tag');
    if (ids.length === 0)
      throw new Ec2Error('MissingParameter', 'The request must contain the parameter resourceIdSet');
    checkTags(tags);
    const targets = ids.map((id) => this.findResourceTags(s, id));
    for (const target of targets) {
      const keys = new Set([...target.keys(), ...tags.map((t) => t.key)]);
      if (keys.size > 50)
        throw new Ec2Error('TagLimitExceeded', 'The maximum number of tags (50) was exceeded');
    }
    for (const target of targets) for (const t of tags) target.set(t.key, t.value);
    return { return: true };
  }

  private deleteSnapshot(region: string, p: QueryObject): Record<string, XmlValue> {
    const s = this.region(region);
    const id = str(p, 'SnapshotId') ?? '';
    if (!id) throw new Ec2Error('MissingParameter', 'The request must contain the parameter SnapshotId');
    checkId(id, 'snap');
    if (!s.snapshots.has(id))
      throw new Ec2Error('InvalidSnapshot.NotFound', `The snapshot '${id}' does not exist.`);
    for (const img of s.images.values()) {
      if (img.blockDevices.some((b) => b.snapshotId === id)) {
        throw new Ec2Error('InvalidSnapshot.InUse', `The snapshot ${id} is currently in use by ${img.id}`);
      }
    }
    s.snapshots.delete(id);
    return { return: true };
  }

  private applyTagSpecs(p: QueryObject, allowed: Record<string, Tags[]>): void {
    for (const spec of list(p, 'TagSpecification')) {
      const type = str(spec, 'ResourceType') ?? '';
      const targets = allowed[type];
      if (!targets)
        throw new Ec2Error('InvalidParameterValue', `'${type}' is not a valid taggable resource type here`);
      checkTags(tagList(spec, 'Tag'));
      for (const t of tagList(spec, 'Tag')) for (const target of targets) target.set(t.key, t.value);
    }
  }

  private registerImage(region: string, p: QueryObject): Record<string, XmlValue> {
    const s = this.region(region);
    const now = this.now();
    const name = str(p, 'Name');
    if (!name) throw new Ec2Error('MissingParameter', 'The request must contain the parameter name');
    if (!/^[A-Za-z0-9()[\] ./\-'@_]{3,128}$/.test(name)) {
      throw new Ec2Error('InvalidAMIName.Malformed', `AMI name ${name} is invalid`);
    }
    for (const i of s.images.values()) {
      if (i.name === name) {
        throw new Ec2Error('InvalidAMIName.Duplicate', `AMI name ${name} is already in use by AMI ${i.id}`);
      }
    }
    const arch = str(p, 'Architecture') ?? 'x86_64';
    if (!['x86_64', 'arm64', 'i386', 'x86_64_mac', 'arm64_mac'].includes(arch)) {
      throw new Ec2Error('InvalidParameterValue', `Architecture ${arch} is invalid`);
    }
    const bootMode = str(p, 'BootMode');
    if (bootMode && !['legacy-bios', 'uefi', 'uefi-preferred'].includes(bootMode)) {
      throw new Ec2Error('InvalidParameterValue', `BootMode ${bootMode} is invalid`);
    }
    const imds = str(p, 'ImdsSupport');
    if (imds && imds !== 'v2.0')
      throw new Ec2Error('InvalidParameterValue', `ImdsSupport ${imds} is invalid`);
    const sriov = str(p, 'SriovNetSupport');
    if (sriov !== undefined && sriov !== 'simple') {
      throw new Ec2Error(
        'InvalidParameterValue',
        `Value (${sriov}) for parameter sriovNetSupport is invalid. Allowed: simple`,
      );
    }
    const devices: EmuBlockDevice[] = list(p, 'BlockDeviceMapping').map((b) => {
      const ebs = obj(b, 'Ebs');
      const snapshotId = str(ebs, 'SnapshotId');
      const volumeType = str(ebs, 'VolumeType');
      if (volumeType !== undefined && !VOLUME_TYPES.includes(volumeType)) {
        throw new Ec2Error(
          'InvalidParameterValue',
          `Value (${volumeType}) for parameter volumeType is invalid. Allowed: ${VOLUME_TYPES.join(', ')}`,
        );
      }
      if (snapshotId) checkId(snapshotId, 'snap');
      let volumeSize = str(ebs, 'VolumeSize') ? Number(str(ebs, 'VolumeSize')) : undefined;
      if (snapshotId) {
        const snap = s.snapshots.get(snapshotId);
        if (!snap)
          throw new Ec2Error('InvalidSnapshot.NotFound', `The snapshot '${snapshotId}' does not exist.`);
        if (snapshotState(snap, now) !== 'completed') {
          throw new Ec2Error('IncorrectState', `Snapshot ${snapshotId} is not completed`);
        }
        volumeSize ??= snap.volumeSize;
      }
      return {
        deviceName: str(b, 'DeviceName') ?? '',
        snapshotId,
        volumeSize,
        volumeType: str(ebs, 'VolumeType') ?? 'standard',
        encrypted: bool(ebs, 'Encrypted'),
        deleteOnTermination: bool(ebs, 'DeleteOnTermination') ?? true,
      };
    });
    const root = str(p, 'RootDeviceName');
    if (!root || !devices.some((d) => d.deviceName === root && d.snapshotId)) {
      throw new Ec2Error('InvalidBlockDeviceMapping', 'The root device needs an EBS snapshot mapping');
    }
    const img: EmuImage = {
      id: hexId('ami'),
      region,
      ownerId: this.ownerId,
      name,
      description: str(p, 'Description'),
      createdAt: now,
      readyAt: now + this.latency.registerMs,
      architecture: arch,
      bootMode,
      enaSupport: bool(p, 'EnaSupport'),
      sriovNetSupport: str(p, 'SriovNetSupport'),
      imdsSupport: imds,
      virtualizationType: str(p, 'VirtualizationType') ?? 'paravirtual',
      rootDeviceName: root,
      blockDevices: devices,
      tags: new Map(),
      launchGroups: new Set(),
      launchUsers: new Set(),
    };
    this.applyTagSpecs(p, { image: [img.tags] });
    s.images.set(img.id, img);
    return { imageId: img.id };
  }

  private imageXml(i: EmuImage, now: number): XmlValue {
    const state = imageState(i, now);
    return {
      imageId: i.id,
      imageLocation: `${i.ownerId}/${i.name}`,
      imageState: state,
      imageOwnerId: i.ownerId,
      creationDate: new Date(i.createdAt),
      isPublic: i.launchGroups.has('all'),
      architecture: i.architecture,
      imageType: 'machine',
      name: i.name,
      description: i.description,
      rootDeviceType: 'ebs',
      rootDeviceName: i.rootDeviceName,
      blockDeviceMapping: i.blockDevices.map((b) => ({
        deviceName: b.deviceName,
        ebs: b.snapshotId
          ? {
              snapshotId: b.snapshotId,
              volumeSize: b.volumeSize,
              deleteOnTermination: b.deleteOnTermination ?? true,
              volumeType: b.volumeType,
              encrypted: b.encrypted ?? false,
            }
          : undefined,
      })),
      virtualizationType: i.virtualizationType,
      tagSet: i.tags.size ? tagsXml(i.tags) : undefined,
      hypervisor: 'xen',
      enaSupport: i.enaSupport,
      sriovNetSupport: i.sriovNetSupport,
      bootMode: i.bootMode,
      imdsSupport: i.imdsSupport,
      deprecationTime: i.deprecationTime,
      lastLaunchedTime: i.lastLaunchedTime,
      sourceImageId: i.sourceImageId,
      sourceImageRegion: i.sourceRegion,
      stateReason: state === 'failed' ? i.failure : undefined,
    };
  }

  private describeImages(region: string, p: QueryObject): Record<string, XmlValue> {
    const s = this.region(region);
    const now = this.now();
    const ids = strings(p, 'ImageId');
    for (const id of ids) {
      checkId(id, 'ami');
      if (!s.images.has(id))
        throw new Ec2Error('InvalidAMIID.NotFound', `The image id '[${id}]' does not exist`);
    }
    const fs = filters(p);
    checkFilterNames(fs, IMAGE_FILTERS);
    const owners = this.checkOwners(p);
    const images = [...s.images.values()].filter((i) => {
      if (!owners) return false;
      if (ids.length && !ids.includes(i.id)) return false;
      return fs.every((f) => {
        const t = matchesTagFilters(i.tags, f.name, f.values);
        if (t !== undefined) return t;
        switch (f.name) {
          case 'name':
            return f.values.some((v) => wildcard(v, i.name));
          case 'state':
            return f.values.includes(imageState(i, now));
          case 'image-id':
            return f.values.includes(i.id);
          case 'is-public':
            return f.values.includes(String(i.launchGroups.has('all')));
          case 'architecture':
            return f.values.includes(i.architecture);
          case 'owner-id':
            return f.values.includes(i.ownerId);
          case 'owner-alias':
            // images of this account have no owner alias (amazon, aws-marketplace are other owners')
            return false;
          case 'block-device-mapping.snapshot-id':
            return i.blockDevices.some((b) => b.snapshotId !== undefined && f.values.includes(b.snapshotId));
          case 'root-device-name':
            return f.values.includes(i.rootDeviceName ?? '');
          case 'description':
            return f.values.some((v) => wildcard(v, i.description ?? ''));
          default:
            return false;
        }
      });
    });
    return { imagesSet: images.map((i) => this.imageXml(i, now)) };
  }

  private copyImage(region: string, p: QueryObject): Record<string, XmlValue> {
    const srcRegion = str(p, 'SourceRegion') ?? '';
    const srcId = str(p, 'SourceImageId') ?? '';
    const name = str(p, 'Name');
    if (!name) throw new Ec2Error('MissingParameter', 'The request must contain the parameter Name');
    if (!srcRegion)
      throw new Ec2Error('MissingParameter', 'The request must contain the parameter SourceRegion');
    if (!srcId)
      throw new Ec2Error('MissingParameter', 'The request must contain the parameter SourceImageId');
    checkId(srcId, 'ami');
    if (!this.state.has(srcRegion)) throw new Ec2Error('InvalidRegion', `Invalid source region ${srcRegion}`);
    const src = this.region(srcRegion).images.get(srcId);
    const now = this.now();
    if (!src) throw new Ec2Error('InvalidAMIID.NotFound', `The image id '[${srcId}]' does not exist`);
    if (imageState(src, now) !== 'available') {
      throw new Ec2Error('IncorrectState', `Image ${srcId} is not in a valid state for copying`);
    }
    const s = this.region(region);
    // a retried request (same ClientToken) gets the copy the first attempt started
    const token = str(p, 'ClientToken');
    const earlier = token ? s.copyTokens.get(token) : undefined;
    if (token && earlier) {
      // the same token with other parameters is a different request: EC2 refuses it
      const fingerprint = requestFingerprint(p);
      if (s.copyTokenParams.get(token) !== fingerprint) {
        throw new Ec2Error(
          'IdempotentParameterMismatch',
          `The client token ${token} was already used with different parameters`,
        );
      }
      if (s.images.has(earlier)) return { imageId: earlier };
    }
    for (const i of s.images.values()) {
      if (i.name === name) {
        throw new Ec2Error('InvalidAMIName.Duplicate', `AMI name ${name} is already in use by AMI ${i.id}`);
      }
    }
    const encrypted = bool(p, 'Encrypted') === true;
    const readyAt = now + this.latency.copyMs;
    const failing = this.faults.failCopyRegions?.includes(region);
    const snap: EmuSnapshot = {
      id: hexId('snap'),
      region,
      ownerId: this.ownerId,
      description: `Copied for DestinationAmi from SourceAmi ${srcId} in ${srcRegion}`,
      volumeSize: src.blockDevices[0]?.volumeSize ?? 1,
      encrypted,
      kmsKeyId: str(p, 'KmsKeyId'),
      startedAt: now,
      completedAt: readyAt,
      tags: new Map(),
    };
    const img: EmuImage = {
      ...src,
      id: hexId('ami'),
      region,
      name,
      description: str(p, 'Description'),
      createdAt: now,
      readyAt,
      failure: failing
        ? { code: 'Client.CopyImage.Failed', message: `emulated copy failure in ${region}` }
        : undefined,
      blockDevices: src.blockDevices.map((b, n) =>
        n === 0 ? { ...b, snapshotId: snap.id, encrypted } : { ...b },
      ),
      tags: new Map(),
      launchGroups: new Set(),
      launchUsers: new Set(),
      deprecationTime: undefined,
      lastLaunchedTime: undefined,
      sourceImageId: srcId,
      sourceRegion: srcRegion,
    };
    const tagTargets: Record<string, Tags[]> = { image: [img.tags], snapshot: [snap.tags] };
    this.applyTagSpecs(p, tagTargets);
    if (bool(p, 'CopyImageTags')) for (const [k, v] of src.tags) img.tags.set(k, v);
    if (!failing) s.snapshots.set(snap.id, snap);
    s.images.set(img.id, img);
    if (token) {
      s.copyTokens.set(token, img.id);
      s.copyTokenParams.set(token, requestFingerprint(p));
    }
    return { imageId: img.id };
  }

  private image(region: string, id: string): EmuImage {
    if (!id) throw new Ec2Error('MissingParameter', 'The request must contain the parameter ImageId');
    checkId(id, 'ami');
    const img = this.region(region).images.get(id);
    if (!img) throw new Ec2Error('InvalidAMIID.NotFound', `The image id '[${id}]' does not exist`);
    return img;
  }

  private modifyImageAttribute(region: string, p: QueryObject): Record<string, XmlValue> {
    const img = this.image(region, str(p, 'ImageId') ?? '');
    const modifies = [
      'Description',
      'LaunchPermission',
      'Attribute',
      'Value',
      'UserGroup',
      'UserId',
      'ProductCode',
      'OperationType',
      'ImdsSupport',
      'OrganizationArn',
      'OrganizationalUnitArn',
    ].some((k) => p[k] !== undefined);
    if (!modifies) {
      throw new Ec2Error('InvalidParameterCombination', 'No attributes specified.');
    }
    const desc =
      str(obj(p, 'Description'), 'Value') ??
      (str(p, 'Attribute') === 'description' ? str(p, 'Value') : undefined);
    if (desc !== undefined) img.description = desc;
    const lp = obj(p, 'LaunchPermission');
    const add: { group?: string; user?: string }[] = list(lp, 'Add').map((x) => ({
      group: str(x, 'Group'),
      user: str(x, 'UserId'),
    }));
    const remove: { group?: string; user?: string }[] = list(lp, 'Remove').map((x) => ({
      group: str(x, 'Group'),
      user: str(x, 'UserId'),
    }));
    if (str(p, 'Attribute') === 'launchPermission') {
      const op = str(p, 'OperationType');
      const items = [
        ...strings(p, 'UserGroup').map((group) => ({ group })),
        ...strings(p, 'UserId').map((user) => ({ user })),
      ];
      if (op === 'add') add.push(...items);
      else if (op === 'remove') remove.push(...items);
      else throw new Ec2Error('InvalidParameterValue', `OperationType must be add or remove, not ${op}`);
    }
    for (const a of add) {
      if (a.group !== undefined && a.group !== 'all') {
        throw new Ec2Error(
          'InvalidAMIAttributeItemValue',
          `Invalid attribute item value "${a.group}" for group`,
        );
      }
      if (a.user !== undefined && !/^\d{12}$/.test(a.user)) {
        throw new Ec2Error('InvalidAMIAttributeItemValue', `Invalid user id ${a.user}`);
      }
    }
    if (add.some((a) => a.group === 'all') && !img.launchGroups.has('all')) {
      const quota = this.faults.publicQuota;
      if (quota !== undefined) {
        const publicCount = [...this.region(region).images.values()].filter((i) =>
          i.launchGroups.has('all'),
        ).length;
        if (publicCount >= quota) {
          throw new Ec2Error(
            'ResourceLimitExceeded',
            `You have reached your quota of ${quota} public AMIs in ${region}. To make more AMIs public, request a quota increase.`,
          );
        }
      }
    }
    for (const a of add) {
      if (a.group) img.launchGroups.add(a.group);
      if (a.user) img.launchUsers.add(a.user);
    }
    for (const r of remove) {
      if (r.group) img.launchGroups.delete(r.group);
      if (r.user) img.launchUsers.delete(r.user);
    }
    return { return: true };
  }

  private resetImageAttribute(region: string, p: QueryObject): Record<string, XmlValue> {
    const img = this.image(region, str(p, 'ImageId') ?? '');
    const attr = str(p, 'Attribute');
    if (attr !== 'launchPermission') {
      throw new Ec2Error('InvalidParameterValue', `Only launchPermission can be reset, not ${attr}`);
    }
    img.launchGroups.clear();
    img.launchUsers.clear();
    return { return: true };
  }

  private enableImageDeprecation(region: string, p: QueryObject): Record<string, XmlValue> {
    const img = this.image(region, str(p, 'ImageId') ?? '');
    const at = Date.parse(str(p, 'DeprecateAt') ?? '');
    const now = this.now();
    if (Number.isNaN(at)) throw new Ec2Error('InvalidParameterValue', 'DeprecateAt is not a valid date');
    if (at <= now) throw new Ec2Error('InvalidParameterValue', 'DeprecateAt must be in the future');
    const isPublic = img.launchGroups.has('all');
    // public AMIs: at most 2 years after the image's creation date; others: 10 years from now
    const limit = isPublic ? img.createdAt + 2 * 365 * DAY : now + 10 * 365 * DAY;
    if (at > limit) {
      throw new Ec2Error(
        'InvalidParameterValue',
        isPublic
          ? 'The deprecation time of a public AMI cannot be more than 2 years after its creation date'
          : 'The deprecation time cannot be more than 10 years in the future',
      );
    }
    // AWS rounds up to the next minute
    const rounded = Math.ceil(at / 60_000) * 60_000;
    img.deprecationTime = new Date(rounded).toISOString().replace('.000Z', 'Z');
    return { return: true };
  }

  private deregisterImage(region: string, p: QueryObject): Record<string, XmlValue> {
    const id = str(p, 'ImageId') ?? '';
    this.image(region, id);
    this.region(region).images.delete(id);
    return { return: true };
  }
}

/** Start an emulator listening on host:port (port 0 = any free port). */
export async function startEc2Emulator(opts: Ec2EmulatorOptions = {}): Promise<Ec2Emulator> {
  const emu = new Ec2Emulator(opts);
  await emu.listen();
  return emu;
}
