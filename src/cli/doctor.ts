import { randomBytes } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { tsToMs } from '@temporalio/common/lib/time';
import type { SelfCheckResult } from '../activities/self-check';
import { dataConverter, EncryptionCodec, loadPayloadKeys, payloadKeysSource } from '../codec';
import { describeRing } from '../codec/ring-edits';
import { loadConfig, type AppConfig } from '../config';
import { withTimeout } from '../lib/timeout';
import { sandboxAdmin, sandboxAdminToken } from '../sandbox/admin';
import { createStores } from '../storage';
import { keyName, LocalSecretStore } from '../storage/local-secret-store';
import { SCHEDULE_ID, TASK_QUEUE, workflowIds } from '../temporal/constants';
import { describeKeyUse, describeScheduleRaw, scheduleKeyUse } from '../temporal/payload-key-use';
import { missingSearchAttributes } from '../temporal/search-attributes';
import { describeTemporalCli, resolveMotoServer, resolveTemporalCli } from '../tools';
import { describeOlderKeys, REKEY_SECRETS_COMMAND } from './keys';

/** What a check found: it works, or it works but needs attention (a warning fails nothing). */
type Check = { name: string; run: () => Promise<string | { warning: string }> };

/** Runs every check and prints one line each: what works, or what is wrong. Returns true when none fails. */
export async function doctor(print: (line: string) => void = console.log): Promise<boolean> {
  let config: AppConfig;
  try {
    config = loadConfig();
    print('ok    configuration: environment is valid');
  } catch (err) {
    print(`FAIL  configuration: ${(err as Error).message.replace(/\n\s*/g, ' ')}`);
    return false;
  }
  const stores = createStores(config.storage);
  let connection: Connection | undefined;
  // Read once: the payload-keys check and the worker check both need the ring.
  let payloadKeys: ReturnType<typeof loadPayloadKeys> | undefined;
  const keys = () => (payloadKeys ??= loadPayloadKeys(config.payloadKeys, stores.secrets));
  const temporal = async () =>
    (connection ??= await Connection.connect({ address: config.temporal.address, connectTimeout: 3_000 }));
  const espressoClient = async () =>
    new Client({
      connection: await temporal(),
      namespace: config.temporal.namespace,
      dataConverter: dataConverter(await keys()),
    });

  const checks: Check[] = [
    {
      name: 'temporal cli',
      run: async () => {
        const cli = resolveTemporalCli(config.temporal.cliPath);
        if (cli.source === 'sdk-download')
          throw new Error(`${describeTemporalCli(cli)}; run \`npm run bootstrap\``);
        return describeTemporalCli(cli);
      },
    },
    {
      name: 'moto server',
      run: async () => {
        const moto = resolveMotoServer();
        if (!moto) throw new Error('not found (only the AWS adapter tests need it); run `npm run bootstrap`');
        return `${moto} (used by the AWS adapter tests)`;
      },
    },
    {
      name: 'temporal',
      run: async () => {
        const info = await (await temporal()).workflowService.getSystemInfo({});
        return `reachable at ${config.temporal.address} (server ${info.serverVersion || 'unknown version'})`;
      },
    },
    {
      name: 'search attributes',
      run: async () => {
        const missing = await missingSearchAttributes(
          (await temporal()).operatorService,
          config.temporal.namespace,
        );
        if (missing.length) {
          throw new Error(
            `missing ${missing.map((k) => k.name).join(', ')}: start the worker, which registers them`,
          );
        }
        return `registered in namespace ${config.temporal.namespace}`;
      },
    },
    {
      name: 'blob store',
      run: async () => {
        const key = `health/doctor-${randomBytes(6).toString('hex')}`;
        await stores.blobs.put(key, 'ok');
        await stores.blobs.get(key);
        await stores.blobs.delete(key);
        return `writable (${stores.blobs.description})`;
      },
    },
    {
      name: 'secret store',
      run: async () => {
        const id = `health/doctor-${randomBytes(6).toString('hex')}`;
        await stores.secrets.put(id, 'ok');
        if ((await stores.secrets.get(id)) !== 'ok') throw new Error('read back a different value');
        await stores.secrets.delete(id);
        return `writable (${stores.secrets.description})`;
      },
    },
    ...(stores.secrets instanceof LocalSecretStore ? [secretKeysCheck(stores.secrets)] : []),
    {
      name: 'payload keys',
      run: async () => {
        const ring = await keys();
        const from = payloadKeysSource(config.payloadKeys, stores.secrets);
        return `${ring.keys.size} key(s) from ${from}; new payloads encrypted with ${ring.current}`;
      },
    },
    {
      name: 'schedule',
      run: async () => {
        const ring = await keys();
        const client = await espressoClient();
        const schedule = await describeScheduleRaw(client);
        if (!schedule) {
          return {
            warning: `${SCHEDULE_ID} does not exist: no daily runs until \`npm run espresso -- schedule apply\``,
          };
        }
        const uses = await scheduleKeyUse(client, schedule);
        const missing = uses.filter((u) => !ring.keys.has(u.keyId));
        if (missing.length > 0) {
          throw new Error(
            `${SCHEDULE_ID} cannot be decoded with the payload keys: it holds ${describeKeyUse(missing)}, which the ring (${describeRing(ring)}) lacks; every run it starts fails until \`npm run espresso -- schedule apply\` recreates it`,
          );
        }
        try {
          // A key of the right id but other material fails here, not at the next daily run.
          await new EncryptionCodec(ring).decode(
            schedule.schedule?.action?.startWorkflow?.input?.payloads ?? [],
          );
        } catch (err) {
          throw new Error(`${SCHEDULE_ID}'s action input: ${(err as Error).message}`);
        }
        const older = uses.filter((u) => u.keyId !== ring.current);
        if (older.length > 0) {
          return {
            warning: `${SCHEDULE_ID} holds ${describeKeyUse(older)}, an older key: run \`npm run espresso -- schedule apply\` before retiring it`,
          };
        }
        return `${SCHEDULE_ID}: everything it stores is under ${ring.current}, the current payload key`;
      },
    },
    {
      name: 'sandbox esp',
      run: async () => {
        if (!config.sandbox.enabled) return 'disabled (ESPRESSO_SANDBOX_ENABLED=false)';
        const admin = { url: config.sandbox.url, adminToken: await sandboxAdminToken(config.sandbox) };
        let res: Response;
        try {
          res = await sandboxAdmin(admin, '/state', { signal: AbortSignal.timeout(3_000) });
        } catch {
          throw new Error(`not reachable at ${config.sandbox.url} (start it with \`npm start\`)`);
        }
        if (res.status === 401) {
          throw new Error(
            `reachable at ${config.sandbox.url}, but it refuses this admin token (ESPRESSO_SANDBOX_ADMIN_TOKEN or ${config.sandbox.adminTokenFile} must be the Sandbox's)`,
          );
        }
        return `reachable at ${config.sandbox.url}, admin token accepted`;
      },
    },
    {
      name: 'worker',
      run: async () => {
        const client = await espressoClient();
        const started = Date.now();
        const workflowId = workflowIds.selfCheck(randomBytes(6).toString('hex'));
        const result = (await withTimeout(
          client.workflow.execute('selfCheckWorkflow', {
            taskQueue: TASK_QUEUE,
            workflowId,
            workflowExecutionTimeout: '30 seconds',
          }),
          15_000,
          `no worker answered on task queue ${TASK_QUEUE} within 15 s (is the worker running?)`,
        )) as SelfCheckResult;
        const answered = `answered a self-check in ${Date.now() - started} ms (${result.configurations} configurations)`;
        if (!result.clock) return answered;
        const events = (await client.workflow.getHandle(workflowId).fetchHistory()).events ?? [];
        const at = (found: (typeof events)[number] | undefined) =>
          found?.eventTime ? tsToMs(found.eventTime) : undefined;
        const dispatched = at(events.find((ev) => ev.activityTaskStartedEventAttributes));
        const completed = at(events.find((ev) => ev.activityTaskCompletedEventAttributes));
        if (dispatched === undefined || completed === undefined) return answered;
        const clock = workerClock(clockOffset({ dispatched, completed }, result.clock));
        return typeof clock === 'string'
          ? `${answered}; ${clock}`
          : { warning: `${answered}; ${clock.warning}` };
      },
    },
  ];

  let ok = true;
  for (const check of checks) {
    try {
      const found = await check.run();
      if (typeof found === 'string') print(`ok    ${check.name}: ${found}`);
      else print(`warn  ${check.name}: ${found.warning}`);
    } catch (err) {
      ok = false;
      print(`FAIL  ${check.name}: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  await connection?.close();
  return ok;
}

/** A worker's clock this far from the Temporal server's makes `doctor` warn. */
export const CLOCK_WARN_MS = 1_000;

/**
 * Where a worker's clock stands against the Temporal server's (worker minus server, ms), from one
 * activity: the server gave it out at `dispatched` and recorded its completion at `completed`
 * (its clock); the worker read `startedAt` and `endedAt` (its own) in between. Delays on the way
 * only widen the range, which always holds the true offset.
 */
export function clockOffset(
  server: { dispatched: number; completed: number },
  worker: { startedAt: number; endedAt: number },
): { min: number; max: number } {
  return { min: worker.endedAt - server.completed, max: worker.startedAt - server.dispatched };
}

/**
 * What `doctor` says of a worker's clock: a warning when it is surely more than CLOCK_WARN_MS
 * away from the server's. Every worker compares times another one wrote: a lock's expiry, a
 * 429's pause (seconds), an OAuth refresh lease.
 */
export function workerClock({ min, max }: { min: number; max: number }): string | { warning: string } {
  const ms = (n: number) => `${Math.round(n)} ms`;
  if (min > CLOCK_WARN_MS || max < -CLOCK_WARN_MS) {
    const off = min > CLOCK_WARN_MS ? `at least ${ms(min)} ahead of` : `at least ${ms(-max)} behind`;
    return {
      warning: `its clock is ${off} the Temporal server's: workers compare times other workers wrote (a lock's expiry, a 429's pause, an OAuth refresh lease); synchronize the machines' clocks (NTP)`,
    };
  }
  return `its clock is within ${ms(Math.max(Math.abs(min), Math.abs(max)))} of the Temporal server's`;
}

/** Secrets still under an older key of ESPRESSO_SECRET_KEY: the rotation is not finished. */
function secretKeysCheck(secrets: LocalSecretStore): Check {
  return {
    name: 'secret keys',
    run: async () => {
      const usage = await secrets.keyUsage();
      if (usage.older.size > 0) {
        return { warning: `${describeOlderKeys(usage)}; run \`${REKEY_SECRETS_COMMAND}\`` };
      }
      return `every secret is encrypted with ${keyName(usage.current)}, the current key of ${usage.source}`;
    },
  };
}
