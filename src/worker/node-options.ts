/**
 * Node flags for worker processes (`espresso start`, docker-compose, the benchmark). A capped old
 * generation makes V8 collect garbage instead of growing: the live set is small because chunk files
 * are streamed, so without the cap RSS only measures how lazy the GC is. The Temporal SDK sizes its
 * workflow cache from the heap (about 600 workflows per GB above 200 MB): 768 MB keeps about 350
 * runs cached, well above the daily run's default of 50 at once, so no run is replayed from its history on every
 * task; chunk updates need about 2 MB each.
 */
export const WORKER_NODE_FLAGS = ['--max-old-space-size=768'];

/**
 * Environment for worker processes, set by whatever starts them (glibc reads it at process start).
 * Two malloc arenas instead of glibc's default of eight per core: the Temporal core's threads, the
 * workflow thread and libuv's pool each kept freed memory in an arena of their own, about 25 MB of
 * a worker's peak in a 1,000,000-contact run (docs/performance.md), at no measured cost in time.
 */
export const WORKER_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2' };

/** WORKER_ENV's variables that the environment does not set already (an operator's own win). */
export function workerEnv(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  return Object.fromEntries(Object.entries(WORKER_ENV).filter(([key]) => env[key] === undefined));
}
