import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { Aedes } from 'aedes';
import type { Lifecycle } from '../core/lifecycle.js';
import type { Logger } from '../core/log.js';

/** Options of `EmbeddedBroker` (config key `mqtt.embedded_port`). */
interface EmbeddedBrokerOptions {
  /** TCP port on 127.0.0.1, 0..65535; 0 picks a free ephemeral port. */
  readonly port: number;
  readonly log: Logger;
}

/**
 * An MQTT 3.1.1 broker inside the daemon (aedes v1, in-memory retained
 * messages and sessions), listening on 127.0.0.1 only, for the quick start
 * when no broker URL is configured. Retained messages live as long as the
 * process. Local subscribers connect to `url`.
 *
 * Lifecycle (the one `Lifecycle`): the constructor does no I/O; `start()`
 * creates the broker with `Aedes.createBroker()` (async in aedes v1) and
 * listens; `stop()` closes the clients, the broker and the server
 * (idempotent, safe after a failed start).
 */
export class EmbeddedBroker implements Lifecycle {
  readonly name = 'embedded broker';
  private readonly requestedPort: number;
  private readonly log: Logger;
  private broker: Aedes | undefined;
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private actualPort: number | undefined;

  constructor(options: EmbeddedBrokerOptions) {
    this.requestedPort = options.port;
    this.log = options.log;
  }

  /** The port listened on (the ephemeral one when 0 was asked). Throws before `start()`. */
  get port(): number {
    if (this.actualPort === undefined) throw new Error('embedded MQTT broker is not started: no port yet');
    return this.actualPort;
  }

  /** `mqtt://127.0.0.1:<port>`. Throws before `start()`. */
  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  /** Number of connected MQTT clients. */
  get clients(): number {
    return this.broker?.connectedClients ?? 0;
  }

  /**
   * Starts the broker on 127.0.0.1:`port`. Rejects with an error naming the
   * port when it is in use (EADDRINUSE) and suggesting `mqtt.embedded_port`,
   * `mqtt.url`, or `--mqtt-url mqtt://127.0.0.1:<port>` on the command line
   * (e.g. `npm start -- --mqtt-url …` in the quick start) to use the broker
   * already running there; with any other listen error, an error naming the
   * port and the cause. Nothing is left running then.
   */
  async start(): Promise<void> {
    if (this.server !== undefined) return;
    const broker = await Aedes.createBroker();
    broker.on('clientError', (client, err) => this.log.debug({ client: client.id, err: err.message }, 'embedded MQTT broker: client error'));
    const server = createServer(broker.handle);
    server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.requestedPort, '127.0.0.1', () => {
          server.removeListener('error', reject);
          resolve();
        });
      });
    } catch (err) {
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'EADDRINUSE') {
        throw new Error(
          `cannot start the embedded MQTT broker on 127.0.0.1:${this.requestedPort}: the port is in use (EADDRINUSE). ` +
            'Set mqtt.embedded_port to a free port (0 picks one) or mqtt.url to use the broker already running there ' +
            `(command line: --mqtt-url mqtt://127.0.0.1:${this.requestedPort}; quick start: npm start -- --mqtt-url mqtt://127.0.0.1:${this.requestedPort})`,
        );
      }
      throw new Error(`cannot start the embedded MQTT broker on 127.0.0.1:${this.requestedPort}: ${e.message}`);
    }
    server.on('error', (err) => this.log.error({ err: err.message }, 'embedded MQTT broker: server error'));
    this.broker = broker;
    this.server = server;
    this.actualPort = (server.address() as AddressInfo).port;
    this.log.info({ url: this.url }, `no broker URL configured: started an embedded MQTT broker on ${this.url}`);
  }

  /** Closes every client connection, the broker and the TCP server. Idempotent. */
  async stop(): Promise<void> {
    const broker = this.broker;
    const server = this.server;
    this.broker = undefined;
    this.server = undefined;
    if (broker === undefined || server === undefined) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    await new Promise<void>((resolve) => broker.close(() => resolve()));
    // aedes closes its clients; destroy any socket that never sent CONNECT.
    for (const socket of this.sockets) socket.destroy();
    await closed;
    this.log.info({ port: this.actualPort }, 'embedded MQTT broker stopped');
  }
}
