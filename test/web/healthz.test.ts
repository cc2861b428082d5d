import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { Connection } from '@temporalio/client';
import request from 'supertest';
import { createStores } from '../../src/storage';
import { createApp } from '../../src/web/app';
import { webDeps } from '../support/web';
import { temporalEnv } from '../support/temporal';
import { tempDir } from '../support/tmp';

async function localStores() {
  const dir = await tempDir();
  return createStores({
    kind: 'local',
    blobDir: join(dir, 'blobs'),
    secretDir: join(dir, 'secrets'),
    secretKeyFile: join(dir, 'secret.key'),
  });
}

describe('web /healthz', () => {
  it('answers 200 with every dependency up', async () => {
    const env = await temporalEnv();
    const app = createApp(webDeps(await localStores(), async () => env.connection));
    const res = await request(app).get('/healthz').expect(200);
    assert.deepEqual(res.body, {
      status: 'ok',
      dependencies: { temporal: { state: 'up' }, blobStore: { state: 'up' }, secretStore: { state: 'up' } },
    });
  });

  it('still answers 200 and names what is down when Temporal is unreachable', async () => {
    const app = createApp(
      webDeps(await localStores(), () => Connection.connect({ address: '127.0.0.1:1', connectTimeout: 500 })),
    );
    const res = await request(app).get('/healthz').expect(200);
    assert.equal(res.body.status, 'degraded');
    assert.equal(res.body.dependencies.temporal.state, 'down');
    assert.equal(typeof res.body.dependencies.temporal.error, 'string');
    assert.equal(res.body.dependencies.blobStore.state, 'up');
  });
});
