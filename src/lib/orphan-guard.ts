/**
 * Children of `espresso start` exit when their supervisor is gone (e.g. it was SIGKILLed), so no
 * worker or web server outlives it. Runs only when started by the supervisor.
 */
export function exitWhenSupervisorDies(onOrphaned: () => void): void {
  if (!process.env.ESPRESSO_SUPERVISOR_PID) return;
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) onOrphaned();
  }, 1_000).unref();
}
