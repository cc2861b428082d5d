import { IterableProcessor, type IterableProcessorOptions } from '../../src/processors/iterable';
import type { ProcessorTarget } from '../../src/processors/types';
import { LocalSecretStore } from '../../src/storage/local-secret-store';
import { FakeIterable, type FakeProject } from '../fakes/iterable-server';
import { tempDir } from '../support/tmp';
import { savedTarget, type ProcessorHarness } from './harness';

/** Two fake data centers (US, EU); every target is a fresh project on one of them. */
export async function iterableHarness(options: IterableProcessorOptions = {}): Promise<
  ProcessorHarness & {
    us: FakeIterable;
    eu: FakeIterable;
    projectOf(target: ProcessorTarget): FakeProject;
    /** A new project, in its own organization unless one is named. */
    connect(region: 'us' | 'eu', organization?: string): Promise<ProcessorTarget>;
  }
> {
  const [us, eu] = await Promise.all([new FakeIterable('us').start(), new FakeIterable('eu').start()]);
  const dir = await tempDir();
  const secrets = new LocalSecretStore(`${dir}/secrets`, { keyFile: `${dir}/key` });
  const processor = new IterableProcessor(
    { secrets },
    { apiBaseUrl: us.url, euApiBaseUrl: eu.url, jobPollMs: 5, pageBytes: 8 * 1024, ...options },
  );
  const projects = new Map<string, FakeProject>();
  const projectOf = (target: ProcessorTarget) => projects.get(target.id)!;

  const connect = async (region: 'us' | 'eu', organization?: string): Promise<ProcessorTarget> => {
    const project = (region === 'us' ? us : eu).addProject(organization);
    const { credentials, account } = await processor.connectWithApiKey(project.apiKey);
    const target = await savedTarget(secrets, credentials, {
      esp: 'iterable',
      espAccountId: account.accountId,
      espListId: undefined,
      fieldName: processor.fieldName(),
      apiBaseUrl: account.apiBaseUrl,
    });
    projects.set(target.id, project);
    return target;
  };

  return {
    us,
    eu,
    projectOf,
    connect,
    processor,
    secrets,
    invalidApiKey: 'PLANTED0123456789abcdef0123456789',
    connectWithApiKey: () => connect('us'),
    async seed(target, contacts) {
      return projectOf(target).seed(contacts);
    },
    async deleteField(target) {
      const project = projectOf(target);
      project.fields.delete(target.fieldName);
      for (const u of project.users) delete u.data[target.fieldName];
    },
    async fieldExists(target) {
      return projectOf(target).fields.has(target.fieldName);
    },
    async valueOf(target, contactId) {
      const value = projectOf(target).find(contactId)?.data[target.fieldName];
      return typeof value === 'string' && value !== '' ? value : undefined;
    },
    async rejectRows(target, contactIds) {
      const project = projectOf(target);
      for (const id of contactIds) project.forgotten.add(project.find(id)!);
    },
    async rateLimit(target, on) {
      projectOf(target).rateLimited = on;
      // Iterable's 429 carries no Retry-After or reset header: espresso's default delay applies.
      return { retryAfterMs: 1000 };
    },
    stop: async () => {
      await Promise.all([us.stop(), eu.stop()]);
    },
  };
}
