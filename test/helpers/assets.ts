import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (the folder holding package.json). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * The folder of shared test assets (models/, labels/, images/), from
 * `EDGE_CLASSIFIER_ASSETS` or `../shared/assets` beside the repository.
 * Throws when it is missing: tests that need real models must fail loudly,
 * never skip.
 */
export const assetsDir = path.resolve(process.env.EDGE_CLASSIFIER_ASSETS ?? path.join(repoRoot, '..', 'shared', 'assets'));
if (!existsSync(path.join(assetsDir, 'models'))) {
  throw new Error(`test assets not found at ${assetsDir}: expected a folder with models/, labels/ and images/ (set EDGE_CLASSIFIER_ASSETS to point at it)`);
}

/** Path of a model in the assets, e.g. model('mobilenet_v2_1.0_224_quant.tflite'). */
export const model = (name: string): string => path.join(assetsDir, 'models', name);
/** Path of an image in the assets, e.g. image('cat.png'). */
export const image = (name: string): string => path.join(assetsDir, 'images', name);
/** Path of a labels file in the assets. */
export const labels = (name: string): string => path.join(assetsDir, 'labels', name);
