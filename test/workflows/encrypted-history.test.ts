// What the Temporal server keeps of a run: payloads and failure messages encrypted, so no
// credential, token or contact email is readable in any history; the codec route decodes them
// for the Web UI exactly as the UI asks.
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { Client } from '@temporalio/client';
import type { Payload } from '@temporalio/common';
import { codecPathToken, ENCRYPTED_ENCODING, EncryptionCodec } from '../../src/codec';
import type { Credentials } from '../../src/processors/types';
import { createApp } from '../../src/web/app';
import { configurationSyncWorkflow } from '../../src/workflows';
import { sandboxOAuthCredentials } from '../processors/sandbox-harness';
import { startEspresso, type Espresso } from '../support/espresso';
import { closeServer, listenLocal } from '../support/listen';
import { testPayloadKeys } from '../support/temporal';
import { webDeps } from '../support/web';

const RUN_DATE = '2026-11-28';

interface ProtoPayload {
  metadata?: Record<string, Uint8Array>;
  data?: Uint8Array;
}

/** What the SDK writes in the clear about a local activity that ran: ids, its type, its times. */
const LOCAL_ACTIVITY_MARKER_FIELDS = [
  'seq',
  'attempt',
  'activity_id',
  'activity_type',
  'complete_time',
  'backoff',
  'original_schedule_time',
];

/** Every string and byte string in a history (bytes read as text), and every payload with its path. */
function scan(history: unknown) {
  const texts: string[] = [];
  const payloads: Array<{ path: string; payload: ProtoPayload }> = [];
  const failures: Array<{ message?: string; encodedAttributes?: ProtoPayload }> = [];
  const walk = (node: unknown, path: string) => {
    if (node === null || node === undefined) return;
    if (typeof node === 'string') return void texts.push(node);
    if (node instanceof Uint8Array) return void texts.push(Buffer.from(node).toString('latin1'));
    if (typeof node !== 'object') return;
    const obj = node as Record<string, unknown>;
    if (obj.metadata && typeof obj.metadata === 'object' && 'data' in obj) {
      payloads.push({ path, payload: obj as ProtoPayload });
    }
    if ('encodedAttributes' in obj || ('message' in obj && 'stackTrace' in obj)) {
      failures.push(obj as (typeof failures)[number]);
    }
    for (const [key, value] of Object.entries(obj)) walk(value, `${path}.${key}`);
  };
  walk(history, '');
  return { text: texts.join('\n'), payloads, failures };
}

