import { strict as assert } from 'node:assert';
import { SeenIds } from '../../src/activities/seen-ids';

describe('SeenIds (contacts an export has written)', () => {
  it('knows each of 300,000 ids once, across growth, and refuses every repeat', () => {
    const seen = new SeenIds(4);
    const ids = Array.from({ length: 300_000 }, (_, i) => `ct_${String(i).padStart(7, '0')}`);
    assert.ok(ids.every((id) => seen.add(id)));
    assert.equal(seen.size, 300_000);
    assert.ok(ids.every((id) => !seen.add(id)));
    assert.ok(seen.add('someone@example.com') && !seen.add('someone@example.com'));
    assert.ok(seen.add('') && !seen.add(''));
    assert.equal(seen.size, 300_002);
  });

  it('answers has() for every id added and for none that was not', () => {
    const seen = new SeenIds(4);
    for (let i = 0; i < 50_000; i += 2) seen.add(`ct_${i}`);
    for (let i = 0; i < 50_000; i++) assert.equal(seen.has(`ct_${i}`), i % 2 === 0, `ct_${i}`);
    assert.equal(seen.size, 25_000, 'has() adds nothing');
  });
});
