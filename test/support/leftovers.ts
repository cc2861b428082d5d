// Every process the test run starts carries ESPRESSO_TEST_RUN in its environment (children inherit
// it, and so do their children, even once orphaned). At the end of the run, any such process still
// alive is a leak: the root hook kills it and fails the run, naming it.
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';

export const TEST_RUN_VARIABLE = 'ESPRESSO_TEST_RUN';

/** Tags this process's environment, so everything it starts from now on carries the tag. */
export function tagTestRun(): string {
  process.env[TEST_RUN_VARIABLE] ??= randomBytes(8).toString('hex');
  return process.env[TEST_RUN_VARIABLE]!;
}

export interface Leftover {
  pid: number;
  command: string;
}

/** Live processes (other than this one) whose environment carries the tag; [] where /proc is missing. */
export function taggedProcesses(tag = process.env[TEST_RUN_VARIABLE]): Leftover[] {
  if (!tag) return [];
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid);
  } catch {
    return [];
  }
  const found: Leftover[] = [];
  for (const pid of pids) {
    try {
      const environ = readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0');
      if (!environ.includes(`${TEST_RUN_VARIABLE}=${tag}`)) continue;
      // A zombie is gone already, only not yet collected by its parent.
      if (/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'latin1'))) continue;
      const command = readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0').join(' ').trim();
      found.push({ pid: Number(pid), command });
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return found;
}

/**
 * Waits up to `graceMs` for tagged processes to end; kills what is left and returns it, so the
 * caller can fail naming each.
 */
export async function reapLeftovers(
  graceMs = 5_000,
  tag = process.env[TEST_RUN_VARIABLE],
): Promise<Leftover[]> {
  const deadline = Date.now() + graceMs;
  let left = taggedProcesses(tag);
  while (left.length && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    left = taggedProcesses(tag);
  }
  for (const { pid } of left) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  return left;
}
