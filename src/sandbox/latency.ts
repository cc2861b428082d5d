import type { SandboxFaults } from './account-settings';

/**
 * One response's added latency: latencyMs, or with latencySigma a log-normal draw of that mean (a
 * long tail, as real APIs have), capped at a minute.
 */
export function drawLatency({
  latencyMs,
  latencySigma,
}: Pick<SandboxFaults, 'latencyMs' | 'latencySigma'>): number {
  if (!latencySigma) return latencyMs;
  const normal = Math.sqrt(-2 * Math.log(1 - Math.random())) * Math.cos(2 * Math.PI * Math.random());
  const mu = Math.log(latencyMs) - (latencySigma * latencySigma) / 2;
  return Math.min(60_000, Math.exp(mu + latencySigma * normal));
}
