#!/usr/bin/env python3
"""Renders Home Assistant MQTT templates with Jinja2, the template engine Home Assistant uses.

Reads a JSON list of {"template": str, "payload": str} from stdin and writes a JSON list of
rendered strings (or {"error": str}). As Home Assistant does for MQTT entities, the payload is
`value` and, when it parses as JSON, `value_json`. Home Assistant's environment adds its own
filters and tests; the templates edge-classifier publishes use only Jinja2's built-ins
(`tojson`, `length`, `is none`), so the plain engine renders them the same way.
"""
import json
import sys

import jinja2

env = jinja2.Environment(undefined=jinja2.StrictUndefined)
out = []
for item in json.load(sys.stdin):
    payload = item["payload"]
    try:
        value_json = json.loads(payload)
    except ValueError:
        value_json = None
    try:
        out.append(env.from_string(item["template"]).render(value=payload, value_json=value_json))
    except Exception as err:  # noqa: BLE001 - every failure is reported to the test
        out.append({"error": f"{type(err).__name__}: {err}"})
json.dump(out, sys.stdout)
