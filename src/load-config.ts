import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, loadConfig, type AppConfig } from './config';
import { projectRoot } from './paths';

/** For entry points: a bad environment stops the process with a message naming the variable. */
export function loadConfigOrExit(): AppConfig {
  // A .env file at the project root fills in variables the environment does not set.
  const envFile = join(projectRoot, '.env');
  if (existsSync(envFile)) process.loadEnvFile(envFile);
  try {
    return loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`espresso: ${err.message}\nSee .env.example for every variable and its default.`);
      process.exit(2);
    }
    throw err;
  }
}
