import { z } from 'zod';
import { POWER_SAVE_INTERVAL_S } from '../camera/capture.js';
import { MAX_FPS, MAX_FRAME_SIDE, MIN_FRAME_SIDE } from '../camera/frame-source.js';
import { checkRoi } from '../camera/roi.js';
import { LOG_LEVELS } from '../core/log.js';
import { MAX_BCM_PIN } from '../core/types.js';
import { validateDiscoveryPrefix } from '../mqtt/discovery.js';

/**
 * The configuration file's schema: YAML or JSON, snake_case keys, every key
 * documented here (`.describe`) and in the README's configuration reference,
 * unknown keys refused at every level (`strictObject`). Paths inside a config
 * file are resolved against the file's folder; paths given as flags or
 * environment variables against the current directory.
 */

const positiveInt = () => z.number().int().positive();
const fileOrNull = z.string().min(1).nullable();

/** A per-channel value (R, G, B) or one value for all three channels. */
const channelValues = z.union([z.number(), z.array(z.number()).length(3)], {
  error: 'expected a number or a list of 3 numbers (R, G, B)',
});

/** Shortest and longest interval of `source.mode: interval`, in seconds. */
const MIN_INTERVAL_S = 0.1;
const MAX_INTERVAL_S = 86400;

const roiSchema = z
  .strictObject({
    x: z.number().describe('Left edge, fraction of the frame width.'),
    y: z.number().describe('Top edge, fraction of the frame height.'),
    width: z.number().describe('Width, fraction of the frame width.'),
    height: z.number().describe('Height, fraction of the frame height.'),
  })
  .superRefine((roi, ctx) => {
    try {
      checkRoi(roi, 'the ROI');
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
    }
  });

const triggerSchema = z
  .strictObject({
    pin: z.number().int().min(0).max(MAX_BCM_PIN).nullable().describe('BCM pin of the trigger input (0-27). null: no GPIO trigger.'),
    edge: z.enum(['rising', 'falling', 'both']).describe('Which change of the input fires: `rising` (low to high), `falling`, or `both`.'),
    debounce_ms: z.number().int().min(0).max(60000).describe('Changes within this many ms after a trigger are ignored (contact bounce, PIR chatter).'),
    pull: z.enum(['up', 'down', 'none']).describe('Bias of the input: `up`, `down` or `none` (sysfs GPIO keeps the boot-time bias; see the README).'),
    burst: z.number().int().min(1).max(100).describe('Frames classified per trigger.'),
  })
  .describe('The trigger input of `mode: trigger`.');

const motionSchema = z
  .strictObject({
    enabled: z.boolean().describe('Skip inference while the picture looks like the background (any mode); skipped frames are counted.'),
    threshold: z.number().min(0).max(1).describe('Fraction of the 32x24 luma thumbnail that must differ from the background for motion (0-1).'),
    cell_delta: z.number().int().min(1).max(255).describe('Luma difference (levels, 1-255) from the background above which a thumbnail cell differs.'),
  })
  .describe('The motion gate.');

