// The values espresso writes: random, never repeated, and recognised as its own by later runs.
import { strict as assert } from 'node:assert';
import { newValue } from '../../src/activities/export-listing';

describe('new values', () => {
  it('are 128 random bits in base64url, all different across many draws of the random pool', () => {
    const values = Array.from({ length: 10_000 }, () => newValue());
    for (const v of values) assert.match(v, /^[A-Za-z0-9_-]{22}$/);
    assert.equal(new Set(values).size, values.length);
    // Each of the 128 bits varies: no byte of the pool is handed out twice or left at zero.
    const decoded = values.map((v) => Buffer.from(v, 'base64url'));
    for (let byte = 0; byte < 16; byte++) {
      assert.ok(new Set(decoded.map((d) => d[byte])).size > 200, `byte ${byte} hardly varies`);
    }
  });
});
