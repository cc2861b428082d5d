import { strict as assert } from 'node:assert';
import { KeptSeenIds, SeenIds } from '../../src/activities/seen-ids';

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

describe('KeptSeenIds (what a worker keeps of them between export parts)', () => {
  const ids = (n: number, prefix: string) => {
    const seen = new SeenIds(4);
    for (let i = 0; i < n; i++) seen.add(`${prefix}_${i}`);
    return { chunkCount: 1, seen };
  };

  it('holds no more ids than its bound: the oldest exports go first, and one over the bound alone is not kept', () => {
    const kept = new KeptSeenIds({ maxIds: 1_000, keepMs: 60_000 });
    kept.keep('a', ids(400, 'a'));
    kept.keep('b', ids(400, 'b'));
    kept.keep('c', ids(400, 'c'));
    assert.equal(kept.ids, 800);
    assert.equal(kept.take('a'), undefined, 'the oldest was dropped');
    assert.equal(kept.take('b')?.seen.size, 400);
    assert.equal(kept.take('b'), undefined, 'taken once');
    kept.keep('d', ids(1_001, 'd'));
    assert.equal(kept.take('d'), undefined, 'an export over the bound alone was kept');
    assert.equal(kept.take('c')?.seen.size, 400, 'and it dropped nothing');
  });

  it('drops an entry once it has been kept its time', async () => {
    const kept = new KeptSeenIds({ maxIds: 1_000, keepMs: 50 });
    kept.keep('a', ids(10, 'a'));
    assert.equal(kept.ids, 10);
    await new Promise((r) => setTimeout(r, 120));
    assert.equal(kept.ids, 0);
    assert.equal(kept.take('a'), undefined);
  });
});