const sourceSchema = z
  .strictObject({
    spec: z
      .string()
      .min(1)
      .describe(
        'Where frames come from: `rpicam` (Pi camera, `rpicam:N` for camera N), a V4L2 device such as `/dev/video0`, an `rtsp://`/`http://` URL, a video file, or a directory of images (replayed in name order).',
      ),
    width: z.number().int().min(MIN_FRAME_SIDE).max(MAX_FRAME_SIDE).describe('Frame width asked of the camera or ffmpeg, in pixels.'),
    height: z.number().int().min(MIN_FRAME_SIDE).max(MAX_FRAME_SIDE).describe('Frame height asked of the camera or ffmpeg, in pixels.'),
    fps: z.number().positive().max(MAX_FPS).describe('Frames per second asked of the camera; the replay rate for a directory.'),
    rotation: z
      .union([z.literal(0), z.literal(90), z.literal(180), z.literal(270)], { error: 'expected 0, 90, 180 or 270' })
      .describe('Clockwise rotation in degrees: 0, 90, 180 or 270 for ffmpeg sources; 0 or 180 for the Pi camera (rpicam-vid accepts no other).'),
    hflip: z.boolean().describe('Mirror the Pi camera image horizontally.'),
    vflip: z.boolean().describe('Flip the Pi camera image vertically.'),
    loop: z.boolean().describe('Replay a directory or a video file again from the start when it ends.'),
    jpeg_quality: z.number().int().min(1).max(100).describe('MJPEG quality asked of rpicam-vid (1-100); ffmpeg maps it to its -q:v scale.'),
    format: z
      .enum(['raw', 'mjpeg'])
      .describe(
        '`raw`: frames made for the model without JPEG (the Pi camera writes I420 at about the model size, ffmpeg RGB at the model size); `mjpeg`: JPEG frames at width x height, decoded and resized by the daemon. Replayed folders are images either way.',
      ),
    roi: roiSchema
      .nullable()
      .describe(
        'Region of interest {x, y, width, height} as fractions of the frame (0-1); applied by the camera or ffmpeg, by the preprocessing for replayed files. null: the whole frame.',
      ),
    mode: z
      .enum(['continuous', 'interval', 'trigger'])
      .describe(
        '`continuous`: classify frames as fast as the model allows; `interval`: one frame every interval_s; `trigger`: a burst of frames when the trigger input fires.',
      ),
    interval_s: z
      .number()
      .min(MIN_INTERVAL_S)
      .max(MAX_INTERVAL_S)
      .describe(
        `Seconds between classified frames in interval mode (${MIN_INTERVAL_S}-${MAX_INTERVAL_S}). From ${POWER_SAVE_INTERVAL_S} s on, the Pi camera runs only around each capture.`,
      ),
    trigger: triggerSchema,
    motion: motionSchema,
    stall_timeout_s: z
      .number()
      .positive()
      .max(3600)
      .nullable()
      .describe('A camera process alive but silent this long is restarted. null: max(5 frame periods, 5 s).'),
    frozen_s: z
      .number()
      .min(0)
      .max(86400)
      .describe('Report `camera_frozen` when the picture has not changed at all for this many seconds (0: off; always off for replayed folders).'),
  })
  .describe('The frame source.');

const modelSchema = z
  .strictObject({
    path: z.string().min(1).describe('The .tflite classifier to run (uint8, int8 or float32 input).'),
    labels: fileOrNull.describe(
      'A labels file (one label per line, or `index label` lines); overrides the labels stored in the model. null: use the model metadata.',
    ),
    cpu_fallback: fileOrNull.describe('A CPU model to run when `inference.delegate` is `edgetpu` and the Edge TPU cannot be used. null: exit instead.'),
  })
  .describe('The model.');

const inferenceSchema = z
  .strictObject({
    delegate: z.enum(['cpu', 'edgetpu']).describe('`cpu`, or `edgetpu` for a Coral Edge TPU through libedgetpu.so.1.'),
    edgetpu_device: z
      .string()
      .regex(/^(usb|pci)(:\d+)?$/, 'expected usb, usb:N, pci or pci:N')
      .nullable()
      .describe('Which Edge TPU: `usb`, `usb:0`, `pci:0`… null: the first one found.'),
    engine: z
      .enum(['auto', 'tflite', 'tflite-xnnpack', 'litert-wasm', 'edgetpu'])
      .describe(
        'What runs the model: `auto` (measure the engines at start, keep the fastest that agrees with TFLite, cached per model, library and machine), `tflite` (TFLite C library, default kernels), `tflite-xnnpack` (the same with the XNNPACK delegate), `litert-wasm` (LiteRT.js, WebAssembly), or `edgetpu`.',
      ),
    threads: z
      .union([z.literal('auto'), positiveInt().max(16)], { error: 'expected auto or a whole number from 1 to 16' })
      .describe('CPU threads for the interpreter, or `auto` to measure 1 … the number of cores − 1 (one core is left for the frames) and keep the fastest.'),
    library: fileOrNull.describe(
      'The TFLite C library (`libtensorflowlite_c.so`, e.g. a newer LiteRT build). null: the TFLite 2.9 library bundled in the tfjs-tflite-node package.',
    ),
    cache: fileOrNull.describe(
      'JSON file where `auto` keeps its engine choice. null: `engine-choice.json` in $STATE_DIRECTORY (systemd), else $XDG_STATE_HOME/edge-classifier or ~/.local/state/edge-classifier.',
    ),
    top_k: positiveInt().max(1000).describe('How many classes to report per frame, highest score first.'),
    threshold: z.number().min(0).max(1).describe('Score threshold: classes scoring below it are not reported (0-1).'),
  })
  .describe('How the classifier runs.');

