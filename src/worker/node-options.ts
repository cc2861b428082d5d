/**
 * Node flags for worker processes (`espresso start`, docker-compose, the benchmark). A capped old
 * generation makes V8 collect garbage instead of growing: the live set is small because chunk files
 * are streamed, so without the cap RSS only measures how lazy the GC is. 128 MB holds dozens of
 * concurrent chunk updates (about 2 MB each).
 */
export const WORKER_NODE_FLAGS = ['--max-old-space-size=128'];