describe('encrypted payloads in Temporal histories', function () {
  this.timeout(300_000);
  let e: Espresso;
  before(async () => {
    e = await startEspresso();
  });
  after(() => e?.stop());

  it('keeps every planted credential, token and email out of the stored histories; the codec route decodes them for the Web UI', async () => {
    const hex = randomBytes(4).toString('hex');
    const plantedKey = `planted-key-${hex}-PLAINTEXT`;
    const revokedKey = `revoked-key-${hex}-PLAINTEXT`;
    const ownerEmail = `planted.owner.${hex}@publisher.example`;
    // 1. An API-key configuration whose label carries an email, with two rows the ESP rejects.
    const keyed = await e.connect(2_000, { accountLabel: `Owner ${ownerEmail}` });
    keyed.account.apiKeys.push(plantedKey);
    await e.stores.secrets.put(
      keyed.configuration.credentialsSecretId,
      JSON.stringify({ kind: 'apiKey', apiKey: plantedKey }),
    );
    keyed.list.suppressed.add(3);
    keyed.list.suppressed.add(17);
    // 2. An OAuth configuration whose access token expires before the run: refreshed mid-run.
    const oauth = await e.connect(1_000, {}, { account: 'acct_demo' });
    const granted = (await sandboxOAuthCredentials(e.sandbox, e.processor, 'acct_demo')) as Credentials & {
      kind: 'oauth2';
    };
    await e.stores.secrets.put(oauth.configuration.credentialsSecretId, JSON.stringify(granted));
    e.sandbox.state.expireAccessTokens('acct_demo');
    // 3. A revoked key: the run fails into needs_reauth, with the ESP's error in a failure.
    const revoked = await e.connect(10);
    await e.stores.secrets.put(
      revoked.configuration.credentialsSecretId,
      JSON.stringify({ kind: 'apiKey', apiKey: revokedKey }),
    );

    const configurations = [keyed, oauth, revoked].map((c) => c.configuration);
    const results = await Promise.all(
      configurations.map(async (c) =>
        (
          await e.client.workflow.start(configurationSyncWorkflow, {
            taskQueue: e.taskQueue,
            workflowId: `sync/${c.id}/${RUN_DATE}`,
            args: [{ configurationId: c.id, runDate: RUN_DATE, mode: 'incremental' }],
          })
        ).result(),
      ),
    );
    assert.deepEqual(
      results.map((r) => [r.status, r.updated, r.rejected]),
      [
        ['completed', 1_998, 2],
        ['completed', 1_000, 0],
        ['needs_reauth', 0, 0],
      ],
    );
    const refreshed = JSON.parse(await e.stores.secrets.get(oauth.configuration.credentialsSecretId)) as {
      accessToken: string;
      refreshToken: string;
    };
    assert.notEqual(refreshed.accessToken, granted.accessToken, 'the OAuth run refreshed its token');

    const planted = {
      'API key': plantedKey,
      'revoked API key': revokedKey,
      'owner email': ownerEmail,
      'access token': granted.accessToken,
      'refresh token': granted.refreshToken!,
      'refreshed access token': refreshed.accessToken,
      'refreshed refresh token': refreshed.refreshToken,
      'contact email': keyed.list.email(3),
      'account label': `Owner ${ownerEmail}`,
    };

    // What the server stores, read without the codec.
    const raw = new Client({ connection: e.env.connection });
    const histories: Array<{ workflowId: string; history: unknown }> = [];
    for (const c of configurations) {
      for await (const wf of raw.workflow.list({ query: `WorkflowId STARTS_WITH 'sync/${c.id}/'` })) {
        histories.push({
          workflowId: wf.workflowId,
          history: await raw.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory(),
        });
      }
    }
    // The three runs (each does its own dispatch).
    assert.equal(histories.length, 3);

    let encrypted = 0;
    let failures = 0;
    const codec = new EncryptionCodec(testPayloadKeys);
    let startInput: ProtoPayload | undefined;
    for (const { workflowId, history } of histories) {
      const { text, payloads, failures: found } = scan(history);
      for (const [what, secret] of Object.entries(planted)) {
        assert.ok(!text.includes(secret), `${what} readable in the history of ${workflowId}`);
      }
      for (const { path, payload } of payloads) {
        const encoding = Buffer.from(payload.metadata?.encoding ?? []).toString();
        // Search attributes stay readable for the server's index (ids, ESP, status, counts).
        if (path.includes('searchAttributes')) continue;
        // A patch marker (written by the SDK itself) names the patch, nothing else.
        if (path.includes('markerRecordedEventAttributes.details.patch-data')) {
          assert.match(
            Buffer.from(payload.data ?? []).toString(),
            /^\{"id":"[a-z0-9-]+","deprecated":(true|false)\}$/,
          );
          continue;
        }
        // A local activity's marker (written by the SDK itself) says which activity ran and when;
        // its input is never recorded, its result is encrypted like any other.
        if (path.includes('markerRecordedEventAttributes.details.data')) {
          const fields = Object.keys(JSON.parse(Buffer.from(payload.data ?? []).toString()) as object);
          assert.deepEqual(
            fields.filter((f) => !LOCAL_ACTIVITY_MARKER_FIELDS.includes(f)),
            [],
            `${workflowId}${path}`,
          );
          continue;
        }
        assert.equal(encoding, ENCRYPTED_ENCODING, `${workflowId}${path} is not encrypted`);
        encrypted++;
      }
      for (const failure of found) {
        assert.equal(failure.message, 'Encoded failure', `${workflowId}: a failure message is readable`);
        failures++;
      }
      // What the Web UI shows through the codec: every payload decrypted (inputs, results, heartbeat
      // details, failure messages and stacks), none naming a planted secret or address.
      const decoded = await codec.decode(payloads.map(({ payload }) => payload as Payload));
      const shown = decoded.map((p) => Buffer.from(p.data ?? []).toString('utf8')).join('\n');
      for (const [what, secret] of Object.entries(planted)) {
        assert.ok(!shown.includes(secret), `${what} shown by the Web UI in the history of ${workflowId}`);
      }
      assert.doesNotMatch(
        shown,
        /@[a-z0-9-]+\.example/,
        `an address in the decoded history of ${workflowId}`,
      );
      if (workflowId === `sync/${revoked.configuration.id}/${RUN_DATE}`) {
        const events = (
          history as { events: Array<Record<string, { input?: { payloads: ProtoPayload[] } }>> }
        ).events;
        startInput = events[0]!.workflowExecutionStartedEventAttributes!.input!.payloads[0];
      }
    }
    assert.ok(encrypted > 20, `expected many encrypted payloads, found ${encrypted}`);
    assert.ok(failures > 0, 'the revoked key produced at least one failure');

    // The Web UI's decode call: CORS preflight, then POST <endpoint>/decode with proto-JSON payloads.
    const app = createApp(
      webDeps(e.stores, async () => e.env.connection, {
        payloadKeys: testPayloadKeys,
        web: {
          publicUrl: 'http://localhost:3000',
          sessionSecret: 's'.repeat(40),
          admin: { token: 'admin-token-for-codec-test-1' },
        },
      }),
    );
    const server = createServer(app);
    const base = await listenLocal(server);
    const endpoint = `${base}/codec/${codecPathToken('s'.repeat(40))}`;
    const ui = 'http://localhost:8233';
    const toJson = (p: ProtoPayload) => ({
      metadata: Object.fromEntries(
        Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v).toString('base64')]),
      ),
      data: Buffer.from(p.data ?? []).toString('base64'),
    });
    const decode = (url: string, headers: Record<string, string>) =>
      fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-namespace': 'default', ...headers },
        body: JSON.stringify({ payloads: [toJson(startInput!)] }),
      });
    try {
      const preflight = await fetch(`${endpoint}/decode`, {
        method: 'OPTIONS',
        headers: {
          origin: ui,
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'content-type,x-namespace',
        },
      });
      assert.equal(preflight.status, 204);
      assert.equal(preflight.headers.get('access-control-allow-origin'), ui);
      assert.match(preflight.headers.get('access-control-allow-headers') ?? '', /X-Namespace/i);

      const decoded = await decode(`${endpoint}/decode`, { origin: ui });
      assert.equal(decoded.status, 200);
      assert.equal(decoded.headers.get('access-control-allow-origin'), ui);
      const body = (await decoded.json()) as {
        payloads: Array<{ metadata: { encoding: string }; data: string }>;
      };
      assert.equal(Buffer.from(body.payloads[0]!.metadata.encoding, 'base64').toString(), 'json/plain');
      assert.deepEqual(JSON.parse(Buffer.from(body.payloads[0]!.data, 'base64').toString()), {
        configurationId: revoked.configuration.id,
        runDate: RUN_DATE,
        mode: 'incremental',
      });

      // Wrong capability path, another origin, or no credentials: refused.
      assert.equal((await decode(`${base}/codec/not-the-token/decode`, { origin: ui })).status, 401);
      assert.equal((await decode(`${endpoint}/decode`, { origin: 'http://evil.example' })).status, 403);
      assert.equal((await decode(`${base}/codec/decode`, {})).status, 401);
      // The CLI's --codec-endpoint with --codec-auth: the admin token.
      assert.equal(
        (await decode(`${base}/codec/decode`, { authorization: 'Bearer admin-token-for-codec-test-1' }))
          .status,
        200,
      );
    } finally {
      await closeServer(server);
    }
  });
});
