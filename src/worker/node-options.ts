/**
 * Node flags for worker processes (`espresso start`, docker-compose, the benchmark). A capped old
 * generation makes V8 collect garbage instead of growing: the live set is small because chunk files
 * are streamed, so without the cap RSS only measures how lazy the GC is. The Temporal SDK sizes its
 * workflow cache from the heap (about 600 workflows per GB above 200 MB): 768 MB keeps about 350
 * runs cached, well above the daily run's default of 50 at once, so no run is replayed from its history on every
 * task; chunk updates need about 2 MB each.
 */
export const WORKER_NODE_FLAGS = ['--max-old-space-size=768'];
