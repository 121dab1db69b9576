import { publisherOptions } from '../config/options.js';
import type { Config } from '../config/schema.js';
import { deviceId } from '../core/device-id.js';
import { componentLogger, type Logger } from '../core/log.js';
import { removalMessage } from '../mqtt/discovery.js';
import { MqttPublisher } from '../mqtt/publisher.js';
import { defaultBaseTopic } from '../mqtt/topics.js';

/**
 * `edge-classifier run --remove-discovery`: removes this device (and so all
 * its entities) from Home Assistant by publishing an empty retained message
 * on its discovery topic, then disconnects. It announces nothing: the
 * daemon's availability is left as it is. Resolves with the topic cleared.
 * @throws when the configuration has no broker URL (the embedded broker
 *   holds nothing between runs), or the broker cannot be reached within
 *   `mqtt.connect_timeout_ms`, or does not acknowledge.
 */
export async function removeDiscovery(config: Config, log: Logger, id: string = deviceId()): Promise<string> {
  const url = config.mqtt.url;
  if (url === null) throw new Error('--remove-discovery needs the broker Home Assistant uses: set mqtt.url (or --mqtt-url)');
  const options = publisherOptions(config, id);
  const publisher = new MqttPublisher({
    ...options,
    clientId: `${options.clientId}-remove`.slice(0, 128),
    url,
    announce: false,
    waitForConnect: true,
    log: componentLogger(log, 'mqtt'),
  });
  const message = removalMessage({ prefix: config.homeassistant.prefix, deviceId: id, defaultBase: defaultBaseTopic(id), topics: publisher.topics });
  try {
    await publisher.start();
    if (!(await publisher.publishExternalRetained(message.topic, message.payload))) {
      throw new Error(`the broker did not acknowledge the removal on ${message.topic}`);
    }
  } finally {
    await publisher.stop();
  }
  return message.topic;
}
