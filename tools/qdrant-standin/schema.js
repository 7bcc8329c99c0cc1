'use strict';
// Request-body validation against Qdrant's own OpenAPI document
// (openapi-1.19.json, Qdrant's docs/redoc/master/openapi.json), read from
// ../shared/qdrant beside the checkout, or from SEMSTORE_QDRANT_OPENAPI.
//
// The document is OpenAPI 3.0, not JSON Schema, so it is rewritten before
// ajv compiles it: `nullable: true` becomes a "null" type, a bare
// `{nullable: true}` (schemars' way of writing "or null" inside anyOf)
// becomes `{type: "null"}`, and Rust's number formats (uint64, float, ...)
// become known formats. Every route's requestBody schema is compiled once.
//
// Qdrant answers a body serde cannot deserialize (a wrong type, a missing
// field, an unknown enum value, no matching untagged variant) with 400
// "Format error in JSON body: ..." and a body that deserializes but breaks
// a `validator` rule (a range, a length) with 422 "Validation error in JSON
// body: [field: ...]" (src/actix/mod.rs, validation_error_handler). The
// document keeps the validator rules as minimum/maximum/minLength/...; a
// minimum of 0 is only schemars saying "unsigned", which serde enforces.
const fs = require('fs');
const path = require('path');
const Ajv = require('ajv');

const DOC_PATH = process.env.SEMSTORE_QDRANT_OPENAPI ||
  path.join(__dirname, '..', '..', '..', 'shared', 'qdrant', 'openapi-1.19.json');

function convert(node) {
  if (Array.isArray(node)) return node.map(convert);
  if (node === null || typeof node !== 'object') return node;
  const out = {};
  for (const [k, v] of Object.entries(node)) {
    if (k === 'example' || k === 'nullable') continue;
    out[k] = convert(v);
  }
  if (node.nullable === true) {
    if (typeof out.type === 'string') {
      out.type = [out.type, 'null'];
      // an enum must list null too, or the null type cannot match
      if (Array.isArray(out.enum) && !out.enum.includes(null)) out.enum = [...out.enum, null];
    } else if (Object.keys(out).filter((k) => k !== 'description' && k !== 'default').length === 0) {
      return { type: 'null' };
    } else {
      return { anyOf: [out, { type: 'null' }] };
    }
  }
  return out;
}

// Qdrant's point ids parse with the uuid crate's Uuid::from_str, which takes
// the hyphenated, simple (32 hex digits), braced and urn forms.
const UUID_RE = /^(?:urn:uuid:)?(?:\{)?([0-9a-f]{8})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{12})(?:\})?$/i;

function parseUuid(s) {
  if (typeof s !== 'string') return null;
  const m = UUID_RE.exec(s);
  if (!m) return null;
  // braces must come in a pair, and the hyphens all or none
  const braced = s.includes('{');
  if (braced !== s.includes('}')) return null;
  const core = s.replace(/^urn:uuid:/i, '').replace(/^\{|\}$/g, '');
  if (core.length !== 32 && core.length !== 36) return null;
  return `${m[1]}-${m[2]}-${m[3]}-${m[4]}-${m[5]}`.toLowerCase();
}

const isInt = (n) => Number.isInteger(n);
const FORMATS = {
  uuid: { type: 'string', validate: (s) => parseUuid(s) !== null },
  uint64: { type: 'number', validate: (n) => isInt(n) && n >= 0 },
  uint32: { type: 'number', validate: (n) => isInt(n) && n >= 0 && n <= 0xffffffff },
  uint8: { type: 'number', validate: (n) => isInt(n) && n >= 0 && n <= 255 },
  uint: { type: 'number', validate: (n) => isInt(n) && n >= 0 },
  int64: { type: 'number', validate: isInt },
  float: { type: 'number', validate: (n) => Number.isFinite(n) },
  double: { type: 'number', validate: (n) => Number.isFinite(n) },
  // formats that only describe responses or uploads
  'partial-date-time': true,
  // Qdrant parses several datetime spellings (RFC 3339 and looser ones)
  'date-time': true,
  binary: true,
  uri: true,
};

