/**
 * End to end with cameras: the daemon as a child process on raw frames from
 * the stand-in rpicam-vid (on PATH, as on a Pi) and from ffmpeg reading a
 * live MJPEG-over-HTTP camera; a camera that stalls is restarted while the
 * daemon keeps running.
 */
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import t from 'tap';
import { image, model } from '../helpers/assets.js';
import { startCli } from '../helpers/cli.js';
import { fakeRpicamBin } from '../helpers/fake-camera.js';
import { startMjpegHttpServer } from '../helpers/mjpeg-http-server.js';
import { startMosquitto } from '../helpers/mosquitto.js';
import { recordMqtt } from '../helpers/mqtt-recorder.js';

const MODEL = model('mobilenet_v2_1.0_224_quant.tflite');

interface PredictionMsg {
  seq: number;
  source: string;
  classes: { index: number; label: string; score: number }[];
}

t.test('raw frames from the Pi camera (stand-in): right top-1; a stall restarts the camera, not the daemon', async (t) => {
  const broker = await startMosquitto(t);
  const bin = fakeRpicamBin();
  const dir = mkdtempSync(path.join(tmpdir(), 'ec-e2e-rpicam-'));
  const marker = path.join(dir, 'stalled');
  const config = path.join(dir, 'config.yaml');
  writeFileSync(config, ['source:', '  spec: rpicam', '  fps: 10', '  stall_timeout_s: 2'].join('\n'));
  const base = 'ec-test/rpicam-raw';
  const rec = await recordMqtt(t, broker.url, `${base}/#`);
  const d = startCli(t, ['run', '--config', config, '--model', MODEL, '--mqtt-url', broker.url, '--base-topic', base], {
    env: {
      ...process.env,
      PATH: `${bin}:${process.env.PATH}`,
      FAKE_RPICAM_IMAGE: image('cat_720p.jpg'),
      FAKE_RPICAM_STALL_AFTER: '12',
      FAKE_RPICAM_STALL_ONCE: marker,
    },
  });
  const predictions = () => rec.on(`${base}/prediction`).map((m) => JSON.parse(m.payload) as PredictionMsg);
  await rec.waitFor(() => predictions().length >= 2, 40_000, 'predictions from the raw camera');
  const first = predictions()[0]!;
  t.match(first.source, /^rpicam \d+x224@10 yuv420$/, `source ${first.source}`);
  t.equal(first.classes[0]!.label, 'Egyptian cat');

  const stall = await d.waitForLog((l) => /rpicam-vid is running but delivered no frame for/.test(l.msg), 40_000, 'the stall');
  t.equal(stall.level, 40);
  t.ok(existsSync(marker), 'the stand-in stalled');
  await rec.waitFor(() => predictions().some((p) => p.seq > 12), 40_000, 'predictions after the restart');
  t.equal(d.child.exitCode, null, 'the daemon kept running through the stall');
  await d.waitForLog((l) => /delivers frames again/.test(l.msg), 10_000, 'camera back');
  t.ok(
    predictions().every((p) => p.classes[0]!.label === 'Egyptian cat'),
    'every prediction, before and after the restart, is the cat',
  );
  d.child.kill('SIGTERM');
  t.equal((await d.exited).code, 0);
});

t.test('ffmpeg raw RGB from a live MJPEG-over-HTTP camera: right top-1', async (t) => {
  const broker = await startMosquitto(t);
  const jpeg = await sharp(image('cat_720p.jpg')).resize(640, 480, { fit: 'fill' }).jpeg({ quality: 85 }).toBuffer();
  const camera = await startMjpegHttpServer({ frames: [jpeg], fps: 5 });
  t.teardown(() => camera.close());
  const base = 'ec-test/http-raw';
  const rec = await recordMqtt(t, broker.url, `${base}/#`);
  const d = startCli(t, ['run', '--source', camera.url, '--model', MODEL, '--mqtt-url', broker.url, '--base-topic', base]);
  const p = await rec.waitFor((m) => m.topic === `${base}/prediction`, 40_000, 'a prediction');
  const prediction = JSON.parse(p.payload) as PredictionMsg;
  t.match(prediction.source, /^http http:\/\/127\.0\.0\.1:\d+\/stream 224x224@10 rgb24$/);
  t.equal(prediction.classes[0]!.label, 'Egyptian cat');
  t.ok(prediction.classes[0]!.score > 0.5, `score ${prediction.classes[0]!.score}`);
  d.child.kill('SIGTERM');
  t.equal((await d.exited).code, 0);
});
