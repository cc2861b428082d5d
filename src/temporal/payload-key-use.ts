// What Temporal still holds under which payload key: the schedule's stored payloads and the inputs
// of open runs. Read raw (each encrypted payload names its key in clear metadata), so it works for
// keys the ring no longer has.
import type { Client } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { payloadKeyId } from '../codec';
import { SCHEDULE_ID } from './constants';

type Payload = temporal.api.common.v1.IPayload;
type Failure = temporal.api.failure.v1.IFailure;
type StartedAttributes = temporal.api.history.v1.IWorkflowExecutionStartedEventAttributes;
export type RawSchedule = temporal.api.workflowservice.v1.IDescribeScheduleResponse;

/** One thing encrypted with a key: `what` reads in a sentence ("the schedule's action input"). */
export interface KeyUse {
  keyId: string;
  what: string;
}

const LAST_RESULT = 'the last result the schedule hands each run';
const LAST_FAILURE = 'the last failure the schedule hands each run';
const GRPC_NOT_FOUND = 5;
/** History reads at once while scanning open runs. */
const SCAN_CONCURRENCY = 16;

/** "the schedule's action input and the last result the schedule hands each run under k1; ... under k2" */
export function describeKeyUse(uses: KeyUse[]): string {
  const byKey = new Map<string, string[]>();
  for (const { keyId, what } of uses) byKey.set(keyId, [...(byKey.get(keyId) ?? []), what]);
  return [...byKey].map(([keyId, whats]) => `${whats.join(' and ')} under ${keyId}`).join('; ');
}

