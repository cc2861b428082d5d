import { dataConverter } from '../src/codec';
import { randomBytes } from 'node:crypto';
import { Worker } from '@temporalio/worker';
import type { ActivityDeps } from '../src/activities/deps';
import { newValue } from '../src/activities/export-listing';
import { saveConnection } from '../src/connect';
import { ProcessorRegistry } from '../src/processors/registry';
import { RefreshLeases } from '../src/processors/refresh-leases';
import { SandboxProcessor } from '../src/processors/sandbox';
import { sandboxAdmin } from '../src/sandbox/admin';
import type { SandboxStats } from '../src/sandbox/server';
import { sandboxOAuthConnection } from '../src/sandbox/consent';
import type { ContactUpdate } from '../src/processors/types';
import { runFiles } from '../src/runs/files';
import { createStores } from '../src/storage';
import { TASK_QUEUE } from '../src/temporal/constants';
import { configurationSyncWorkflow } from '../src/workflows';
import { createPerContactActivities } from './per-contact-activities';
import { cpuSeconds, type Stack } from './stack';

const RUN_DATE = '2026-01-01';
type Account = { id: string; apiKey: string };
type Pacing = { rps: number; concurrency: number };

export function benchDeps(stack: Stack, pacing: Pacing): ActivityDeps & { processor: SandboxProcessor } {
  const stores = createStores(stack.config.storage);
  const processor = new SandboxProcessor(
    { secrets: stores.secrets, refreshLeases: new RefreshLeases(stores.blobs) },
    {
      url: stack.sandbox.url,
      rateLimit: { requests: pacing.rps, perMs: 1000 },
      concurrency: pacing.concurrency,
    },
  );
  return { stores, processor, processors: new ProcessorRegistry([processor]), alerts: async () => undefined };
}

/**
 * A new Sandbox list of `contacts` contacts and a configuration connected to it, with the account's
 * API key or (`oauth`) through the Sandbox's OAuth consent.
 */
export async function prepare(
  stack: Stack,
  deps: ReturnType<typeof benchDeps>,
  account: Account,
  contacts: number,
  options: { oauth?: boolean } = {},
) {
  const listId = `list_${contacts}_${randomBytes(3).toString('hex')}`;
  const seeded = await sandboxAdmin(stack.sandbox, `/accounts/${account.id}/lists/${listId}/seed`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ contacts }),
  });
  if (!seeded.ok) throw new Error(`seeding failed: ${seeded.status}`);
  const { credentials, account: info } = options.oauth
    ? await sandboxOAuthConnection(stack.sandbox, deps.processor, account.id)
    : await deps.processor.connectWithApiKey(account.apiKey);
  const { configuration } = await saveConnection(deps, {
    esp: 'sandbox',
    credentials,
    account: info,
    listId,
  });
  await deps.processor.maintain({ ...configuration, apiBaseUrl: undefined });
  return { configuration, listId };
}

/** An answer of the Sandbox's admin API (`path` under /_sandbox). */
export async function sandboxJson<T>(stack: Stack, path: string): Promise<T> {
  return (await (await sandboxAdmin(stack.sandbox, path)).json()) as T;
}

/** `workerEnv`: what else the worker is told about the account's limits (bench/limits.ts). */
export async function pipeline(
  stack: Stack,
  contacts: number,
  pacing: Pacing,
  account: Account,
  workerEnv: NodeJS.ProcessEnv = {},
) {
  const deps = benchDeps(stack, pacing);
  const { configuration, listId } = await prepare(stack, deps, account, contacts);
  const worker = await stack.startWorker(pacing, workerEnv);
  await sandboxAdmin(stack.sandbox, '/stats/reset', { method: 'POST' });
  const workflowId = `bench/${listId}`;
  const startedAt = Date.now();
  const cpu = cpuMeter({ worker: worker.pid, ...stack.pids() });
  const started = performance.now();
  const result = await stack.env.client.workflow.execute(configurationSyncWorkflow, {
    taskQueue: TASK_QUEUE,
    workflowId,
    args: [{ configurationId: configuration.id, runDate: RUN_DATE, mode: 'full' }],
  });
  const seconds = (performance.now() - started) / 1000;
  const cpuUsed = cpu();
  const peakWorkerRssMb = await worker.stop();
  if (result.status !== 'completed' || result.updated !== contacts) {
    throw new Error(
      `pipeline run ${workflowId} ended ${result.status} with ${result.updated}/${contacts} updated`,
    );
  }
  const stats = await sandboxJson<Record<string, SandboxStats>>(stack, '/stats');
  const espStats = stats[account.id];
  await verifyAgainstChunks(stack, deps, configuration.id, account.id, listId, contacts);
  return {
    contacts,
    seconds: round(seconds),
    contactsPerSecond: Math.round(contacts / seconds),
    maxHistoryEvents: await maxHistoryEvents(stack, workflowId),
    peakWorkerRssMb,
    requests: espStats?.requests ?? 0,
    responses429: espStats?.byStatus['429'] ?? 0,
    /** From the ESP's first to its last request of the run: the span the rate limit applies to. */
    requestSeconds: espStats ? (espStats.lastAt - espStats.firstAt) / 1000 : seconds,
    /** Requests per kind the ESP answered (not 429): what the run needed. */
    needed: espStats?.needed ?? { listing: 0, writing: 0, other: 0 },
    /** From the run's start to its first ESP write. */
    firstWriteSeconds: espStats?.firstWriteAt ? (espStats.firstWriteAt - startedAt) / 1000 : undefined,
    /** CPU seconds each process used from the run's start to its end. */
    cpuSeconds: cpuUsed,
  };
}

