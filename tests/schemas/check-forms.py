#!/usr/bin/env python3
"""Validates blindspot's OCSF and EVE output forms against the schemas of
other projects (never our own reading of them).

  check-forms.py BLINDSPOT [PCAP ...]

Replays each capture (default: the captures of tests/common's all_captures(), plus the
detection scenario with its inputs, so that every record type and every
detection pattern is there) with --format ocsf and --format eve, and checks
every line:

- OCSF: against the JSON Schema of the event's class (class_uid) in OCSF
  1.8.0, built by the PyPI package ocsf-json-schema (OcsfJsonSchemaEmbedded),
  validated with jsonschema.
- EVE: against Suricata 8.0.6's EVE schema, ../shared/schemas/
  suricata-eve-8.0.6.schema.json (read in place), after removing the one
  documented extra key, `blindspot`.

Prints what it checked per class / event type; exits 1 on the first
invalid event (naming capture, line and the schema's complaint), 2 when a
schema or package is missing.
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
EVE_SCHEMA = os.path.normpath(os.path.join(ROOT, "..", "shared", "schemas", "suricata-eve-8.0.6.schema.json"))
OCSF_VERSION = "1.8.0"


def replays(blindspot, pcaps):
    """(name, argv) per run."""
    runs = []
    if not pcaps:
        # The captures tests/common's all_captures() replays: the project's
        # own, and the third-party ones in ../shared/pcaps when present.
        dirs = [os.path.join(ROOT, "fixtures", d) for d in ("detect", "devices", "dns", "local", "quic", "tcpedge", "tunnels")]
        shared = os.path.normpath(os.path.join(ROOT, "..", "shared", "pcaps"))
        if os.path.isdir(shared):
            dirs.append(shared)
        else:
            print("check-forms: SKIPPED the third-party captures: ../shared/pcaps is absent", file=sys.stderr)
        for d in dirs:
            pcaps += sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith((".pcap", ".pcapng")))
        det = os.path.join(ROOT, "fixtures", "detect")
        runs.append(("detect/scenario.pcap+inputs", [
            os.path.join(det, "scenario.pcap"), "--config", os.path.join(det, "config.toml"),
            "--mdm", os.path.join(det, "mdm.json"), "--apps", os.path.join(det, "catalog.json"),
            "--app-events", os.path.join(det, "app-events.jsonl")]))
    for p in pcaps:
        runs.append((os.path.relpath(p, ROOT), [p]))
    return runs


def run(blindspot, form, argv):
    r = subprocess.run([blindspot, "replay", "--format", form, "-o", "-"] + argv,
                       capture_output=True, check=False)
    # 3: a damaged capture (the hostile fixtures); its records are still written.
    if r.returncode not in (0, 3):
        sys.exit(f"{' '.join(argv)}: blindspot exited {r.returncode}: {r.stderr.decode()[-500:]}")
    return [json.loads(l) for l in r.stdout.splitlines() if l.strip()]


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    blindspot, pcaps = sys.argv[1], sys.argv[2:]
    try:
        import jsonschema
        from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema
    except ImportError as e:
        print(f"check-forms: {e}: pip install ocsf-json-schema jsonschema", file=sys.stderr)
        sys.exit(2)
    if not os.path.exists(EVE_SCHEMA):
        print(f"check-forms: {EVE_SCHEMA} is missing (../shared/schemas)", file=sys.stderr)
        sys.exit(2)
    ocsf = OcsfJsonSchemaEmbedded(get_ocsf_schema(version=OCSF_VERSION))
    validators = {}
    with open(EVE_SCHEMA) as f:
        eve = jsonschema.Draft202012Validator(json.load(f))
    counts = {"ocsf": {}, "eve": {}}
    runs = replays(blindspot, pcaps)
    for name, argv in runs:
        for i, ev in enumerate(run(blindspot, "ocsf", argv), 1):
            uid = ev.get("class_uid")
            if uid not in validators:
                cls = ocsf.lookup_class_name_from_uid(uid)
                validators[uid] = (cls, jsonschema.Draft202012Validator(ocsf.get_class_schema(class_name=cls)))
            cls, v = validators[uid]
            err = jsonschema.exceptions.best_match(v.iter_errors(ev))
            if err is not None:
                sys.exit(f"OCSF {name} event {i} ({cls}): {err.message} at {list(err.absolute_path)}\n{json.dumps(ev)[:2000]}")
            counts["ocsf"][cls] = counts["ocsf"].get(cls, 0) + 1
        for i, ev in enumerate(run(blindspot, "eve", argv), 1):
            ev.pop("blindspot", None)
            err = jsonschema.exceptions.best_match(eve.iter_errors(ev))
            if err is not None:
                sys.exit(f"EVE {name} event {i} ({ev.get('event_type')}): {err.message} at {list(err.absolute_path)}\n{json.dumps(ev)[:2000]}")
            t = ev.get("event_type")
            counts["eve"][t] = counts["eve"].get(t, 0) + 1
    print(f"check-forms: {len(runs)} replays; OCSF {OCSF_VERSION} valid: "
          + ", ".join(f"{k} {n}" for k, n in sorted(counts["ocsf"].items()))
          + "; EVE (Suricata 8.0.6) valid: "
          + ", ".join(f"{k} {n}" for k, n in sorted(counts["eve"].items())))


if __name__ == "__main__":
    main()
