// `npm run build` step: bundles the workflow code once, so workers start without webpack (faster,
// and without the bundler's memory peak). Workers fall back to bundling at start when it is absent.
import { writeFile } from 'node:fs/promises';
import { bundleWorkflowCode } from '@temporalio/worker';
import { failureConverterPath, payloadConverterPath, prebuiltBundlePath, workflowsPath } from '.';

async function main(): Promise<void> {
  const { code } = await bundleWorkflowCode({
    workflowsPath,
    failureConverterPath,
    payloadConverterPath,
    logger: silent,
  });
  await writeFile(prebuiltBundlePath, code);
  // On stderr: `npm run --silent bench -- --json` builds first, and its stdout is the JSON alone.
  console.error(`workflow bundle written to ${prebuiltBundlePath} (${Math.round(code.length / 1024)} KiB)`);
}

const noop = () => undefined;
const silent = { log: noop, trace: noop, debug: noop, info: noop, warn: noop, error: console.error };

main().catch((err) => {
  console.error(`bundling workflows failed: ${(err as Error).message}`);
  process.exit(1);
});
