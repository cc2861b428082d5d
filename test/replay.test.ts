// Every recorded history replays against the current workflow code: legacy/ holds runs of earlier
// versions (in flight when workers are upgraded, they must still complete), current/ this version's.
import { strict as assert } from 'node:assert';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import { Worker } from '@temporalio/worker';
import { projectRoot } from '../src/paths';
import { dataConverter } from '../src/codec';
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

describe('replaying recorded histories (test/histories)', () => {
  it('has a history of every workflow type of earlier versions, and of every outcome of this one', () => {
    const legacy = recorded('legacy');
    assert.deepEqual([...new Set(legacy.files.map(legacy.typeOf))].sort(), [
      'configurationSyncWorkflow',
      'dailySyncWorkflow',
      'dispatchWorkflow',
    ]);
    const current = recorded('current');
    assert.deepEqual(current.files.sort(), [
      'configuration-sync-busy.json',
      'configuration-sync-cancelled.json',
      'configuration-sync-completed.json',
      'configuration-sync-continued.json',
      'configuration-sync-failed.json',
      'configuration-sync-needs-reauth.json',
      'configuration-sync-skipped.json',
      'configuration-sync-timed-out.json',
      'configuration-sync-told-waiter.json',
      'configuration-sync-waited.json',
      'daily-sync-continued.json',
    ]);
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
