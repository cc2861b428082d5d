// Loaded by path (DataConverter.failureConverterPath) into clients, the worker and the workflow
// bundle: error messages and stack traces travel as an encoded payload, so the encrypting codec
// covers them too and the server's history holds only "Encoded failure".
import { DefaultFailureConverter } from '@temporalio/common';

export const failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });
