// Chunk and result lines are written and read without JSON.stringify / JSON.parse when nothing
// needs escaping: what is written and read must be exactly what those would give, whatever the id.
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { chunkLineText, plainChunkLine, resultLineText, type ResultLine } from '../../src/runs/files';

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

describe('chunk and result lines', () => {
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

  it("results are written as JSON.stringify writes them, whatever the id, the value or the line's other fields", () => {
    const lines: ResultLine[] = [];
    for (let i = 0; i < 2_000; i++) {
      const contactId = i % 3 ? randomId(1 + (i % 40)) : `ct_${i}`;
      const value = i % 5 ? 'AbCdEfGhIjKlMnOpQrStUv' : randomId(i % 12);
      lines.push(
        { contactId, value, status: 'updated' },
        { contactId, value, status: 'updated', previous: randomId(6) },
        { contactId, value, status: 'rejected', reason: `invalid "email" ${randomId(4)}`, line: i },
        { contactId: null, value: null, status: 'rejected', reason: 'corrupt chunk line: not valid JSON' },
      );
    }
    for (const line of lines) assert.equal(resultLineText(line), JSON.stringify(line));
    // A line read back from a file may carry a field of another version: it is written as it is.
    const other = { contactId: 'ct_1', value: 'abc', status: 'updated', note: 'x' } as ResultLine;
    assert.equal(resultLineText(other), JSON.stringify(other));
  });
});
