/**
 * The contact ids an export has written, so a listing that repeats a contact (offset paging while
 * the list changes) never gives it a second value. 64 bits of hash per id in typed arrays (outside
 * the JS heap): about 16 MB for a million contacts. Two ids sharing both 32-bit hashes would drop
 * one of them for the day (it is still empty tomorrow); the chance is about n^2 / 2^65.
 */
export class SeenIds {
  private hi: Uint32Array;
  private lo: Uint32Array;
  private count = 0;

  constructor(capacity = 1 << 14) {
    this.hi = new Uint32Array(capacity);
    this.lo = new Uint32Array(capacity);
  }

  get size(): number {
    return this.count;
  }

  /** Adds the id; false when it was there already. */
  add(id: string): boolean {
    const [h1, h2] = hash(id);
    if ((this.count + 1) * 2 > this.hi.length) this.grow();
    return this.insert(h1, h2);
  }

  has(id: string): boolean {
    const [h1, h2] = hash(id);
    const mask = this.hi.length - 1;
    for (let slot = h1 & mask; this.lo[slot] !== 0; slot = (slot + 1) & mask) {
      if (this.hi[slot] === h1 && this.lo[slot] === h2) return true;
    }
    return false;
  }

  private insert(h1: number, h2: number): boolean {
    const mask = this.hi.length - 1;
    for (let slot = h1 & mask; ; slot = (slot + 1) & mask) {
      if (this.lo[slot] === 0) {
        this.hi[slot] = h1;
        this.lo[slot] = h2;
        this.count++;
        return true;
      }
      if (this.hi[slot] === h1 && this.lo[slot] === h2) return false;
    }
  }

  private grow(): void {
    const [hi, lo] = [this.hi, this.lo];
    this.hi = new Uint32Array(hi.length * 2);
    this.lo = new Uint32Array(lo.length * 2);
    this.count = 0;
    for (let i = 0; i < hi.length; i++) if (lo[i] !== 0) this.insert(hi[i]!, lo[i]!);
  }
}

/**
 * The ids exports have seen, kept between their parts by one worker: the next part starts within
 * seconds when it comes to this worker (it goes to any worker, and a run may stop), so an entry is
 * dropped after `keepMs`; and at most `maxIds` ids in all, the oldest entries dropped first (about
 * 16 bytes each, outside the JS heap, which the worker's heap cap does not bound). A cache: a part
 * that finds nothing reads the ids from the chunk files.
 */
export class KeptSeenIds {
  /** A Map keeps the order entries were set in: the oldest first. */
  private readonly entries = new Map<string, { chunkCount: number; seen: SeenIds }>();

  constructor(private readonly limits: { maxIds: number; keepMs: number }) {}

  /** Keeps `kept` under `key` (unless it alone is over the bound), dropping the oldest to fit it. */
  keep(key: string, kept: { chunkCount: number; seen: SeenIds }): void {
    if (kept.seen.size > this.limits.maxIds) return;
    this.entries.delete(key);
    let held = kept.seen.size;
    for (const other of this.entries.values()) held += other.seen.size;
    for (const [oldKey, old] of this.entries) {
      if (held <= this.limits.maxIds) break;
      this.entries.delete(oldKey);
      held -= old.seen.size;
    }
    this.entries.set(key, kept);
    setTimeout(() => this.entries.get(key) === kept && this.entries.delete(key), this.limits.keepMs).unref();
  }

  /** What is kept under `key`, which is dropped: a part takes it once. */
  take(key: string): { chunkCount: number; seen: SeenIds } | undefined {
    const kept = this.entries.get(key);
    this.entries.delete(key);
    return kept;
  }

  /** Ids kept in all. */
  get ids(): number {
    let n = 0;
    for (const { seen } of this.entries.values()) n += seen.size;
    return n;
  }
}

function hash(id: string): [number, number] {
  let h1 = 0x811c9dc5;
  let h2 = 0x9747b28c;
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x01000193);
    h2 = Math.imul(h2 ^ c, 0x5bd1e995);
    h2 ^= h2 >>> 15;
  }
  h1 = (h1 ^ (h1 >>> 16)) >>> 0;
  h2 = Math.imul(h2 ^ (h2 >>> 13), 0xc2b2ae35) >>> 0 || 1; // 0/0 marks an empty slot
  return [h1, h2];
}
