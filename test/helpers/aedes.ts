/**
 * The embedded broker the daemon ships (`EmbeddedBroker`, aedes) with the
 * handle `startMosquitto` gives, so one suite runs against both:
 *
 *   const broker = await startAedes(t);       // a free port on 127.0.0.1
 *   await broker.stop(); await broker.start(); // same port, retained messages lost
 */
import { silentLogger } from '../../src/core/log.js';
import { EmbeddedBroker } from '../../src/mqtt/embedded-broker.js';
import { freePort } from './mosquitto.js';

export interface TestBroker {
  readonly port: number;
  readonly url: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

interface TeardownTarget {
  teardown(fn: () => unknown): void;
}

export async function startAedes(t?: TeardownTarget, port?: number): Promise<TestBroker> {
  const fixed = port ?? (await freePort());
  let broker = new EmbeddedBroker({ port: fixed, log: silentLogger() });
  await broker.start();
  t?.teardown(() => broker.stop());
  return {
    port: fixed,
    url: `mqtt://127.0.0.1:${fixed}`,
    async start() {
      broker = new EmbeddedBroker({ port: fixed, log: silentLogger() });
      await broker.start();
    },
    stop: () => broker.stop(),
  };
}
