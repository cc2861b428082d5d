import {
  CreateSecretCommand,
  DeleteSecretCommand,
  GetSecretValueCommand,
  ListSecretsCommand,
  PutSecretValueCommand,
  ResourceExistsException,
  ResourceNotFoundException,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { assertValidKey, NotFoundError } from './errors';
import type { SecretStore } from './secret-store';

/** Secrets in AWS Secrets Manager, one secret per id, named `<prefix><id>`. */
export class AwsSecretStore implements SecretStore {
  readonly description: string;

  constructor(
    private readonly client: SecretsManagerClient,
    private readonly prefix: string,
  ) {
    this.description = `AWS Secrets Manager (prefix ${prefix || '(none)'})`;
  }

  async get(id: string): Promise<string> {
    try {
      const out = await this.client.send(new GetSecretValueCommand({ SecretId: this.name(id) }));
      if (out.SecretString === undefined) throw new NotFoundError('secret', id);
      return out.SecretString;
    } catch (err) {
      if (err instanceof ResourceNotFoundException) throw new NotFoundError('secret', id);
      throw err;
    }
  }

  async put(id: string, value: string): Promise<void> {
    const name = this.name(id);
    try {
      await this.client.send(new CreateSecretCommand({ Name: name, SecretString: value }));
    } catch (err) {
      if (!(err instanceof ResourceExistsException)) throw err;
      await this.client.send(new PutSecretValueCommand({ SecretId: name, SecretString: value }));
    }
  }

  async createIfAbsent(id: string, value: string): Promise<string> {
    try {
      await this.client.send(new CreateSecretCommand({ Name: this.name(id), SecretString: value }));
      return value;
    } catch (err) {
      if (!(err instanceof ResourceExistsException)) throw err;
      return this.get(id);
    }
  }

  async delete(id: string): Promise<void> {
    try {
      await this.client.send(
        new DeleteSecretCommand({ SecretId: this.name(id), ForceDeleteWithoutRecovery: true }),
      );
    } catch (err) {
      if (!(err instanceof ResourceNotFoundException)) throw err;
    }
  }

  async list(): Promise<string[]> {
    const ids: string[] = [];
    let token: string | undefined;
    do {
      const out = await this.client.send(
        new ListSecretsCommand({
          NextToken: token,
          Filters: this.prefix ? [{ Key: 'name', Values: [this.prefix] }] : undefined,
        }),
      );
      for (const s of out.SecretList ?? []) {
        if (s.Name?.startsWith(this.prefix)) ids.push(s.Name.slice(this.prefix.length));
      }
      token = out.NextToken;
    } while (token);
    return ids.sort();
  }

  private name(id: string): string {
    assertValidKey('secret', id);
    return `${this.prefix}${id}`;
  }
}