const preprocessSchema = z
  .strictObject({
    resize: z
      .enum(['stretch', 'crop', 'letterbox'])
      .describe('How a frame becomes the input size: `stretch` the whole frame, `crop` the centre to fill, or `letterbox` with black bars.'),
    mean: channelValues
      .nullable()
      .describe('Per-channel mean subtracted from pixels (0-255) for float inputs: x = (pixel - mean) / std. null: from the model metadata.'),
    std: channelValues.nullable().describe('Per-channel standard deviation for float inputs. null: from the model metadata.'),
    input_size: z
      .union([positiveInt().max(4096), z.array(positiveInt().max(4096)).length(2)], { error: 'expected a size in pixels or [height, width]' })
      .nullable()
      .describe('Input height and width ([H, W], or one number for both) for a model whose input size is free (shape_signature [1,-1,-1,3]). null: 224.'),
  })
  .superRefine((p, ctx) => {
    // One without the other would silently pair a configured value with 0 or 1, not with the model's own.
    if ((p.mean === null) !== (p.std === null)) {
      const missing = p.mean === null ? 'mean' : 'std';
      ctx.addIssue({
        code: 'custom',
        path: [missing],
        message: `set both preprocess.mean and preprocess.std, or neither (to use the model metadata); ${missing} is missing`,
      });
    }
  })
  .describe('How frames become input tensors.');

const tlsSchema = z
  .strictObject({
    ca: fileOrNull.describe('PEM file of the certificate authority that signed the broker certificate.'),
    cert: fileOrNull.describe('PEM client certificate, for brokers that require one.'),
    key: fileOrNull.describe('PEM private key of the client certificate.'),
    reject_unauthorized: z.boolean().describe('Refuse a broker whose certificate does not verify. Leave true outside tests.'),
  })
  .describe('TLS for `mqtts://` URLs.');

const mqttSchema = z
  .strictObject({
    url: z
      .string()
      .regex(/^(mqtts?|wss?|tcp|ssl):\/\/.+/, 'expected an mqtt://, mqtts://, ws:// or wss:// URL')
      .nullable()
      .describe('Broker URL, e.g. `mqtt://broker.local:1883`. null: start an embedded broker on 127.0.0.1.'),
    embedded_port: z.number().int().min(0).max(65535).describe('Port of the embedded broker when `url` is null (0: any free port).'),
    base_topic: z.string().min(1).nullable().describe('Topic prefix. null: `edge-classifier/<device id>`.'),
    client_id: z.string().min(1).max(128).nullable().describe('MQTT client id. null: `edge-classifier-<device id>`.'),
    username: z.string().nullable().describe('Broker user name.'),
    password: z.string().nullable().describe('Broker password (prefer the EDGE_CLASSIFIER_MQTT_PASSWORD environment variable).'),
    keepalive: z.number().int().min(0).max(65535).describe('Keepalive interval in seconds.'),
    qos: z
      .union([z.literal(0), z.literal(1), z.literal(2)], { error: 'expected 0, 1 or 2' })
      .describe('QoS of prediction, state and gpio messages (0, 1 or 2).'),
    prediction_interval_ms: z.number().int().min(0).describe('Rate limit: at most one prediction message per this many ms (0: one per classified frame).'),
    reconnect_period_ms: z.number().int().min(100).describe('Wait between reconnect attempts, in ms.'),
    connect_timeout_ms: z.number().int().min(100).describe('How long one connection attempt to the broker may take, in ms.'),
    protocol: z
      .enum(['auto', '5', '3.1.1'])
      .describe('MQTT version: `5`, `3.1.1`, or `auto`: 5, and 3.1.1 when the broker refuses 5 (the embedded broker speaks 3.1.1).'),
    stats_interval_s: z.number().min(1).max(86400).describe('How often `<base>/stats` is published, in seconds.'),
    commands: z.boolean().describe('Accept commands on `<base>/set/...` and `<base>/request/...`. false: subscribe to nothing.'),
    command_rate: z.number().positive().max(1000).describe('Commands accepted per second (bursts of up to 20); the rest are refused and counted.'),
    tls: tlsSchema,
  })
  .describe('MQTT output.');

