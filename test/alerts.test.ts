// The alert webhook's body, as a real HTTP receiver gets it: readable text for Slack-compatible
// incoming webhooks, and the fields for generic JSON receivers.
import { strict as assert } from 'node:assert';
import { createServer } from 'node:http';
import { createAlertSender } from '../src/alerts';
import { createLogger } from '../src/logger';
import { closeServer, listenLocal } from './support/listen';

describe('alert webhook', () => {
  it('posts text a chat shows and the fields a program reads', async () => {
    const bodies: unknown[] = [];
    const server = createServer((req, res) => {
      let text = '';
      req.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
      req.on('end', () => {
        bodies.push({ contentType: req.headers['content-type'], body: JSON.parse(text) as unknown });
        res.end('ok');
      });
    });
    const url = await listenLocal(server);
    try {
      const send = createAlertSender(createLogger('test', 'silent'), `${url}/hook`);
      await send({
        configurationId: 'cfg_alert0000001',
        esp: 'mailchimp',
        status: 'run_failed',
        message: 'run 2026-12-04 failed: the ESP answered 503',
      });
      assert.deepEqual(bodies, [
        {
          contentType: 'application/json',
          body: {
            text: 'espresso: cfg_alert0000001 (mailchimp) run failed: run 2026-12-04 failed: the ESP answered 503',
            source: 'espresso',
            configurationId: 'cfg_alert0000001',
            esp: 'mailchimp',
            status: 'run_failed',
            message: 'run 2026-12-04 failed: the ESP answered 503',
          },
        },
      ]);
    } finally {
      await closeServer(server);
    }
  });
});
