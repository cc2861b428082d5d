// Chunk lines are written and read without JSON.stringify / JSON.parse when nothing needs escaping:
// what is written and read must be exactly what those would give, whatever the contact id holds.
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { chunkLineText, plainChunkLine } from '../../src/runs/files';

/** Characters JSON escapes or that need care in UTF-16, and ordinary ones. */
const TRICKY = [
  'a',
  'Z',
  '0',
  '_',
  '-',
  '.',
  '@',
  ' ',
  '"',
  '\\',
  '\n',
  '\u0001',
  '\u001f',
  '\u007f',
  '\u2028',
  'é',
  '😀',
  '\ud800',
  '\udfff',
  '/',
];

function randomId(length: number): string {
  const bytes = randomBytes(length);
  return Array.from(bytes, (b) => TRICKY[b % TRICKY.length]).join('');
}

describe('chunk lines', () => {
  it('are written exactly as JSON.stringify writes them, for ids that need escaping too', () => {
    const ids = [
      'ct_0000001',
      '42',
      'a"b',
      'back\\slash',
      'new\nline',
      'ctl\u0001',
      'lone\ud800',
      '😀',
      'x'.repeat(200),
    ];
    for (let i = 0; i < 2_000; i++) ids.push(randomId(1 + (i % 40)));
    for (const contactId of ids) {
      for (const value of ['AbCdEfGhIjKlMnOpQrStUv', 'with "quote"', '']) {
        assert.equal(
          chunkLineText(contactId, value),
          JSON.stringify({ contactId, value }),
          JSON.stringify(contactId),
        );
      }
    }
  });

  it('are read as JSON.parse reads them; a line in any other form is left to JSON.parse and the schema', () => {
    for (let i = 0; i < 2_000; i++) {
      const contactId = randomId(1 + (i % 40));
      const line = JSON.stringify({ contactId, value: 'v' + randomId(i % 8) });
      const plain = plainChunkLine(line);
      // Read fast or not at all: never read differently.
      if (plain) assert.deepEqual(plain, JSON.parse(line));
    }
    assert.deepEqual(plainChunkLine('{"contactId":"ct_1","value":"abc"}'), {
      contactId: 'ct_1',
      value: 'abc',
    });
    for (const other of [
      '{"contactId":"a\\"b","value":"abc"}', // escaped: JSON.parse's
      '{"contactId": "ct_1", "value": "abc"}', // spaced
      '{"contactId":"ct_1","value":"abc","previous":"old"}',
      '{"value":"abc","contactId":"ct_1"}',
      '{"contactId":"","value":"abc"}', // the schema says what is wrong
      `{"contactId":"${'x'.repeat(201)}","value":"abc"}`,
      '{"contactId":"ct_1","value":"abc"}x',
      '{"contactId":"ct\u0001","value":"abc"}', // not JSON at all
      '{"contactId":"ct_1","value":"abc',
    ]) {
      assert.equal(plainChunkLine(other), undefined, other);
    }
  });
});
