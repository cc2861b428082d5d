import { strict as assert } from 'node:assert';
import { Connection } from '@temporalio/client';
import request from 'supertest';
import { createApp } from '../../src/web/app';
import { webDeps } from '../support/web';
import { temporalEnv } from '../support/temporal';
import { tempStores } from '../support/tmp';

describe('web /healthz and /readyz', () => {
  it('answers 200 with every dependency up', async () => {
    const env = await temporalEnv();
    const app = createApp(webDeps(await tempStores(), async () => env.connection));
    assert.equal((await request(app).get('/readyz').expect(200)).body.status, 'ready');
    const res = await request(app).get('/healthz').expect(200);
    assert.deepEqual(res.body, {
      status: 'ok',
      dependencies: { temporal: { state: 'up' }, blobStore: { state: 'up' }, secretStore: { state: 'up' } },
    });
  });

  it('still answers 200 and names what is down when Temporal is unreachable', async () => {
    const app = createApp(
      webDeps(await tempStores(), () => Connection.connect({ address: '127.0.0.1:1', connectTimeout: 500 })),
    );
    const res = await request(app).get('/healthz').expect(200);
    assert.equal(res.body.status, 'degraded');
    const ready = await request(app).get('/readyz').expect(503);
    assert.equal(ready.body.status, 'not_ready');
    assert.equal(res.body.dependencies.temporal.state, 'down');
    assert.equal(typeof res.body.dependencies.temporal.error, 'string');
    assert.equal(res.body.dependencies.blobStore.state, 'up');
  });
});
