import { processorContract } from './contract';
import { sendgridHarness } from './sendgrid-harness';

processorContract('SendGrid', () => sendgridHarness());
