import { StringDecoder } from 'node:string_decoder';

/**
 * The lines of a byte stream, a batch per piece read: one promise per batch where a line-by-line
 * iterator costs several per line (a chunk file of 10,000 lines is about fifteen pieces). Lines
 * end as readline ends them (\n, \r\n or a lone \r); a last line without its ending counts, an
 * empty last one does not.
 */
export async function* lineBatches(
  input: AsyncIterable<Buffer | string> | Iterable<Buffer | string>,
): AsyncIterable<string[]> {
  const decoder = new StringDecoder('utf8');
  let rest = '';
  for await (const piece of input) {
    let text = rest + (typeof piece === 'string' ? piece : decoder.write(piece));
    // A piece that ends in \r may end in the first half of \r\n: that line waits for the next piece.
    const held = text.endsWith('\r') ? '\r' : '';
    if (held) text = text.slice(0, -1);
    const lines = text.split(/\r\n|\n|\r/);
    rest = lines.pop()! + held;
    if (lines.length) yield lines;
  }
  const last = (rest + decoder.end()).replace(/\r$/, '');
  if (last !== '') yield [last];
}
