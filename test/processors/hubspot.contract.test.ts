import { processorContract } from './contract';
import { hubspotHarness } from './hubspot-harness';

processorContract('HubSpot', hubspotHarness);
