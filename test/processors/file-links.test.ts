import { strict as assert } from 'node:assert';
import { RequestRejectedError } from '../../src/processors/errors';
import { fileLink } from '../../src/processors/file-links';

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
