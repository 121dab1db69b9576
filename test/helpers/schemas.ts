/**
 * The MQTT payload contract's JSON Schemas (`schemas/*.schema.json`),
 * compiled with Ajv (draft 2020-12, formats such as date-time checked), for
 * tests that validate what the daemon publishes:
 *
 *   assertPayload(t, 'state', JSON.parse(message.payload));
 *   assertPayload(t, 'availability', message.payload);  // text payloads as strings
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { repoRoot } from './assets.js';

const schemasDir = path.join(repoRoot, 'schemas');

const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true, strictRequired: false });
// ajv-formats is CommonJS with a default export; under NodeNext it arrives as the module object.
const addFormats = (addFormatsModule as unknown as { default: (a: Ajv2020) => void }).default ?? (addFormatsModule as unknown as (a: Ajv2020) => void);
addFormats(ajv);
for (const file of readdirSync(schemasDir).filter((f) => f.endsWith('.schema.json'))) {
  ajv.addSchema(JSON.parse(readFileSync(path.join(schemasDir, file), 'utf8')) as object);
}

/** Schema names: the file names without `.schema.json`. */
export type SchemaName =
  | 'availability'
  | 'classes'
  | 'gpio'
  | 'homeassistant-discovery'
  | 'prediction'
  | 'problems'
  | 'request'
  | 'response'
  | 'set'
  | 'settings'
  | 'snapshot'
  | 'state'
  | 'stats';

/** Validation errors of `value` against schema `name` as text, or '' when it is valid. */
export function payloadErrors(name: SchemaName, value: unknown): string {
  const validate = ajv.getSchema(`urn:edge-classifier:mqtt:${name}`);
  if (validate === undefined) throw new Error(`no schema ${name} in ${schemasDir}`);
  return validate(value) ? '' : ajv.errorsText(validate.errors, { separator: '; ' });
}

interface Asserter {
  equal(found: unknown, wanted: unknown, message: string): unknown;
}

/** Asserts that `value` is valid against schema `name`, naming the errors otherwise. */
export function assertPayload(t: Asserter, name: SchemaName, value: unknown): void {
  const errors = payloadErrors(name, value);
  t.equal(errors, '', `${name} payload matches schemas/${name}.schema.json${errors ? `: ${JSON.stringify(value).slice(0, 300)}` : ''}`);
}
