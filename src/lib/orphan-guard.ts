/**
 * Children of `espresso start` exit when their supervisor is gone (e.g. it was SIGKILLed), so no
 * worker or web server outlives it. Runs only when started by the supervisor.
 */
export function exitWhenSupervisorDies(onOrphaned: () => void): void {
  const supervisor = Number(process.env.ESPRESSO_SUPERVISOR_PID);
  if (!supervisor) return;
  const timer = setInterval(() => {
    if (process.ppid === supervisor) return;
    clearInterval(timer);
    onOrphaned();
  }, 1_000);
  timer.unref();
}
