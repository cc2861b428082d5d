// Guessing the admin credentials or the codec token costs time: per client, the first failures
// are free, then each failure locks the client out for twice as long as the one before (1 s, 2 s,
// 4 s ... up to 15 minutes), and a locked-out client gets 429 without its credentials being
// checked at all. A success clears the client's record. The records live in this web server's
// memory: with several web servers behind one address, each allows its own share (docs/security.md).

export interface FailedAuthOptions {
  /** Failures allowed before lock-outs start. */
  free?: number;
  /** A client whose last failure is older than this starts afresh. */
  forgetAfterMs?: number;
  /** The longest lock-out. */
  maxLockMs?: number;
  /** How many clients are remembered (the oldest is forgotten first). */
  maxClients?: number;
  now?: () => number;
}

interface ClientRecord {
  failures: number;
  last: number;
  lockedUntil: number;
}

export class FailedAuthGuard {
  private readonly clients = new Map<string, ClientRecord>();
  private readonly free: number;
  private readonly forgetAfterMs: number;
  private readonly maxLockMs: number;
  private readonly maxClients: number;
  private readonly now: () => number;

  constructor(options: FailedAuthOptions = {}) {
    this.free = options.free ?? 10;
    this.forgetAfterMs = options.forgetAfterMs ?? 15 * 60_000;
    this.maxLockMs = options.maxLockMs ?? 15 * 60_000;
    this.maxClients = options.maxClients ?? 10_000;
    this.now = options.now ?? Date.now;
  }

  /** How long the client must wait before its credentials are checked again (0: now). */
  waitMs(client: string): number {
    const record = this.current(client);
    return record ? Math.max(0, record.lockedUntil - this.now()) : 0;
  }

  /** Counts a failure; returns the lock-out it starts (0 while failures are still free). */
  failed(client: string): number {
    const now = this.now();
    const record = this.current(client) ?? { failures: 0, last: now, lockedUntil: 0 };
    record.failures++;
    record.last = now;
    const over = record.failures - this.free;
    const lockMs = over > 0 ? Math.min(this.maxLockMs, 1000 * 2 ** Math.min(over - 1, 30)) : 0;
    record.lockedUntil = now + lockMs;
    this.clients.delete(client); // re-inserted last: the Map stays in order of last failure
    this.clients.set(client, record);
    if (this.clients.size > this.maxClients) this.clients.delete(this.clients.keys().next().value!);
    return lockMs;
  }

  succeeded(client: string): void {
    this.clients.delete(client);
  }

  private current(client: string): ClientRecord | undefined {
    const record = this.clients.get(client);
    if (record && record.last + this.forgetAfterMs < this.now() && record.lockedUntil <= this.now()) {
      this.clients.delete(client);
      return undefined;
    }
    return record;
  }
}
