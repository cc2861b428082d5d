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
