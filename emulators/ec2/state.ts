/** The EC2 emulator's resources. Per region, as AWS keeps them; states advance with the clock, lazily. */

export type OptInStatus = 'opt-in-not-required' | 'opted-in' | 'not-opted-in';

export interface EmuRegion {
  name: string;
  optInStatus: OptInStatus;
}

/** 17 regions enabled by default plus three opt-in regions in each state, like a typical account. */
export const DEFAULT_REGIONS: readonly EmuRegion[] = [
  ...[
    'us-east-1',
    'us-east-2',
    'us-west-1',
    'us-west-2',
    'ca-central-1',
    'eu-west-1',
    'eu-west-2',
    'eu-west-3',
    'eu-central-1',
    'eu-north-1',
    'ap-south-1',
    'ap-northeast-1',
    'ap-northeast-2',
    'ap-northeast-3',
    'ap-southeast-1',
    'ap-southeast-2',
    'sa-east-1',
  ].map((name) => ({ name, optInStatus: 'opt-in-not-required' as const })),
  { name: 'ap-east-1', optInStatus: 'opted-in' },
  { name: 'af-south-1', optInStatus: 'not-opted-in' },
  { name: 'me-south-1', optInStatus: 'not-opted-in' },
];

export type Tags = Map<string, string>;

export interface EmuBlockDevice {
  deviceName: string;
  snapshotId?: string;
  volumeSize?: number;
  volumeType?: string;
  encrypted?: boolean;
  kmsKeyId?: string;
  deleteOnTermination?: boolean;
}

export type ImageState = 'pending' | 'available' | 'failed';

export interface EmuImage {
  id: string;
  region: string;
  ownerId: string;
  name: string;
  description?: string;
  createdAt: number;
  /** when a pending image becomes available (or failed) */
  readyAt: number;
  /** set when the image ends up failed instead */
  failure?: { code: string; message: string };
  architecture: string;
  bootMode?: string;
  enaSupport?: boolean;
  sriovNetSupport?: string;
  imdsSupport?: string;
  virtualizationType: string;
  rootDeviceName: string;
  blockDevices: EmuBlockDevice[];
  tags: Tags;
  launchGroups: Set<string>;
  launchUsers: Set<string>;
  deprecationTime?: string;
  lastLaunchedTime?: string;
  sourceImageId?: string;
  sourceRegion?: string;
}

export interface EmuSnapshot {
  id: string;
  region: string;
  ownerId: string;
  description?: string;
  volumeSize: number;
  encrypted: boolean;
  kmsKeyId?: string;
  startedAt: number;
  completedAt: number;
  tags: Tags;
}

export interface EmuImportTask {
  id: string;
  region: string;
  description?: string;
  format: string;
  url?: string;
  bucket?: string;
  key?: string;
  encrypted: boolean;
  kmsKeyId?: string;
  diskImageSize: number;
  volumeSize: number;
  createdAt: number;
  doneAt: number;
  /** a failing import: the ClientError message it ends with */
  failure?: string;
  snapshotId?: string;
  tags: Tags;
}

export function imageState(img: EmuImage, now: number): ImageState {
  if (now < img.readyAt) return 'pending';
  return img.failure ? 'failed' : 'available';
}

export function snapshotState(s: EmuSnapshot, now: number): 'pending' | 'completed' {
  return now < s.completedAt ? 'pending' : 'completed';
}

/** Import task status at `now`: pending for the first 15% of its time, then active with progress. */
export function importStatus(
  t: EmuImportTask,
  now: number,
): { status: string; message?: string; progress?: string } {
  if (now >= t.doneAt) {
    return t.failure ? { status: 'deleted', message: t.failure } : { status: 'completed' };
  }
  const total = Math.max(1, t.doneAt - t.createdAt);
  const frac = (now - t.createdAt) / total;
  if (frac < 0.15) return { status: 'pending', message: 'pending', progress: '0' };
  const stage = frac < 0.4 ? 'validating' : frac < 0.6 ? 'validated' : 'converting';
  return { status: 'active', message: stage, progress: String(Math.min(99, Math.floor(frac * 100))) };
}

export class RegionState {
  readonly images = new Map<string, EmuImage>();
  readonly snapshots = new Map<string, EmuSnapshot>();
  readonly importTasks = new Map<string, EmuImportTask>();
  /** CopyImage ClientToken -> image id (idempotent retries) */
  readonly copyTokens = new Map<string, string>();
  /** the parameters each ClientToken was first used with */
  readonly copyTokenParams = new Map<string, string>();
}
