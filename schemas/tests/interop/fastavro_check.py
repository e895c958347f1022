"""Second-implementation check of secpipe's Avro records, with fastavro.

Usage: fastavro_check.py WORK_DIR

WORK_DIR holds, per sample record, `<n>.bin` (single-object framed bytes written by secpipe),
`<n>.json` (the record as secpipe's serde JSON) and `<n>.schema` (path of the .avsc file).
For each sample this script:
  1. parses the .avsc with fastavro and checks the header's fingerprint equals fastavro's
     CRC-64-AVRO fingerprint of the parsing canonical form;
  2. decodes the body with fastavro and compares it field by field with the JSON;
  3. re-encodes the decoded record and checks the bytes are identical (`<n>.py.bin`);
  4. encodes the JSON record from scratch and writes `<n>.fromjson.bin` for secpipe to decode.
Exits non-zero with a message on the first mismatch.
"""
import base64
import datetime
import io
import json
import pathlib
import sys

import fastavro
import fastavro.schema

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def normalize(value):
    """fastavro's decoded values in the shape of secpipe's serde JSON."""
    if isinstance(value, datetime.datetime):
        delta = value - EPOCH
        return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    if isinstance(value, datetime.date):
        return (value - datetime.date(1970, 1, 1)).days
    if isinstance(value, (bytes, bytearray)):
        return list(value)
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


def from_json(value, schema):
    """secpipe's serde JSON in the shape fastavro's writer expects (bytes as bytes)."""
    if isinstance(schema, list):  # union
        if value is None:
            return None
        branch = next(s for s in schema if s != "null")
        return from_json(value, branch)
    if isinstance(schema, dict):
        t = schema["type"]
        if t == "record":
            return {f["name"]: from_json(value.get(f["name"]), f["type"]) for f in schema["fields"]}
        if t == "array":
            return [from_json(v, schema["items"]) for v in value]
        if t == "map":
            return {k: from_json(v, schema["values"]) for k, v in value.items()}
        return from_json(value, t)
    if schema == "bytes":
        return bytes(value)
    return value


def main(work):
    work = pathlib.Path(work)
    samples = sorted(work.glob("*.bin"))
    samples = [p for p in samples if not p.name.endswith((".py.bin", ".fromjson.bin"))]
    if not samples:
        sys.exit("no samples in " + str(work))
    for bin_path in samples:
        stem = bin_path.with_suffix("")
        data = bin_path.read_bytes()
        expected = json.loads(stem.with_suffix(".json").read_text())
        avsc_path = stem.with_suffix(".schema").read_text().strip()
        raw_schema = json.loads(pathlib.Path(avsc_path).read_text())
        parsed = fastavro.parse_schema(raw_schema)
        canonical = fastavro.schema.to_parsing_canonical_form(parsed)
        fp = fastavro.schema.fingerprint(canonical, "CRC-64-AVRO")
        header = data[:10]
        if header[:2] != b"\xc3\x01":
            sys.exit(f"{bin_path.name}: not single-object framed")
        if header[2:].hex() != fp:
            sys.exit(f"{bin_path.name}: header fingerprint {header[2:].hex()} != fastavro's {fp} for {avsc_path}")
        decoded = fastavro.schemaless_reader(io.BytesIO(data[10:]), parsed, None)
        got = normalize(decoded)
        if got != expected:
            for k in expected:
                if got.get(k) != expected.get(k):
                    sys.exit(f"{bin_path.name}: field {k}: fastavro read {got.get(k)!r}, secpipe wrote {expected.get(k)!r}")
            sys.exit(f"{bin_path.name}: decoded record differs: {got!r} != {expected!r}")
        out = io.BytesIO()
        fastavro.schemaless_writer(out, parsed, decoded)
        if header + out.getvalue() != data:
            sys.exit(f"{bin_path.name}: fastavro's re-encoding differs from secpipe's bytes")
        stem.with_suffix(".py.bin").write_bytes(data)
        out = io.BytesIO()
        fastavro.schemaless_writer(out, parsed, from_json(expected, raw_schema))
        stem.with_suffix(".fromjson.bin").write_bytes(header + out.getvalue())
    print(f"fastavro {fastavro.__version__}: {len(samples)} records read, compared, re-encoded")


if __name__ == "__main__":
    main(sys.argv[1])
