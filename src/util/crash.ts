/**
 * Fault injection for crash-safety tests: when the environment variable CIB_CRASH_AT names this point, the
 * process kills itself with SIGKILL right here — no cleanup, no finally blocks, exactly like a power cut.
 * Points: upload:after-image, metadata:after-local-write, metadata:after-store, aws-import:after-bucket,
 * aws-import:after-upload, aws-import:after-task, aws-import:after-snapshot.
 */
export function crashPoint(name: string, env: NodeJS.ProcessEnv = process.env): void {
  if (env.CIB_CRASH_AT === name) process.kill(process.pid, 'SIGKILL');
}
