// Every recorded history replays against the current workflow code: legacy/ holds runs of earlier
// versions (in flight when workers are upgraded, they must still complete), current/ this version's.
import { strict as assert } from 'node:assert';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import { Worker } from '@temporalio/worker';
import { projectRoot } from '../src/paths';
import { dataConverter } from '../src/codec';
import { BOUNDED_OUTCOME_FILES_PATCH } from '../src/workflows/daily-sync';
import { ACCOUNT_GUEST_PATCH, RUNS_LOCAL_STEPS_PATCH } from '../src/workflows/sync/patches';
import { workflowBundle } from './support/espresso';
import { testPayloadKeys } from './support/temporal';

const root = join(projectRoot, 'test', 'histories');

function recorded(folder: 'legacy' | 'current') {
  const dir = join(root, folder);
  const ids = JSON.parse(readFileSync(join(dir, 'workflow-ids.json'), 'utf8')) as Record<string, string>;
  const files = readdirSync(dir).filter((f) => f.endsWith('.json') && f !== 'workflow-ids.json');
  const typeOf = (f: string) =>
    JSON.parse(readFileSync(join(dir, f), 'utf8')).events[0].workflowExecutionStartedEventAttributes
      .workflowType.name as string;
  return { dir, ids, files, typeOf };
}

/**
 * How each history of this version ends: its last event, the status its run recorded last
 * (EspressoStatus), and whether it is a run that a continue-as-new started.
 */
const CURRENT: Record<string, { ends: string; status?: string; resumed?: true }> = {
  'configuration-sync-completed.json': { ends: 'COMPLETED', status: 'completed' },
  'configuration-sync-continued.json': { ends: 'CONTINUED_AS_NEW', status: 'running' },
  'configuration-sync-resumed.json': { ends: 'COMPLETED', status: 'completed', resumed: true },
  'configuration-sync-needs-reauth.json': { ends: 'COMPLETED', status: 'needs_reauth' },
  'configuration-sync-skipped.json': { ends: 'COMPLETED', status: 'skipped' },
  'configuration-sync-failed.json': { ends: 'FAILED', status: 'failed' },
  'configuration-sync-busy.json': { ends: 'COMPLETED', status: 'busy' },
  'configuration-sync-cancelled.json': { ends: 'CANCELED', status: 'cancelled' },
  'configuration-sync-disabled.json': { ends: 'COMPLETED', status: 'cancelled' },
  'configuration-sync-timed-out.json': { ends: 'FAILED', status: 'timed_out' },
  'configuration-sync-waited.json': { ends: 'COMPLETED', status: 'completed' },
  'configuration-sync-told-waiter.json': { ends: 'COMPLETED', status: 'completed' },
  'daily-sync-continued.json': { ends: 'CONTINUED_AS_NEW' },
  'daily-sync-resumed.json': { ends: 'COMPLETED', resumed: true },
};

interface HistoryEvent {
  eventType: string;
  markerRecordedEventAttributes?: {
    details: Record<string, { payloads: Array<{ data: string }> } | undefined>;
  };
  workflowExecutionStartedEventAttributes?: { continuedExecutionRunId?: string };
  upsertWorkflowSearchAttributesEventAttributes?: {
    searchAttributes: { indexedFields: Record<string, { data: string }> };
  };
}

/** The last event's type (without its prefix), the last EspressoStatus set, and whether it resumed. */
function outcome(events: HistoryEvent[]) {
  const statuses = events.flatMap((e) => {
    const status =
      e.upsertWorkflowSearchAttributesEventAttributes?.searchAttributes.indexedFields.EspressoStatus;
    return status ? [JSON.parse(Buffer.from(status.data, 'base64').toString('utf8')) as string] : [];
  });
  return {
    ends: events.at(-1)!.eventType.replace(/^EVENT_TYPE_WORKFLOW_EXECUTION_/, ''),
    status: statuses.at(-1),
    resumed: events[0]!.workflowExecutionStartedEventAttributes?.continuedExecutionRunId
      ? (true as const)
      : undefined,
  };
}

describe('replaying recorded histories (test/histories)', () => {
  it('has a history of every workflow type of earlier versions, and of every outcome of this one', () => {
    const legacy = recorded('legacy');
    assert.deepEqual([...new Set(legacy.files.map(legacy.typeOf))].sort(), [
      'configurationSyncWorkflow',
      'dailySyncWorkflow',
      'dispatchWorkflow',
    ]);
    const current = recorded('current');
    assert.deepEqual(current.files.sort(), Object.keys(CURRENT).sort());
    // Each history is the outcome its name says (a re-recording whose timing went otherwise is caught).
    for (const file of current.files) {
      const { events } = JSON.parse(readFileSync(join(current.dir, file), 'utf8')) as {
        events: HistoryEvent[];
      };
      const { ends, status, resumed } = CURRENT[file]!;
      assert.deepEqual(outcome(events), { ends, status, resumed }, file);
    }
  });

  it('records one patch marker per history of this version, not one per earlier patch (and account-guest where runs share an account)', () => {
    const current = recorded('current');
    const latest: Record<string, string> = {
      configurationSyncWorkflow: RUNS_LOCAL_STEPS_PATCH,
      dailySyncWorkflow: BOUNDED_OUTCOME_FILES_PATCH,
    };
    for (const file of current.files) {
      const { events } = JSON.parse(readFileSync(join(current.dir, file), 'utf8')) as {
        events: HistoryEvent[];
      };
      const patches = events.flatMap((e) => {
        const data = e.markerRecordedEventAttributes?.details['patch-data']?.payloads[0]?.data;
        return data ? [(JSON.parse(Buffer.from(data, 'base64').toString('utf8')) as { id: string }).id] : [];
      });
      // A run carried over by continue-as-new records it again in its new history. A run that
      // lends its account or waits for it records the patch that came after (checked only then).
      const lends = /configuration-sync-(waited|told-waiter)/.test(file);
      assert.deepEqual(
        patches,
        [latest[current.typeOf(file)], ...(lends ? [ACCOUNT_GUEST_PATCH] : [])],
        file,
      );
    }
  });

  for (const folder of ['legacy', 'current'] as const) {
    const { dir, ids, files } = recorded(folder);
    for (const file of files) {
      it(`replays ${folder}/${file} without nondeterminism`, async () => {
        const history = historyFromJSON(JSON.parse(readFileSync(join(dir, file), 'utf8')));
        assert.ok(
          ids[file],
          `${file} is missing from ${folder}/workflow-ids.json: re-record with npm run record-histories`,
        );
        await Worker.runReplayHistory(
          { workflowBundle: await workflowBundle(), dataConverter: dataConverter(testPayloadKeys) },
          history,
          ids[file],
        );
      });
    }
  }
});
