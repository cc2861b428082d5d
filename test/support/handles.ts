// The suite must end by itself (no mocha --exit): once the last root hook is done, nothing may keep
// the event loop alive. Whatever still does after a grace period is a leak, named here so it can be
// found and closed (a server never closed, a socket, a child never waited on, a timer).
import type { ChildProcess } from 'node:child_process';
import { Server as NetServer, Socket } from 'node:net';

/** What one handle is, in terms a reader can trace back to the test that opened it. */
export function describeHandle(handle: unknown): string {
  if (handle instanceof NetServer) {
    const address = handle.address();
    return `server listening on ${typeof address === 'string' ? address : `${address?.address}:${address?.port}`}`;
  }
  if (handle instanceof Socket)
    return `socket ${handle.localAddress ?? '?'}:${handle.localPort ?? '?'} -> ${handle.remoteAddress ?? '?'}:${handle.remotePort ?? '?'}`;
  if (isChildProcess(handle)) return `child process ${handle.pid}: ${handle.spawnargs.join(' ')}`;
  const name = (handle as { constructor?: { name?: string } })?.constructor?.name ?? typeof handle;
  return `${name} handle`;
}

/**
 * The handles, requests and timers that keep this process alive, described; stdio is not counted
 * (the process ends with it open). Node names no timer, only counts them.
 */
export function liveHandles(): string[] {
  const stdio = new Set<unknown>([process.stdin, process.stdout, process.stderr]);
  const active = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
  const handles = active
    .filter((h) => !stdio.has(h))
    .filter((h) => (h as { hasRef?: () => boolean }).hasRef?.() ?? true)
    .map(describeHandle);
  const requests = (process as unknown as { _getActiveRequests(): unknown[] })
    ._getActiveRequests()
    .map((r) => `pending ${(r as { constructor?: { name?: string } })?.constructor?.name ?? 'request'}`);
  const timers = process.getActiveResourcesInfo().filter((r) => r === 'Timeout' || r === 'Immediate');
  return [
    ...handles,
    ...requests,
    ...(timers.length ? [`${timers.length} timer(s) still set (setTimeout/setInterval/setImmediate)`] : []),
  ];
}

/**
 * Arms a check that fires only if the process is still alive `graceMs` from now (its own timer does
 * not keep it alive): it names every live handle and exits with status 1.
 */
export function failIfStillAliveAfter(graceMs: number): void {
  setTimeout(() => {
    const left = liveHandles();
    process.stderr.write(
      `\nThe test run did not end by itself ${graceMs / 1000} s after its last hook; still open:\n${
        left.length
          ? left.map((l) => `  ${l}`).join('\n')
          : '  (no handle visible to Node: a native resource)'
      }\n`,
    );
    // mocha without --exit sets the exit status from its failures in an 'exit' listener; this one,
    // added later, runs after it.
    process.on('exit', () => (process.exitCode = 1));
    process.exit(1);
  }, graceMs).unref();
}

function isChildProcess(handle: unknown): handle is ChildProcess {
  return typeof handle === 'object' && handle !== null && 'spawnargs' in handle && 'pid' in handle;
}