/** The machine's limit: list and update through the same processor, no Temporal, no blob store. */
export async function direct(stack: Stack, contacts: number, pacing: Pacing, account: Account) {
  const deps = benchDeps(stack, pacing);
  const { configuration, listId } = await prepare(stack, deps, account, contacts);
  const target = { ...configuration, apiBaseUrl: undefined };
  const group = deps.processor.descriptor.maxBatchSize * pacing.concurrency;
  const cpu = cpuMeter({ loop: process.pid, ...stack.pids() });
  const started = performance.now();
  const inFlight = new Set<Promise<unknown>>();
  let pending: ContactUpdate[] = [];
  let updated = 0;
  const send = (updates: ContactUpdate[]) => {
    const p = deps.processor.writeValues(target, updates).then((results) => {
      updated += results.filter((r) => r.status === 'updated').length;
    });
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  };
  let cursor: string | undefined;
  do {
    const page = await deps.processor.listPage(target, cursor, 'full');
    for (const c of page.contacts) pending.push({ contactId: c.contactId, value: newValue() });
    if (pending.length >= group) {
      send(pending);
      pending = [];
      while (inFlight.size >= 2) await Promise.race(inFlight);
    }
    cursor = page.nextCursor;
  } while (cursor);
  if (pending.length) send(pending);
  await Promise.all(inFlight);
  const seconds = (performance.now() - started) / 1000;
  const cpuUsed = cpu();
  const summary = await sandboxJson<{ withValue: number; conflicting: number }>(
    stack,
    `/accounts/${account.id}/lists/${listId}/summary?field=lcee`,
  );
  if (updated !== contacts || summary.withValue !== contacts || summary.conflicting !== 0) {
    throw new Error(
      `direct: ${updated} updated, ${summary.withValue} with a value, ${summary.conflicting} conflicting`,
    );
  }
  return { seconds: round(seconds), contactsPerSecond: Math.round(contacts / seconds), cpuSeconds: cpuUsed };
}

/**
 * Starts counting the CPU time of the named processes; the returned function gives what each has
 * used since, in seconds (a process not there, such as the cluster's Sandbox, is left out).
 */
function cpuMeter<K extends string>(pids: Record<K, number | undefined>): () => Partial<Record<K, number>> {
  const names = Object.keys(pids) as K[];
  const before = new Map(names.map((name) => [name, cpuSeconds(pids[name])]));
  return () => {
    const used: Partial<Record<K, number>> = {};
    for (const name of names) {
      const [start, end] = [before.get(name), cpuSeconds(pids[name])];
      if (start !== undefined && end !== undefined) used[name] = round(end - start);
    }
    return used;
  };
}

/** The old design's shape: one activity per contact (in-process worker, bench-only workflow). */
export async function perContact(stack: Stack, contacts: number, pacing: Pacing, account: Account) {
  const deps = benchDeps(stack, pacing);
  const { configuration, listId } = await prepare(stack, deps, account, contacts);
  const taskQueue = 'bench-per-contact';
  const worker = await Worker.create({
    connection: stack.env.nativeConnection,
    taskQueue,
    workflowsPath: require.resolve('./per-contact-workflow'),
    dataConverter: dataConverter(stack.env.payloadKeys),
    activities: createPerContactActivities(deps),
  });
  const started = performance.now();
  const done = await worker.runUntil(
    stack.env.client.workflow.execute('perContactWorkflow', {
      taskQueue,
      workflowId: `bench/per-contact/${listId}`,
      args: [{ configurationId: configuration.id, window: pacing.concurrency }],
    }) as Promise<number>,
  );
  const seconds = (performance.now() - started) / 1000;
  if (done !== contacts) throw new Error(`per-contact: ${done}/${contacts} updated`);
  return { contacts, seconds: round(seconds), contactsPerSecond: Math.round(contacts / seconds) };
}

/** Every contact holds exactly its chunk file value, and none was ever written two values. */
export async function verifyAgainstChunks(
  stack: Stack,
  deps: ReturnType<typeof benchDeps>,
  configurationId: string,
  accountId: string,
  listId: string,
  contacts: number,
) {
  const expected = new Map<string, string>();
  for (const key of await deps.stores.blobs.list(runFiles.prefix(configurationId, RUN_DATE))) {
    if (!/contacts-\d+\.jsonl$/.test(key)) continue;
    for await (const line of deps.stores.blobs.readLines(key)) {
      const { contactId, value } = JSON.parse(line) as { contactId: string; value: string };
      expected.set(contactId, value);
    }
  }
  const res = await sandboxAdmin(stack.sandbox, `/accounts/${accountId}/lists/${listId}/history?field=lcee`);
  const text = await res.text();
  let matching = 0;
  let conflicting = 0;
  for (const line of text.split('\n')) {
    if (!line) continue;
    const h = JSON.parse(line) as { contactId: string; current: string | null; values: string[] };
    if (h.values.length > 1) conflicting++;
    if (expected.get(h.contactId) === h.current && h.values.length === 1) matching++;
  }
  const lost = contacts - matching;
  if (expected.size !== contacts || lost !== 0 || conflicting !== 0) {
    throw new Error(
      `VERIFICATION FAILED for ${listId}: ${expected.size} chunk lines for ${contacts} contacts, ${lost} contacts without their chunk value, ${conflicting} written two values`,
    );
  }
}

async function maxHistoryEvents(stack: Stack, workflowIdPrefix: string): Promise<number> {
  let max = 0;
  for await (const wf of stack.env.client.workflow.list({
    query: `WorkflowId STARTS_WITH '${workflowIdPrefix}'`,
  })) {
    max = Math.max(max, wf.historyLength);
  }
  return max;
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