/** The schedule as the server stores it (nothing decrypted), or undefined when there is none. */
export async function describeScheduleRaw(client: Client): Promise<RawSchedule | undefined> {
  try {
    return await client.workflowService.describeSchedule({
      namespace: client.options.namespace,
      scheduleId: SCHEDULE_ID,
    });
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/**
 * Every key the schedule's stored payloads are encrypted with: its action (input, memo, summary), and
 * what it hands each run it starts (Temporal passes the last completion result and the last failure
 * of the runs it waited on, e.g. a backfill's BufferAll runs, to every later run; no API rewrites
 * them, so they stay under the key of the run that produced them until the schedule is recreated).
 * Those are read from the start events of its recent runs and the ends of the runs it waits on.
 */
export async function scheduleKeyUse(client: Client, schedule: RawSchedule): Promise<KeyUse[]> {
  const uses: KeyUse[] = [];
  const action = schedule.schedule?.action?.startWorkflow;
  note(uses, "the schedule's action input", action?.input?.payloads);
  note(uses, "the schedule's action memo", Object.values(action?.memo?.fields ?? {}));
  note(uses, "the schedule's action summary", [action?.userMetadata?.summary, action?.userMetadata?.details]);
  const recent = (schedule.info?.recentActions ?? []).flatMap((a) =>
    a.startWorkflowResult?.workflowId ? [a.startWorkflowResult] : [],
  );
  for (const run of recent) {
    const started = await startedAttributes(client, run.workflowId!, run.runId ?? undefined);
    if (!started) continue;
    note(uses, LAST_RESULT, started.lastCompletionResult?.payloads);
    note(uses, LAST_FAILURE, failurePayloads(started.continuedFailure));
  }
  for (const run of schedule.info?.runningWorkflows ?? []) {
    const closed = await closeEvent(client, run.workflowId!);
    note(uses, LAST_RESULT, closed?.workflowExecutionCompletedEventAttributes?.result?.payloads);
    note(uses, LAST_FAILURE, failurePayloads(closed?.workflowExecutionFailedEventAttributes?.failure));
  }
  return unique(uses);
}

/** Open runs whose start (input, memo, what a schedule handed them) is encrypted with `keyId`. */
export async function openRunsUnderKey(
  client: Client,
  keyId: string,
): Promise<{ count: number; examples: string[] }> {
  const found: string[] = [];
  let nextPageToken: Uint8Array | undefined;
  do {
    const page = await client.workflowService.listWorkflowExecutions({
      namespace: client.options.namespace,
      query: 'ExecutionStatus = "Running"',
      pageSize: 500,
      nextPageToken,
    });
    const runs = (page.executions ?? []).flatMap((e) => (e.execution?.workflowId ? [e.execution] : []));
    for (let i = 0; i < runs.length; i += SCAN_CONCURRENCY) {
      const batch = runs.slice(i, i + SCAN_CONCURRENCY);
      const starts = await Promise.all(
        batch.map((r) => startedAttributes(client, r.workflowId!, r.runId ?? undefined)),
      );
      starts.forEach((started, j) => {
        if (started && startPayloads(started).some((p) => payloadKeyId(p) === keyId))
          found.push(batch[j]!.workflowId!);
      });
    }
    nextPageToken = page.nextPageToken?.length ? page.nextPageToken : undefined;
  } while (nextPageToken);
  return { count: found.length, examples: found.slice(0, 5) };
}

/** Closed runs whose histories the namespace still keeps, and for how long it keeps them. */
export async function closedHistories(client: Client): Promise<{ count: number; retentionDays: number }> {
  const [{ count }, namespace] = await Promise.all([
    client.workflowService.countWorkflowExecutions({
      namespace: client.options.namespace,
      query: 'ExecutionStatus != "Running"',
    }),
    client.workflowService.describeNamespace({ namespace: client.options.namespace }),
  ]);
  const seconds = Number(namespace.config?.workflowExecutionRetentionTtl?.seconds ?? 0);
  return { count: Number(count ?? 0), retentionDays: Math.round((seconds / 86_400) * 10) / 10 };
}

async function startedAttributes(
  client: Client,
  workflowId: string,
  runId: string | undefined,
): Promise<StartedAttributes | undefined> {
  try {
    const { history } = await client.workflowService.getWorkflowExecutionHistory({
      namespace: client.options.namespace,
      execution: { workflowId, runId },
      maximumPageSize: 1,
    });
    return history?.events?.[0]?.workflowExecutionStartedEventAttributes ?? undefined;
  } catch (err) {
    // Removed by retention (or never written): nothing of it is left to need a key.
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

async function closeEvent(client: Client, workflowId: string) {
  try {
    const { history } = await client.workflowService.getWorkflowExecutionHistory({
      namespace: client.options.namespace,
      execution: { workflowId },
      historyEventFilterType:
        temporal.api.enums.v1.HistoryEventFilterType.HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT,
      waitNewEvent: false,
    });
    return history?.events?.[0];
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

function startPayloads(started: StartedAttributes): Payload[] {
  return [
    ...(started.input?.payloads ?? []),
    ...Object.values(started.memo?.fields ?? {}),
    ...(started.lastCompletionResult?.payloads ?? []),
    ...failurePayloads(started.continuedFailure),
  ];
}

/** The payloads of a failure and its causes, as the codec encodes them. */
function failurePayloads(failure: Failure | null | undefined): Payload[] {
  if (!failure) return [];
  return [
    ...(failure.encodedAttributes ? [failure.encodedAttributes] : []),
    ...(failure.applicationFailureInfo?.details?.payloads ?? []),
    ...(failure.timeoutFailureInfo?.lastHeartbeatDetails?.payloads ?? []),
    ...(failure.canceledFailureInfo?.details?.payloads ?? []),
    ...(failure.resetWorkflowFailureInfo?.lastHeartbeatDetails?.payloads ?? []),
    ...failurePayloads(failure.cause),
  ];
}

function note(uses: KeyUse[], what: string, payloads: Array<Payload | null | undefined> | null | undefined) {
  for (const p of payloads ?? []) {
    const keyId = p ? payloadKeyId(p) : undefined;
    if (keyId !== undefined) uses.push({ keyId, what });
  }
}

function unique(uses: KeyUse[]): KeyUse[] {
  const seen = new Set<string>();
  return uses.filter((u) => {
    const key = `${u.keyId}\n${u.what}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function isNotFound(err: unknown): boolean {
  return (err as { code?: number } | undefined)?.code === GRPC_NOT_FOUND;
}
