/**
 * Cleanup on SIGINT / SIGTERM / SIGHUP: what a run creates for a moment (a staging directory, the work-directory
 * lock) is registered here and removed when the run is interrupted, before the process ends with that signal.
 * Cleanups are synchronous (nothing asynchronous can be awaited in a signal handler that must end the process).
 * After SIGKILL nothing runs: the next run removes such leftovers itself (stale staging directories, a lock
 * whose holder is gone).
 */
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

const cleanups = new Set<() => void>();
let installed = false;

function handle(signal: NodeJS.Signals): void {
  for (const fn of [...cleanups].reverse()) {
    try {
      fn();
    } catch {
      // best effort: the next run removes what is left
    }
  }
  cleanups.clear();
  for (const s of SIGNALS) process.removeListener(s, handle);
  installed = false;
  // end the way the signal would have ended us (exit status 128 + signal number)
  process.kill(process.pid, signal);
}

/** Run `fn` if the process is interrupted; call the returned function once it is no longer needed. */
export function onInterrupt(fn: () => void): () => void {
  cleanups.add(fn);
  if (!installed) {
    installed = true;
    for (const s of SIGNALS) process.on(s, handle);
  }
  return () => {
    cleanups.delete(fn);
    if (cleanups.size === 0 && installed) {
      for (const s of SIGNALS) process.removeListener(s, handle);
      installed = false;
    }
  };
}