// converted schema object -> its name in components/schemas, for messages
const SCHEMA_NAMES = new Map();

const RANGE_KEYWORDS = new Set(['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'minLength', 'maxLength', 'minItems', 'maxItems']);

// A JSON pointer "/points/0/id" as Qdrant's validator names fields: points[0].id
function fieldName(instancePath) {
  let out = '';
  for (const part of instancePath.split('/').slice(1)) {
    const p = part.replace(/~1/g, '/').replace(/~0/g, '~');
    out += /^\d+$/.test(p) ? `[${p}]` : (out ? '.' : '') + p;
  }
  return out;
}

function describeValue(v) {
  if (typeof v === 'string') return `string ${JSON.stringify(v)}`;
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'sequence';
  if (typeof v === 'object') return 'map';
  if (typeof v === 'number') return Number.isInteger(v) ? `integer \`${v}\`` : `floating point \`${v}\``;
  return `${typeof v} \`${v}\``;
}

function valueAt(body, instancePath) {
  let v = body;
  for (const part of instancePath.split('/').slice(1)) {
    if (v === null || typeof v !== 'object') return undefined;
    v = v[part.replace(/~1/g, '/').replace(/~0/g, '~')];
  }
  return v;
}

// The 422 message for a validator rule, in Qdrant's words
// (lib/collection/src/operations/validation.rs, describe_error).
function rangeMessage(e, body) {
  const field = fieldName(e.instancePath);
  const value = valueAt(body, e.instancePath);
  const p = e.params;
  let msg;
  switch (e.keyword) {
    case 'minimum': msg = `value ${value} invalid, must be ${p.limit} or larger`; break;
    case 'exclusiveMinimum': msg = `value ${value} invalid, must be larger than ${p.limit}`; break;
    case 'maximum': msg = `value ${value} invalid, must be ${p.limit} or smaller`; break;
    case 'exclusiveMaximum': msg = `value ${value} invalid, must be smaller than ${p.limit}`; break;
    case 'minLength': msg = `value ${JSON.stringify(value)} invalid, must be at least ${p.limit} characters`; break;
    case 'maxLength': msg = `value ${JSON.stringify(value)} invalid, must be at most ${p.limit} characters`; break;
    case 'minItems': msg = p.limit === 1 ? 'value invalid, must not be empty' : `must contain at least ${p.limit} items`; break;
    default: msg = `must contain at most ${p.limit} items`;
  }
  return `${field}: ${msg}`;
}

// The 400 message for what serde would refuse. serde's exact text (with its
// line and column) cannot be reproduced from a schema; this keeps its shape:
// what was found, what was expected, and where.
function formatMessage(errors, body) {
  // serde tries an untagged enum's variants in turn and, when none fits,
  // names the enum, not a variant's error: the outermost anyOf is the one
  const anyOfs = errors.filter((e) => e.keyword === 'anyOf' || e.keyword === 'oneOf');
  // the error deepest in the body is the most specific one
  const deepest = errors.reduce((a, b) => (b.instancePath.length > a.instancePath.length ? b : a));
  const where = fieldName(deepest.instancePath) || 'body';
  const value = valueAt(body, deepest.instancePath);
  const idLike = /(^|\/)(id|ids|points\/\d+)$|\/ids\/\d+$|\/has_id\/\d+$|^\/points\/\d+$/;
  if (errors.some((e) => /ExtendedPointId/.test(e.schemaPath)) && (typeof value === 'string' || typeof value === 'number') &&
      (idLike.test(deepest.instancePath) || errors.every((e) => /ExtendedPointId/.test(e.schemaPath) || e.keyword === 'anyOf'))) {
    return `value ${value} is not a valid point ID, valid values are either an unsigned integer or a UUID`;
  }
  if (anyOfs.length > 0) {
    // "X or null" is serde's Option<X>, which reports X's own error
    const real = anyOfs.filter((e) => !(e.parentSchema && e.parentSchema.anyOf && e.parentSchema.anyOf.length === 2 &&
      e.parentSchema.anyOf.some((s) => s.type === 'null')));
    const pool = real.length ? real : anyOfs;
    const outer = pool.reduce((a, b) => (b.instancePath.length < a.instancePath.length ? b : a));
    const name = SCHEMA_NAMES.get(outer.parentSchema);
    const at = fieldName(outer.instancePath) || 'body';
    return `${at}: data did not match any variant of untagged enum ${name || 'value'}`;
  }
  switch (deepest.keyword) {
    case 'type': return `${where}: invalid type: ${describeValue(value)}, expected ${String(deepest.params.type).replace(/,null$/, "")}`;
    case 'required': return `${where}: missing field \`${deepest.params.missingProperty}\``;
    case 'enum': return `${where}: unknown variant \`${value}\`, expected one of ${deepest.params.allowedValues.filter((v) => v !== null).map((v) => `\`${v}\``).join(', ')}`;
    case 'additionalProperties': return `${where}: unknown field \`${deepest.params.additionalProperty}\``;
    case 'format': return `${where}: invalid value: ${describeValue(value)}, expected ${deepest.params.format}`;
    case 'anyOf': case 'oneOf': return `${where}: data did not match any variant of untagged enum ${deepest.schemaPath.split('/').slice(-2, -1)[0] || 'value'}`;
    default: return `${where}: ${deepest.message}`;
  }
}

