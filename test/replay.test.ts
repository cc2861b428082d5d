import { strict as assert } from 'node:assert';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import { Worker } from '@temporalio/worker';
import { projectRoot } from '../src/paths';
import { dataConverter } from '../src/codec';
import { workflowBundle } from './support/espresso';
import { testPayloadKeys } from './support/temporal';

const dir = join(projectRoot, 'test', 'histories');

describe('replaying recorded histories (test/histories)', () => {
  const ids = JSON.parse(readFileSync(join(dir, 'workflow-ids.json'), 'utf8')) as Record<string, string>;
  const files = readdirSync(dir).filter((f) => f.endsWith('.json') && f !== 'workflow-ids.json');

  it('has a recorded history of every workflow type', () => {
    const types = new Set(
      files.map((f) => {
        const first = JSON.parse(readFileSync(join(dir, f), 'utf8')).events[0];
        return first.workflowExecutionStartedEventAttributes.workflowType.name;
      }),
    );
    assert.deepEqual([...types].sort(), [
      'configurationSyncWorkflow',
      'dailySyncWorkflow',
      'dispatchWorkflow',
    ]);
  });

  for (const file of files) {
    it(`replays ${file} without nondeterminism`, async () => {
      const history = historyFromJSON(JSON.parse(readFileSync(join(dir, file), 'utf8')));
      assert.ok(
        ids[file],
        `${file} is missing from workflow-ids.json: re-record with npm run record-histories`,
      );
      await Worker.runReplayHistory(
        { workflowBundle: await workflowBundle(), dataConverter: dataConverter(testPayloadKeys) },
        history,
        ids[file],
      );
    });
  }
});