const stateSchema = z
  .strictObject({
    min_score: z.number().min(0).max(1).describe('Score a label needs to become `<base>/state` (0: the inference threshold decides).'),
    hysteresis: z
      .number()
      .min(0)
      .max(1)
      .describe(
        "The state's label keeps holding while its score is at least its threshold minus this (on above the threshold, off only below threshold − hysteresis).",
      ),
    min_frames: z
      .number()
      .int()
      .min(1)
      .max(1000)
      .describe('A new state needs this many of the last `window_frames` frames to agree (N of M). Drives GPIO rules too.'),
    window_frames: z
      .number()
      .int()
      .min(1)
      .max(1000)
      .nullable()
      .describe('How many of the latest frames `min_frames` counts in (M). null: `min_frames` (N frames in a row).'),
    min_dwell_ms: z.number().int().min(0).describe('Least time a state (and a GPIO output) is kept before it may change again, in ms.'),
    expire_after_s: z.number().min(0).describe('Without a classified frame for this long the state becomes `unknown` (retained), in seconds. 0: never.'),
    labels: z
      .record(z.string().trim().min(1), z.number().min(0).max(1))
      .describe('Per-label score thresholds replacing `min_score`, e.g. `{"Egyptian cat": 0.6}` (matched as GPIO labels are: case-insensitive, synonyms).'),
  })
  .superRefine((s, ctx) => {
    if (s.window_frames !== null && s.window_frames < s.min_frames) {
      ctx.addIssue({ code: 'custom', path: ['window_frames'], message: `expected at least min_frames (${s.min_frames}) or null` });
    }
  })
  .describe('How per-frame results become the state that `<base>/state`, Home Assistant and GPIO rules follow (smoothing).');

const snapshotSchema = z
  .strictObject({
    enabled: z.boolean().describe('Publish a JPEG of the frame that changed the state on `<base>/snapshot` (retained).'),
    width: z.number().int().min(16).max(4096).describe('Largest snapshot width in pixels (never enlarged).'),
    quality: z.number().int().min(1).max(100).describe('JPEG quality of snapshots (1-100).'),
    dir: fileOrNull.describe('Also write each snapshot to this folder. null: do not.'),
    max_files: z.number().int().min(1).describe('Most snapshot files kept in `dir`; the oldest are deleted first.'),
    max_bytes: z.number().int().min(1).describe('Most bytes of snapshot files kept in `dir`; the oldest are deleted first.'),
  })
  .describe('Snapshots of the frames that change the state.');

