import { createHash, timingSafeEqual } from 'node:crypto';

/** Constant-time string comparison that does not leak the lengths (digests of equal size are compared). */
export function constantTimeEqual(a: string, b: string): boolean {
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(a), digest(b));
}