class Validator {
  constructor(docPath = DOC_PATH) {
    if (!fs.existsSync(docPath)) {
      throw new Error(`Qdrant's OpenAPI document is not at ${docPath}: put ../shared/qdrant beside the checkout, ` +
        'or set SEMSTORE_QDRANT_OPENAPI to its path');
    }
    const doc = JSON.parse(fs.readFileSync(docPath, 'utf8'));
    const schemas = convert(doc.components.schemas);
    for (const [name, schema] of Object.entries(schemas)) SCHEMA_NAMES.set(schema, name);
    this.ajv = new Ajv({ strict: false, allErrors: true, verbose: true, formats: FORMATS, validateFormats: true });
    this.ajv.addSchema({ $id: 'qdrant.json', components: { schemas } });
    this.routes = new Map();
    for (const [p, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const schema = op.requestBody && op.requestBody.content && op.requestBody.content['application/json'] &&
          op.requestBody.content['application/json'].schema;
        if (!schema) continue;
        const ref = schema.$ref ? { $ref: 'qdrant.json' + schema.$ref } : convert(schema);
        this.routes.set(`${method.toUpperCase()} ${p}`, this.ajv.compile(ref));
      }
    }
  }

  // route: "PUT /collections/{collection_name}"; returns null when the
  // body is valid, else { status, message } as Qdrant would answer.
  check(route, body) {
    const validate = this.routes.get(route);
    if (!validate) throw new Error(`no request schema for ${route}`);
    if (validate(body)) return null;
    const errors = validate.errors;
    const serdeErrors = errors.filter((e) => !(RANGE_KEYWORDS.has(e.keyword) && !(e.keyword === 'minimum' && e.params.limit === 0)) && e.keyword !== 'anyOf' && e.keyword !== 'oneOf');
    const rangeErrors = errors.filter((e) => RANGE_KEYWORDS.has(e.keyword) && !(e.keyword === 'minimum' && e.params.limit === 0));
    // Only range rules broken, where the body otherwise has the right shape:
    // it deserialized, and the validator rejected it.
    if (rangeErrors.length > 0 && serdeErrors.length === 0) {
      const seen = new Set();
      const parts = rangeErrors.map((e) => rangeMessage(e, body)).filter((m) => !seen.has(m) && seen.add(m));
      return { status: 422, message: `Validation error in JSON body: [${parts.join('; ')}]` };
    }
    return { status: 400, message: `Format error in JSON body: ${formatMessage(errors, body)}` };
  }
}

module.exports = { Validator, parseUuid };
