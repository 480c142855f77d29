import type { Logger } from 'pino';
import type { ConfigIssue } from '../config/resolve.js';
import type { ImageConfig } from '../config/types.js';
import type { Image, ImageTags } from '../state/image.js';

/** What a plugin can do beyond building and uploading. */
export type CloudAction = 'import' | 'publish' | 'delete' | 'list';

export interface CloudContext {
  readonly log: Logger;
  /** get credentials from the identity broker instead of the SDK's default chain */
  readonly useBroker: boolean;
  readonly env: NodeJS.ProcessEnv;
  readonly workDir: string;
  /**
   * Optional per-run cache the plugins keep sessions in (SDK clients, broker credentials), so every image of a
   * run shares them. Create one Map per run; never persisted. Without it each call starts a fresh session.
   */
  readonly cache?: Map<string, unknown>;
}

export interface ImportResult {
  import_id: string;
  import_region: string;
  /** ISO timestamp */
  imported: string;
}

export interface RegionFailure {
  region: string;
  error: string;
  /** e.g. 'ResourceLimitExceeded' */
  code?: string;
}

export interface PublishResult {
  /** region -> image id, for every region the image is now in */
  artifacts: Record<string, string>;
  /** regions where publishing failed; the step exits non-zero when any */
  failures: RegionFailure[];
  /** ISO timestamp, set when at least one region succeeded and none failed */
  published?: string;
  /** things the release engineer should know that did not fail the publish (e.g. deprecation capped) */
  warnings?: string[];
  /** set when publishing had to import the image again (source missing or renamed): store it like an import */
  reimported?: ImportResult;
}

/** An image as the cloud knows it (for prune and for finding imports). */
export interface CloudImage {
  region: string;
  id: string;
  name: string;
  tags: Record<string, string>;
  public: boolean;
  created?: string;
  lastLaunched?: string;
  snapshotIds: string[];
  /**
   * 'snapshot' for a snapshot left without an image (id is the snapshot id); 'import-bucket' for a temporary
   * import bucket (or import/ directory) of a killed run (id is the bucket, or bucket/prefix); 'image' when absent
   */
  kind?: 'image' | 'snapshot' | 'import-bucket';
  /** left behind by a killed run (its process is gone or it is older than the import timeout): always removed */
  leftover?: boolean;
}

/** What the boot test tells a guest about itself (the same data however the cloud serves it). */
export interface BootTestInstanceData {
  instanceId: string;
  hostname: string;
  /** the test's own public key, for the login user */
  sshPublicKey: string;
  /** user-data in the form the image's bootstrap runs it */
  userData: string;
}

/**
 * A cloud's instance-metadata service as the boot test stands it in: an HTTP handler the guest reaches at
 * address:port (QEMU's user networking forwards it to a local server of the tool).
 */
export interface InstanceMetadataService {
  /** recorded as the test's datasource, e.g. "aws-imdsv2" */
  readonly name: string;
  readonly address: string;
  readonly port: number;
  handle(req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse): void;
  /** "METHOD path status" of every request, for the test's log */
  requests(): string[];
}

/** One plugin per cloud, in clouds/<name>/index.ts, registered in clouds/index.ts. */
export interface CloudPlugin {
  readonly name: string;
  readonly actions: ReadonlySet<CloudAction>;
  /**
   * Check the settings this plugin reads, for one resolved variant of its cloud (run at `configs`, so that
   * nothing that can be checked from the configuration fails hours later). Pure and fast: no I/O.
   */
  checkConfig?(config: ImageConfig): readonly ConfigIssue[];
  /** the newest image imported for this variant (by project, image_key tags), if any */
  latestImported?(image: Image, ctx: CloudContext): Promise<ImageTags | undefined>;
  importImage?(image: Image, ctx: CloudContext): Promise<ImportResult>;
  publishImage?(image: Image, ctx: CloudContext): Promise<PublishResult>;
  deleteImage?(image: Image, importId: string, ctx: CloudContext): Promise<void>;
  listImages?(filter: { project: string }, ctx: CloudContext): Promise<CloudImage[]>;
  deleteCloudImage?(img: CloudImage, ctx: CloudContext): Promise<void>;
  regionUrl?(image: Image, region: string, imageId: string): string;
  launchUrl?(image: Image, region: string, imageId: string): string;
  /** the boot test serves instance data through this service instead of a NoCloud seed (e.g. AWS IMDS) */
  bootTestMetadata?(data: BootTestInstanceData): InstanceMetadataService;
}
