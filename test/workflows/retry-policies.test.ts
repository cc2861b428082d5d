import { strict as assert } from 'node:assert';
import { chunkOptions, exportOptions, storeOptions } from '../../src/workflows/retry-policies';

// docs/runs.md, "Retries and deadlines": every activity is bounded by time, not by attempts, so an
// ESP or store outage of hours is waited out (retries at most 5 minutes apart), and nothing waits forever.
describe('docs/runs.md: an outage of hours is waited out, and nothing waits forever', () => {
  const hours = (h: number) => h * 3_600_000;

  it('the export waits for as long as the run may take, retrying at most 5 minutes apart', () => {
    const options = exportOptions(hours(20));
    assert.equal(options.scheduleToCloseTimeout, hours(20));
    assert.equal(options.retry?.maximumAttempts, undefined, 'no attempt limit');
    assert.equal(options.retry?.maximumInterval, '5 minutes');
  });

  it('a chunk waits out 6 hours of outage, an attempt may take 2 hours', () => {
    assert.equal(chunkOptions.scheduleToCloseTimeout, '6 hours');
    assert.equal(chunkOptions.startToCloseTimeout, '2 hours');
    assert.equal(chunkOptions.retry?.maximumAttempts, undefined, 'no attempt limit');
    assert.equal(chunkOptions.retry?.maximumInterval, '5 minutes');
  });

  it('the stores wait out 2 hours, retrying at most a minute apart', () => {
    assert.equal(storeOptions.scheduleToCloseTimeout, '2 hours');
    assert.equal(storeOptions.startToCloseTimeout, '1 minute');
    assert.equal(storeOptions.retry?.maximumAttempts, undefined, 'no attempt limit');
    assert.equal(storeOptions.retry?.maximumInterval, '1 minute');
  });
});
