import { strict as assert } from 'node:assert';
import { Writable } from 'node:stream';
import { createLogger } from '../src/logger';

describe('logger redaction', () => {
  it('censors credentials, tokens and emails however they are nested', () => {
    let output = '';
    const sink = new Writable({
      write(chunk, _enc, done) {
        output += chunk.toString();
        done();
      },
    });
    const log = createLogger('test', 'info', sink);
    log.info(
      {
        credentials: { apiKey: 'sk_PLANTED_KEY_1' },
        accessToken: 'at_PLANTED_TOKEN_2',
        request: { authorization: 'Bearer at_PLANTED_TOKEN_3', refreshToken: 'rt_PLANTED_4' },
        contact: { email: 'planted.person@example.com', contactId: 'ct_1' },
      },
      'calling the ESP',
    );
    for (const planted of [
      'sk_PLANTED_KEY_1',
      'at_PLANTED_TOKEN_2',
      'at_PLANTED_TOKEN_3',
      'rt_PLANTED_4',
      'planted.person',
    ]) {
      assert.ok(!output.includes(planted), `${planted} leaked: ${output}`);
    }
    assert.match(output, /ct_1/);
    assert.match(output, /\[redacted\]/);
  });
});
