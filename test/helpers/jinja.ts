/**
 * Renders Home Assistant MQTT templates (`value_template`,
 * `json_attributes_template`) with Python's Jinja2 — Home Assistant's own
 * template engine — through `render-jinja.py` (needs `python3` and the
 * Debian package `python3-jinja2`):
 *
 *   renderTemplates([{ template: '{{ value_json.label }}', payload: '{"label":"cat"}' }])  // ['cat']
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'render-jinja.py');

/** One rendered template, or the Jinja2 error. */
export type Rendered = string | { error: string };

export function renderTemplates(items: readonly { template: string; payload: string }[]): Rendered[] {
  try {
    return JSON.parse(execFileSync('python3', [SCRIPT], { input: JSON.stringify(items), encoding: 'utf8' })) as Rendered[];
  } catch (err) {
    throw new Error(`rendering Home Assistant templates with Jinja2 failed (python3 and python3-jinja2 installed?): ${(err as Error).message}`);
  }
}
