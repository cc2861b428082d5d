// Run by test/leftovers.test.ts in a mocha of its own (its name is outside the suite's spec): a
// test that passes but leaves a server listening and an interval running, so the run cannot end
// by itself; the root hook must fail it, naming both.
import { createServer } from 'node:http';

describe('a test that closes nothing', () => {
  it('leaves a server listening and an interval running', async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    console.log(`fixture server port ${port}`);
    setInterval(function pollForever() {}, 60_000);
  });
});
