import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { connect, type IClientOptions } from 'mqtt';

/**
 * Who is publishing on a base topic, so that a second daemon started with
 * the same base topic (two quick starts on one machine, a copied config)
 * can be refused with a message naming the first, instead of both taking
 * each other's session on the broker. Published as `instance` in the
 * retained `<base>/stats`.
 */
export interface InstanceInfo {
  readonly hostname: string;
  /** `/proc/sys/kernel/random/boot_id` (changes at every boot); '' where it does not exist. */
  readonly boot_id: string;
  readonly pid: number;
  /** When the daemon started, ISO 8601 UTC. */
  readonly started: string;
}

/** This process's `InstanceInfo`; `started` is the daemon's start time. */
export function thisInstance(started: Date): InstanceInfo {
  return { hostname: hostname(), boot_id: bootId(), pid: process.pid, started: started.toISOString() };
}

function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return '';
  }
}

/** True when process `pid` exists on this machine (signal 0; EPERM means it exists but is not ours). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * True when `other` is a different daemon that is running right now on this
 * machine (same boot, its pid alive and not ours). A record from an earlier
 * boot, another host or a process that has exited is not: the broker may
 * still hold that connection (until its keepalive runs out), and taking it
 * over is right. Another host sharing the base topic is found later, by the
 * take-over fight it causes (see `MqttPublisher`'s client id conflict).
 */
export function isLiveOtherInstance(other: InstanceInfo, self: InstanceInfo = thisInstance(new Date())): boolean {
  if (other.boot_id === '' || other.boot_id !== self.boot_id || other.hostname !== self.hostname) return false;
  return other.pid !== self.pid && alive(other.pid);
}

/** What `probeBaseTopic` found: the retained availability and the instance from the retained stats. */
export interface ProbeResult {
  readonly availability: string | undefined;
  readonly instance: InstanceInfo | undefined;
}

/**
 * Looks at the retained `<base>/availability` and `<base>/stats` with a
 * short-lived connection of its own (client id `<clientId>-probe`, so the
 * daemon's session, or another daemon's, is not taken over). Resolves
 * after the retained messages arrived or `waitMs`; never rejects: a broker
 * that cannot be reached gives an empty result (the daemon's own connection
 * then reports why).
 */
export async function probeBaseTopic(url: string, options: IClientOptions, base: string, waitMs = 1500): Promise<ProbeResult> {
  const client = connect(url, {
    ...options,
    clientId: `${String(options.clientId ?? 'edge-classifier')}-probe`.slice(0, 128),
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: waitMs,
    will: undefined,
  });
  client.on('error', () => {});
  let availability: string | undefined;
  let instance: InstanceInfo | undefined;
  try {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, waitMs);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      client.on('message', (topic, payload, packet) => {
        if (!packet.retain) return;
        if (topic === `${base}/availability`) availability = payload.toString();
        else {
          try {
            const s = JSON.parse(payload.toString()) as { instance?: InstanceInfo };
            if (s.instance && typeof s.instance.pid === 'number') instance = s.instance;
          } catch {
            // Not our stats payload: nothing to learn.
          }
        }
      });
      client.once('close', done);
      client.once('connect', () => {
        // Retained messages are sent before the SUBACK's callback fires on mosquitto and aedes alike; a
        // short grace covers brokers that interleave them.
        client.subscribe([`${base}/availability`, `${base}/stats`], { qos: 0 }, () => setTimeout(done, 100));
      });
    });
  } finally {
    client.end(true);
  }
  return { availability, instance };
}
