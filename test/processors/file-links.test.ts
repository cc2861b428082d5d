import { strict as assert } from 'node:assert';
import { readdir } from 'node:fs/promises';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { RequestRejectedError } from '../../src/processors/errors';
import { fileLink } from '../../src/processors/file-links';
import { downloadToFile } from '../../src/processors/kit/file-download';
import { closeServer, listenLocal } from '../support/listen';
import { tempDir } from '../support/tmp';

describe('file links from ESP answers (export files, error reports)', () => {
  const api = 'https://api.sendgrid.com';
  const what = 'the SendGrid export file';

  it('takes HTTPS links to named hosts, and the API’s own origin (test fakes)', () => {
    for (const link of [
      'https://exports.example-cdn.com/a/b.csv.gz?X-Amz-Signature=abc',
      'https://s3.amazonaws.com/bucket/file.json',
    ])
      assert.equal(fileLink(link, what, api).toString(), link);
    assert.ok(fileLink('http://127.0.0.1:4010/files/1', what, 'http://127.0.0.1:4010'));
  });

  it('refuses plain HTTP, addresses, localhost and credentials in the link, naming the origin only', () => {
    for (const link of [
      'http://exports.example.com/file',
      'https://127.0.0.1/file',
      'https://169.254.169.254/latest/meta-data/',
      'https://[::1]/file',
      'https://localhost:8080/file',
      'https://metadata.localhost/file',
      'https://user:pw@exports.example.com/file',
      'file:///etc/passwd',
      'not a url',
    ]) {
      assert.throws(
        () => fileLink(`${link}?X-Amz-Signature=SECRETSIG`, what, api),
        (err: Error) =>
          err instanceof RequestRejectedError &&
          err.message.startsWith(`${what}: `) &&
          !err.message.includes('SECRETSIG') &&
          !err.message.includes('pw@'),
        link,
      );
    }
  });
});

describe('file downloads of a cancelled activity', () => {
  it('stop at once, mid-file: a SendGrid export file trickling in would hold the activity for its hour', async () => {
    // A file that sends a line every 100 ms, for a minute.
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/csv' });
      const timer = setInterval(() => res.write('a,b\n'), 100);
      res.on('close', () => clearInterval(timer));
    });
    const base = await listenLocal(server);
    const cancelled = new AbortController();
    const dest = join(await tempDir(), 'export.csv');
    try {
      const downloading = downloadToFile(
        {
          url: `${base}/file`,
          what: 'the SendGrid export file',
          apiBase: base,
          timeoutMs: 60 * 60_000,
          signal: cancelled.signal,
        },
        dest,
      );
      await new Promise((r) => setTimeout(r, 300));
      const abortedAt = Date.now();
      cancelled.abort();
      await assert.rejects(downloading, { name: 'AbortError' });
      assert.ok(Date.now() - abortedAt < 500, `ended ${Date.now() - abortedAt} ms after the abort`);
      assert.deepEqual(await readdir(join(dest, '..')), [], 'a partial download was left');
    } finally {
      await closeServer(server);
    }
  });
});