const homeassistantSchema = z
  .strictObject({
    enabled: z
      .boolean()
      .nullable()
      .describe('Announce the device to Home Assistant by MQTT discovery. null: yes when `mqtt.url` is set (not with the embedded broker).'),
    prefix: z
      .string()
      .superRefine((prefix, ctx) => {
        try {
          validateDiscoveryPrefix(prefix);
        } catch (err) {
          ctx.addIssue({ code: 'custom', message: (err as Error).message.replace(/^Home Assistant discovery prefix "[^"]*" /, '') });
        }
      })
      .describe("Home Assistant's discovery prefix (its MQTT integration's setting)."),
    device_name: z.string().trim().min(1).max(100).nullable().describe('Device name shown in Home Assistant. null: `edge-classifier <host name>`.'),
    watch: z.array(z.string().trim().min(1)).describe('Labels that get a binary sensor each (on while the label is the state).'),
  })
  .describe('Home Assistant MQTT discovery.');

const gpioRuleSchema = z.strictObject({
  pin: z.number().int().min(0).max(MAX_BCM_PIN).describe('BCM pin number (0-27), not the header pin number.'),
  labels: z.array(z.string().trim().min(1)).min(1).describe('Labels that switch the output on (any of them, case-insensitive).'),
  min_score: z.number().min(0).max(1).describe('Minimum score of a matching label.'),
  active_low: z.boolean().describe('Drive the pin low for "on" (relay boards that switch on a low input).'),
  hold_ms: z.number().int().min(0).describe('Keep the output on at least this long after the last match, in ms.'),
});

const gpioSchema = z
  .strictObject({
    backend: z
      .enum(['auto', 'sysfs', 'virtual'])
      .describe(
        '`sysfs` drives real pins through onoff, `virtual` only logs and publishes, `auto` picks sysfs, and virtual only on a machine without GPIO (no /sys/class/gpio, not a Raspberry Pi).',
      ),
    rules: z
      .array(gpioRuleSchema)
      .superRefine((rules, ctx) => {
        const seen = new Map<number, number>();
        rules.forEach((r, i) => {
          const first = seen.get(r.pin);
          if (first !== undefined) {
            ctx.addIssue({ code: 'custom', path: [i, 'pin'], message: `BCM pin ${r.pin} is already used by gpio.rules[${first}]: expected one rule per pin` });
          } else seen.set(r.pin, i);
        });
      })
      .describe('Outputs switched by predictions.'),
  })
  .describe('GPIO outputs.');

const logSchema = z
  .strictObject({
    level: z.enum(LOG_LEVELS).describe('Log level.'),
    format: z.enum(['auto', 'json', 'pretty']).describe('`json` lines (for journald), `pretty` lines, or `auto`: pretty on a terminal.'),
  })
  .describe('Logging to stdout.');

export const configSchema = z
  .strictObject({
    source: sourceSchema,
    model: modelSchema,
    inference: inferenceSchema,
    preprocess: preprocessSchema,
    mqtt: mqttSchema,
    gpio: gpioSchema,
    state: stateSchema,
    snapshot: snapshotSchema,
    homeassistant: homeassistantSchema,
    log: logSchema,
  })
  .superRefine((c, ctx) => {
    // One pin cannot be both an input and an output.
    const pin = c.source.trigger.pin;
    const rule = pin === null ? -1 : c.gpio.rules.findIndex((r) => r.pin === pin);
    if (rule >= 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['source', 'trigger', 'pin'],
        message: `BCM pin ${pin} is already used as an output by gpio.rules[${rule}]: expected a free pin for the trigger input`,
      });
    }
  })
  .describe('edge-classifier configuration');

/** The fully resolved configuration the daemon runs with (every key present). */
export type Config = z.infer<typeof configSchema>;
export type GpioRuleConfig = z.infer<typeof gpioRuleSchema>;

/** Default for every key; a config file only needs the keys it changes. */
export const DEFAULTS: Config = {
  source: {
    spec: 'rpicam',
    width: 640,
    height: 480,
    fps: 10,
    rotation: 0,
    hflip: false,
    vflip: false,
    loop: true,
    jpeg_quality: 80,
    format: 'raw',
    roi: null,
    mode: 'continuous',
    interval_s: 10,
    trigger: { pin: null, edge: 'rising', debounce_ms: 200, pull: 'none', burst: 3 },
    motion: { enabled: false, threshold: 0.02, cell_delta: 20 },
    stall_timeout_s: null,
    frozen_s: 60,
  },
  model: { path: 'models/tf2_mobilenet_v2_1.0_224_ptq.tflite', labels: null, cpu_fallback: null },
  inference: { engine: 'auto', delegate: 'cpu', edgetpu_device: null, threads: 'auto', library: null, cache: null, top_k: 3, threshold: 0.1 },
  preprocess: { resize: 'stretch', mean: null, std: null, input_size: null },
  mqtt: {
    url: null,
    embedded_port: 1883,
    base_topic: null,
    client_id: null,
    username: null,
    password: null,
    keepalive: 30,
    qos: 1,
    prediction_interval_ms: 0,
    reconnect_period_ms: 2000,
    connect_timeout_ms: 10000,
    protocol: 'auto',
    stats_interval_s: 60,
    commands: true,
    command_rate: 5,
    tls: { ca: null, cert: null, key: null, reject_unauthorized: true },
  },
  gpio: { backend: 'auto', rules: [] },
  state: { min_score: 0, hysteresis: 0, min_frames: 1, window_frames: null, min_dwell_ms: 0, expire_after_s: 0, labels: {} },
  snapshot: { enabled: true, width: 640, quality: 75, dir: null, max_files: 100, max_bytes: 52_428_800 },
  homeassistant: { enabled: null, prefix: 'homeassistant', device_name: null, watch: [] },
  log: { level: 'info', format: 'auto' },
};

/** Defaults of one GPIO rule's optional keys. */
export const GPIO_RULE_DEFAULTS = { min_score: 0.5, active_low: false, hold_ms: 0 } as const;
