import t from 'tap';
import { checkRoi, isWholeFrame, parseRoi, rawCameraSize, roiToPixels } from '../../src/camera/roi.js';

t.test('ROIs outside the frame or of zero size are refused with a sentence naming the key', async (t) => {
  t.throws(() => checkRoi({ x: 0.5, y: 0, width: 0.6, height: 1 }), {
    message: 'source.roi reaches outside the frame (x + width = 1.1, y + height = 1): expected both at most 1',
  });
  t.throws(() => checkRoi({ x: 0, y: 0, width: 0, height: 0.5 }), /source.roi has zero size \(width 0, height 0.5\)/);
  t.throws(() => checkRoi({ x: -0.1, y: 0, width: 0.5, height: 0.5 }), /source.roi starts outside the frame/);
  t.throws(() => checkRoi({ x: Number.NaN, y: 0, width: 0.5, height: 0.5 }), /source.roi.x must be a number/);
  t.same(checkRoi({ x: 0.1, y: 0.2, width: 0.9, height: 0.8 }), { x: 0.1, y: 0.2, width: 0.9, height: 0.8 }, '0.1 + 0.9 is inside');
  t.same(parseRoi('0.25, 0.25,0.5,0.5'), { x: 0.25, y: 0.25, width: 0.5, height: 0.5 });
  t.throws(() => parseRoi('0.25,0.25,0.5'), /--roi must be four fractions x,y,width,height .* got '0.25,0.25,0.5'/);
  t.throws(() => parseRoi('a,b,c,d'), /four fractions/);
  t.throws(() => parseRoi('0.5,0.5,0.6,0.5'), /--roi reaches outside the frame/);
});

t.test('pixels of an ROI', async (t) => {
  t.same(roiToPixels({ x: 0.5, y: 0, width: 0.5, height: 1 }, 640, 480), { x: 320, y: 0, width: 320, height: 480 });
  t.same(roiToPixels({ x: 0.333, y: 0.25, width: 0.333, height: 0.5 }, 640, 480), { x: 213, y: 120, width: 213, height: 240 });
  t.same(roiToPixels({ x: 0.9999, y: 0.9999, width: 0.0001, height: 0.0001 }, 100, 100), { x: 99, y: 99, width: 1, height: 1 }, 'never empty');
  t.ok(isWholeFrame(undefined) && isWholeFrame({ x: 0, y: 0, width: 1, height: 1 }));
  t.notOk(isWholeFrame({ x: 0, y: 0, width: 0.5, height: 1 }));
});

t.test("raw Pi camera size: the model size for crop, the picture's own aspect otherwise", async (t) => {
  const m = { width: 224, height: 224 };
  t.same(rawCameraSize(m, 'crop', 4 / 3), { width: 224, height: 224 });
  t.same(rawCameraSize(m, 'stretch', 4 / 3), { width: 288, height: 224 }, '298.7 wide: a multiple of 32 near it');
  t.same(rawCameraSize(m, 'letterbox', 16 / 9), { width: 384, height: 224 });
  t.same(rawCameraSize({ width: 299, height: 299 }, 'crop', 4 / 3), { width: 300, height: 300 }, 'even sides for I420');
  // The right half of a 4:3 frame is 2:3 (portrait): as wide as the model, taller.
  t.same(rawCameraSize(m, 'stretch', 4 / 3, { x: 0.5, y: 0, width: 0.5, height: 1 }), { width: 224, height: 336 });
  t.same(rawCameraSize({ width: 128, height: 96 }, 'stretch', 4 / 3), { width: 128, height: 96 }, 'same aspect: exact size');
  t.same(rawCameraSize({ width: 10, height: 10 }, 'stretch', 4 / 3), { width: 32, height: 16 }, 'never below 32x16');
});
