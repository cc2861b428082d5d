import { processorContract } from './contract';
import { sandboxHarness } from './sandbox-harness';

processorContract('Sandbox ESP', sandboxHarness);
