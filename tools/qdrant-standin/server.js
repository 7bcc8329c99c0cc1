#!/usr/bin/env node
'use strict';
// A Qdrant-compatible stand-in: Qdrant's REST routes that semstore uses,
// exact search in memory, every request body validated against Qdrant's
// OpenAPI document, Qdrant's response shapes, codes and messages; plus an
// admin API under /__standin/ for tests (faults, stats, indexing delay).
//
//   node server.js [--host 127.0.0.1] [--port 6333] [--data DIR] [--api-key KEY] [--sink]
//
// It prints one line, "Qdrant stand-in listening on http://HOST:PORT", once
// it listens (--port 0 picks a free port). The API key may also come from
// QDRANT__SERVICE__API_KEY, as Qdrant reads it; it is never logged.
const http = require('http');
const fs = require('fs');
const os = require('os');
const path = require('path');
const crypto = require('crypto');
const { Validator } = require('./schema');
const { ApiError, badInput, notFound, alreadyExists, Collection, idKey } = require('./store');
const { query } = require('./query');

// Qdrant's service.max_request_size_mb default: 32 MiB
const MAX_BODY = 32 * 1024 * 1024;

function parseArgs(argv) {
  const opts = { host: '127.0.0.1', port: 6333, data: null, apiKey: process.env.QDRANT__SERVICE__API_KEY || null, sink: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--host') opts.host = value();
    else if (a === '--port') opts.port = Number(value());
    else if (a === '--data') opts.data = value();
    else if (a === '--api-key') opts.apiKey = value();
    else if (a === '--sink') opts.sink = true;
    else if (a === '--help' || a === '-h') opts.help = true;
    else throw new Error(`unknown option ${a}`);
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) throw new Error('--port takes a port number');
  return opts;
}

const USAGE = `usage: node server.js [--host 127.0.0.1] [--port 6333] [--data DIR] [--api-key KEY] [--sink]
  --port 0     picks a free port; the line printed on start names it
  --data DIR   where snapshots are written (default: a new temporary folder)
  --api-key    requests must send it (api-key header or Authorization: Bearer);
               QDRANT__SERVICE__API_KEY sets it too
  --sink       benchmark mode: PUT /collections/NAME/points succeeds at once,
               without reading the points`;

class Standin {
  constructor(opts) {
    this.opts = opts;
    this.dataDir = opts.data || fs.mkdtempSync(path.join(os.tmpdir(), 'qdrant-standin.'));
    this.validator = new Validator();
    this.collections = new Map();
    this.aliases = new Map();
    this.faults = [];
    this.config = { indexing_ms: 0 };
    this.resetStats();
    this.routes = buildRoutes(this);
  }

  resetStats() {
    this.stats = { requests: 0, by_route: {}, faults_served: 0, points_written: 0, last_headers: {} };
  }

  // A collection by its name or an alias's.
  get(name) {
    const real = this.aliases.has(name) ? this.aliases.get(name) : name;
    const col = this.collections.get(real);
    if (!col) throw notFound(`Collection \`${name}\` doesn't exist!`);
    return col;
  }

  written(col) {
    if (this.config.indexing_ms > 0) col.yellowUntil = Date.now() + this.config.indexing_ms;
  }

  // The first queued fault that applies to this request, counted as served.
  takeFault(method, url) {
    for (let i = 0; i < this.faults.length; i++) {
      const f = this.faults[i];
      if (f.path && !url.includes(f.path)) continue;
      if (f.method && f.method.toUpperCase() !== method) continue;
      f.seen += 1;
      if (f.every && f.seen % f.every !== 0) continue;
      f.left -= 1;
      if (f.left <= 0) this.faults.splice(i, 1);
      this.stats.faults_served += 1;
      return f;
    }
    return null;
  }
}

// ---------------------------------------------------------------- routes

function updateResult(op, wait) {
  return { operation_id: op, status: wait ? 'completed' : 'acknowledged' };
}

// Qdrant's PointInsertOperations: {points: [...]} or {batch: {ids, vectors, payloads}}
function pointsOf(body) {
  if (body.points) return body.points;
  const b = body.batch;
  const out = b.ids.map((id, i) => ({ id, payload: b.payloads ? b.payloads[i] || null : null }));
  if (Array.isArray(b.vectors)) {
    if (b.vectors.length !== b.ids.length) throw badInput(`number of ids and vectors must be equal (${b.ids.length} != ${b.vectors.length})`);
    b.vectors.forEach((v, i) => { out[i].vector = v; });
  } else {
    for (const p of out) p.vector = {};
    for (const [name, list] of Object.entries(b.vectors)) {
      if (list.length !== b.ids.length) throw badInput(`number of ids and vectors must be equal (${b.ids.length} != ${list.length})`);
      list.forEach((v, i) => { out[i].vector[name] = v; });
    }
  }
  return out;
}

function snapshotDir(s, name) { return path.join(s.dataDir, 'snapshots', name); }

function snapshotName(name) {
  // Qdrant's form: {collection}-{random}-{YYYY-MM-DD-HH-MM-SS}.snapshot
  const t = new Date().toISOString().replace(/\..*$/, '').replace(/[T:]/g, '-');
  return `${name}-${crypto.randomBytes(6).readUIntBE(0, 6)}-${t}.snapshot`;
}

function describeSnapshot(dir, file) {
  const st = fs.statSync(path.join(dir, file));
  let checksum = null;
  try { checksum = fs.readFileSync(path.join(dir, `${file}.checksum`), 'utf8').trim(); } catch (_) { /* none written */ }
  return { name: file, creation_time: st.mtime.toISOString().replace(/\..*$/, ''), size: st.size, checksum };
}

function takeSnapshot(s, col, name) {
  const dir = snapshotDir(s, name);
  fs.mkdirSync(dir, { recursive: true });
  const points = [];
  for (let slot = 0; slot < col.count; slot++) {
    const dense = {};
    for (const [n, d] of col.dense) {
      if (d.has[slot]) dense[n] = Buffer.from(d.data.buffer, d.data.byteOffset + slot * d.dim * 4, d.dim * 4).toString('base64');
    }
    const sparse = {};
    for (const [n, sp] of col.sparse) { const v = sp.get(slot); if (v) sparse[n] = v; }
    points.push({ id: col.ids[slot], version: col.versions[slot], payload: col.payloads[slot], dense, sparse });
  }
  const sparseParams = {};
  for (const [n, sp] of col.sparse) sparseParams[n] = sp.params;
  const doc = {
    format: 'qdrant-standin-snapshot/1',
    config: {
      vectors: col.vectorsConfig, sparse_vectors: sparseParams, hnsw_config: col.hnsw, optimizers_config: col.optimizers,
      wal_config: col.wal, quantization_config: col.quantization, ...col.params,
    },
    payload_indexes: [...col.payloadIndexes].map(([field, idx]) => ({ field, ...idx })),
    op_number: col.opNumber,
    points,
  };
  const file = snapshotName(name);
  const bytes = Buffer.from(JSON.stringify(doc));
  fs.writeFileSync(path.join(dir, file), bytes);
  fs.writeFileSync(path.join(dir, `${file}.checksum`), crypto.createHash('sha256').update(bytes).digest('hex'));
  return describeSnapshot(dir, file);
}

function restoreSnapshot(bytes, name) {
  let doc;
  try { doc = JSON.parse(bytes.toString('utf8')); } catch (_) { doc = null; }
  if (!doc || doc.format !== 'qdrant-standin-snapshot/1') throw badInput('Snapshot is not a valid stand-in snapshot');
  const col = new Collection(name, doc.config);
  for (const idx of doc.payload_indexes) col.payloadIndexes.set(idx.field, { data_type: idx.data_type, params: idx.params });
  for (const p of doc.points) {
    const vector = {};
    for (const [n, b64] of Object.entries(p.dense)) {
      const buf = Buffer.from(b64, 'base64');
      vector[n] = Array.from(new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4));
    }
    Object.assign(vector, p.sparse);
    col.upsert([{ id: p.id, payload: p.payload, vector: col.single ? vector[''] : vector }]);
    col.versions[col.slotOf.get(p.id)] = p.version;
  }
  col.opNumber = doc.op_number;
  return col;
}

function buildRoutes(s) {
  const R = [];
  // template is the OpenAPI path: the body schema is looked up by it
  const route = (method, template, handler, { validate = true } = {}) => {
    const re = new RegExp('^' + template.replace(/\{[a-z_]+\}/g, '([^/]+)') + '$');
    R.push({ method, template, re, handler, validate, key: `${method} ${template}` });
  };

  route('GET', '/', () => ({ raw: { title: 'qdrant - vector search engine', version: '1.19.0', commit: null } }));
  route('GET', '/healthz', () => ({ text: 'healthz check passed' }));
  route('GET', '/livez', () => ({ text: 'healthz check passed' }));
  route('GET', '/readyz', () => ({ text: 'all shards are ready' }));

  route('GET', '/collections', () => ({ result: { collections: [...s.collections.keys()].map((name) => ({ name })) } }));
  route('GET', '/collections/{collection_name}', ([name]) => ({ result: s.get(name).info() }));
  route('GET', '/collections/{collection_name}/exists', ([name]) => ({
    result: { exists: s.collections.has(name) || (s.aliases.has(name) && s.collections.has(s.aliases.get(name))) },
  }));
  route('PUT', '/collections/{collection_name}', ([name], body) => {
    if (s.collections.has(name)) throw alreadyExists(`Collection \`${name}\` already exists!`);
    if (s.aliases.has(name)) throw badInput(`Can't create collection with name ${name}. Alias with the same name already exists`);
    s.collections.set(name, new Collection(name, body));
    return { result: true };
  });
  route('PATCH', '/collections/{collection_name}', ([name], body) => {
    const col = s.get(name);
    col.update(body);
    return { result: true };
  });
  route('DELETE', '/collections/{collection_name}', ([name]) => {
    const real = s.aliases.has(name) ? s.aliases.get(name) : name;
    const existed = s.collections.delete(real);
    for (const [a, c] of s.aliases) if (c === real) s.aliases.delete(a);
    return { result: existed };
  });

  route('POST', '/collections/aliases', (_, body) => {
    // all actions are checked against a copy, then applied at once
    const next = new Map(s.aliases);
    for (const action of body.actions) {
      if (action.create_alias) {
        const { collection_name: c, alias_name: a } = action.create_alias;
        if (!s.collections.has(c)) throw notFound(`Collection \`${c}\` doesn't exist!`);
        if (s.collections.has(a)) throw alreadyExists(`Collection \`${a}\` already exists!`);
        next.set(a, c);
      } else if (action.delete_alias) {
        const a = action.delete_alias.alias_name;
        if (!next.has(a)) throw notFound(`Alias ${a} does not exists!`);
        next.delete(a);
      } else if (action.rename_alias) {
        const { old_alias_name: o, new_alias_name: n } = action.rename_alias;
        if (!next.has(o)) throw notFound(`Alias ${o} does not exists!`);
        next.set(n, next.get(o));
        next.delete(o);
      }
    }
    s.aliases = next;
    return { result: true };
  });
  const aliasList = (only) => [...s.aliases].filter(([, c]) => !only || c === only)
    .map(([alias_name, collection_name]) => ({ alias_name, collection_name }));
  route('GET', '/aliases', () => ({ result: { aliases: aliasList(null) } }));
  route('GET', '/collections/{collection_name}/aliases', ([name]) => ({ result: { aliases: aliasList(s.get(name).name) } }));

  route('PUT', '/collections/{collection_name}/index', ([name], body, q) => {
    const col = s.get(name);
    const fs_ = body.field_schema;
    if (fs_ === undefined || fs_ === null) throw badInput('Can\'t auto-detect field type, please specify `field_schema` in the request');
    const idx = typeof fs_ === 'string' ? { data_type: fs_ } : { data_type: fs_.type, params: fs_ };
    col.payloadIndexes.set(body.field_name, idx);
    return { result: updateResult(col.touch(), q.wait) };
  });
  route('DELETE', '/collections/{collection_name}/index/{field_name}', ([name, field], _, q) => {
    const col = s.get(name);
    col.payloadIndexes.delete(decodeURIComponent(field));
    return { result: updateResult(col.touch(), q.wait) };
  });

  route('PUT', '/collections/{collection_name}/points', ([name], body, q) => {
    const col = s.get(name);
    const points = pointsOf(body);
    s.stats.points_written += points.length;
    const op = col.upsert(points);
    s.written(col);
    return { result: updateResult(op, q.wait) };
  });
  route('POST', '/collections/{collection_name}/points', ([name], body) => {
    const col = s.get(name);
    const out = [];
    for (const id of body.ids) {
      const slot = col.slotOf.get(idKey(id));
      if (slot !== undefined) out.push(col.record(slot, body.with_payload === undefined ? true : body.with_payload, body.with_vector || false));
    }
    return { result: out };
  });
  route('GET', '/collections/{collection_name}/points/{id}', ([name, rawId]) => {
    const col = s.get(name);
    const text = decodeURIComponent(rawId);
    const id = /^\d+$/.test(text) ? Number(text) : text;
    let key;
    try { key = idKey(id); } catch (_) {
      throw new ApiError(400, `Deserialize error in path parameters: value ${text} is not a valid point ID, valid values are either an unsigned integer or a UUID`);
    }
    const slot = col.slotOf.get(key);
    if (slot === undefined) throw notFound(`No point with id ${key} found`);
    return { result: col.record(slot, true, true) };
  });
  const write = (fn) => ([name], body, q) => {
    const col = s.get(name);
    const op = fn(col, body);
    s.written(col);
    return { result: updateResult(op, q.wait) };
  };
  route('POST', '/collections/{collection_name}/points/delete', write((col, body) => col.deletePoints(body)));
  route('POST', '/collections/{collection_name}/points/payload', write((col, body) => col.setPayload(body, false)));
  route('PUT', '/collections/{collection_name}/points/payload', write((col, body) => col.setPayload(body, true)));
  route('POST', '/collections/{collection_name}/points/payload/delete', write((col, body) => col.deletePayload(body)));
  route('POST', '/collections/{collection_name}/points/payload/clear', write((col, body) => col.clearPayload(body)));
  route('POST', '/collections/{collection_name}/points/scroll', ([name], body) => ({ result: s.get(name).scroll(body) }));
  route('POST', '/collections/{collection_name}/points/count', ([name], body) => ({ result: { count: s.get(name).countPoints(body) } }));
  route('POST', '/collections/{collection_name}/points/query', ([name], body) => ({ result: query(s.get(name), body) }));
  route('POST', '/collections/{collection_name}/points/query/batch', ([name], body) => {
    const col = s.get(name);
    return { result: body.searches.map((req) => query(col, req)) };
  });

  route('POST', '/collections/{collection_name}/snapshots', ([name]) => {
    const col = s.get(name);
    return { result: takeSnapshot(s, col, col.name) };
  });
  route('GET', '/collections/{collection_name}/snapshots', ([name]) => {
    const col = s.get(name);
    const dir = snapshotDir(s, col.name);
    const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.snapshot')) : [];
    return { result: files.map((f) => describeSnapshot(dir, f)) };
  });
  route('GET', '/collections/{collection_name}/snapshots/{snapshot_name}', ([name, snap]) => {
    const file = path.join(snapshotDir(s, name), path.basename(decodeURIComponent(snap)));
    if (!fs.existsSync(file)) throw notFound(`Snapshot file ${path.basename(file)} does not exist`);
    return { file };
  });
  route('DELETE', '/collections/{collection_name}/snapshots/{snapshot_name}', ([name, snap]) => {
    const file = path.join(snapshotDir(s, name), path.basename(decodeURIComponent(snap)));
    if (!fs.existsSync(file)) throw notFound(`Snapshot ${path.basename(file)} not found`);
    fs.rmSync(file);
    fs.rmSync(`${file}.checksum`, { force: true });
    return { result: true };
  });
  route('PUT', '/collections/{collection_name}/snapshots/recover', ([name], body) => {
    // file:// URLs as Qdrant takes them; also, for tests, a snapshot's name
    // in this collection's folder or a plain path
    const loc = body.location;
    let file;
    if (loc.startsWith('file://')) file = decodeURIComponent(new URL(loc).pathname);
    else if (/^https?:\/\//.test(loc)) throw badInput('the stand-in recovers snapshots from file:// locations only');
    else if (path.isAbsolute(loc)) file = loc;
    else file = path.join(snapshotDir(s, name), path.basename(loc));
    if (!fs.existsSync(file)) throw notFound(`Snapshot file ${file} does not exist`);
    const bytes = fs.readFileSync(file);
    if (body.checksum) {
      const actual = crypto.createHash('sha256').update(bytes).digest('hex');
      if (actual !== body.checksum) throw new ApiError(400, `Checksum mismatch: expected ${body.checksum}, actual ${actual}`);
    }
    const real = s.aliases.has(name) ? s.aliases.get(name) : name;
    s.collections.set(real, restoreSnapshot(bytes, real));
    return { result: true };
  });
  return R;
}

// ---------------------------------------------------------------- admin

function admin(s, method, url, body) {
  const p = url.split('?')[0];
  if (p === '/__standin/faults' && method === 'POST') {
    const kinds = ['503', '500', '502', '504', '429', '400', 'stall', 'drop'];
    const f = body || {};
    const kind = String(f.kind);
    if (!kinds.includes(kind)) return [400, { error: `kind must be one of ${kinds.join(', ')}` }];
    const every = f.every ? Number(f.every) : 0;
    s.faults.push({
      kind, every, left: f.count ? Number(f.count) : every ? Infinity : 1, seen: 0,
      retry_after: f.retry_after, stall_ms: f.stall_ms, path: f.path, method: f.method,
    });
    return [200, { queued: s.faults.length }];
  }
  if (p === '/__standin/faults' && method === 'DELETE') { s.faults = []; return [200, { queued: 0 }]; }
  if (p === '/__standin/faults' && method === 'GET') return [200, { faults: s.faults }];
  if (p === '/__standin/stats' && method === 'GET') return [200, s.stats];
  if (p === '/__standin/stats/reset' && method === 'POST') { s.resetStats(); return [200, { ok: true }]; }
  if (p === '/__standin/config' && method === 'POST') {
    if (body && body.indexing_ms !== undefined) s.config.indexing_ms = Number(body.indexing_ms) || 0;
    return [200, s.config];
  }
  if (p === '/__standin/reset' && method === 'POST') {
    s.collections.clear();
    s.aliases.clear();
    s.faults = [];
    return [200, { ok: true }];
  }
  return [404, { error: `no admin route ${method} ${p}` }];
}

// ---------------------------------------------------------------- HTTP

function send(res, status, obj, started, extraHeaders) {
  const body = JSON.stringify(obj);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...extraHeaders });
  res.end(body);
}

function sendError(res, status, message, started, headers) {
  send(res, status, { status: { error: message }, time: (performance.now() - started) / 1000 }, started, headers);
}

const FAULT_MESSAGES = {
  500: 'Service internal error: injected fault',
  502: 'Bad gateway: injected fault',
  503: 'Service unavailable: injected fault',
  504: 'Timeout: injected fault',
  400: 'Bad request: injected fault',
  429: 'Rate limiting exceeded: injected fault',
};

// Reads the body up to Qdrant's limit; calls done(err, buffer).
function readBody(req, done) {
  const declared = Number(req.headers['content-length']);
  if (declared > MAX_BODY) {
    // actix's JsonPayloadError::OverflowKnownLength, which Qdrant answers with 400
    req.resume();
    return done(new ApiError(400, `JSON payload (${declared} bytes) is larger than allowed (limit: ${MAX_BODY} bytes).`));
  }
  const chunks = [];
  let size = 0, over = false;
  req.on('data', (c) => {
    size += c.length;
    if (size > MAX_BODY) over = true;
    if (!over) chunks.push(c);
  });
  req.on('end', () => {
    if (over) return done(new ApiError(400, `JSON payload has exceeded limit (${MAX_BODY} bytes).`));
    done(null, Buffer.concat(chunks));
  });
  req.on('error', (e) => done(e));
}

function authorized(s, req) {
  if (!s.opts.apiKey) return null;
  const auth = req.headers.authorization;
  const key = req.headers['api-key'] !== undefined ? req.headers['api-key']
    : auth && auth.startsWith('Bearer ') ? auth.slice(7) : undefined;
  if (key === undefined) return 'Must provide an API key or an Authorization bearer token';
  const a = Buffer.from(String(key)), b = Buffer.from(s.opts.apiKey);
  if (a.length === b.length && crypto.timingSafeEqual(a, b)) return null;
  return 'Invalid API key or JWT';
}

function handle(s, req, res) {
  const started = performance.now();
  const [pathname, search] = req.url.split('?');
  const method = req.method;

  if (pathname.startsWith('/__standin/')) {
    return readBody(req, (err, buf) => {
      let body = null;
      try { body = buf && buf.length ? JSON.parse(buf) : null; } catch (e) { return send(res, 400, { error: e.message }); }
      const [status, out] = admin(s, method, req.url, body);
      send(res, status, out);
    });
  }

  s.stats.requests += 1;
  s.stats.last_headers = req.headers;
  // Qdrant lets these through without a key (src/actix/mod.rs whitelist)
  const open = pathname === '/' || pathname === '/healthz' || pathname.startsWith('/readyz') || pathname.startsWith('/livez');
  const denied = open ? null : authorized(s, req);
  if (denied) {
    // Qdrant answers 401 with the message as a plain-text body
    req.resume();
    res.writeHead(401, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(denied) });
    return res.end(denied);
  }

  // the benchmark sink: no parsing, no storing
  if (s.opts.sink && method === 'PUT' && /^\/collections\/[^/]+\/points$/.test(pathname)) {
    s.stats.by_route['PUT /collections/{collection_name}/points'] = (s.stats.by_route['PUT /collections/{collection_name}/points'] || 0) + 1;
    req.resume();
    req.on('end', () => {
      const wait = /(^|&)wait=true(&|$)/.test(search || '');
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(`{"result":{"operation_id":0,"status":"${wait ? 'completed' : 'acknowledged'}"},"status":"ok","time":0}`);
    });
    return undefined;
  }

  return readBody(req, (err, buf) => {
    if (err) {
      if (err instanceof ApiError) return sendError(res, err.status, err.message, started);
      return res.destroy();
    }
    const fault = s.takeFault(method, req.url);
    if (fault) {
      console.error(`fault ${fault.kind} on ${method} ${pathname}`);
      if (fault.kind === 'drop') return req.socket.destroy();
      if (fault.kind === 'stall') {
        // answer normally after stall_ms (an hour when not given: until the
        // client gives up and hangs up)
        const timer = setTimeout(() => dispatch(s, req, res, pathname, search, buf, started), fault.stall_ms === undefined ? 3600e3 : Number(fault.stall_ms));
        res.on('close', () => clearTimeout(timer));
        return undefined;
      }
      const status = Number(fault.kind);
      const headers = status === 429 && fault.retry_after !== undefined ? { 'retry-after': String(fault.retry_after) } : {};
      return sendError(res, status, FAULT_MESSAGES[status], started, headers);
    }
    return dispatch(s, req, res, pathname, search, buf, started);
  });
}

function dispatch(s, req, res, pathname, search, buf, started) {
  const method = req.method;
  const trimmed = pathname.length > 1 ? pathname.replace(/\/+$/, '') : pathname;
  let matched = null, params = null, pathMatched = false;
  for (const r of s.routes) {
    const m = r.re.exec(trimmed);
    if (!m) continue;
    pathMatched = true;
    if (r.method !== method) continue;
    matched = r;
    params = m.slice(1).map(decodeURIComponent);
    break;
  }
  if (!matched) {
    if (pathMatched) { res.writeHead(405); return res.end(); }
    res.writeHead(404, { 'content-length': 0 });
    return res.end();
  }
  s.stats.by_route[matched.key] = (s.stats.by_route[matched.key] || 0) + 1;
  const q = {};
  for (const [k, v] of new URLSearchParams(search || '')) q[k] = v === '' || v === 'true' ? true : v === 'false' ? false : v;
  try {
    let body = null;
    const schemaKey = matched.key;
    if (s.validator.routes.has(schemaKey)) {
      if (buf.length === 0) throw new ApiError(400, 'Format error in JSON body: EOF while parsing a value at line 1 column 0');
      try { body = JSON.parse(buf); } catch (e) {
        throw new ApiError(400, `Format error in JSON body: ${e.message}`);
      }
      const bad = s.validator.check(schemaKey, body);
      if (bad) throw new ApiError(bad.status, bad.message);
    }
    const out = matched.handler(params, body, q);
    const time = (performance.now() - started) / 1000;
    if (out.text !== undefined) {
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
      return res.end(out.text);
    }
    if (out.raw !== undefined) return send(res, 200, out.raw);
    if (out.file !== undefined) {
      const st = fs.statSync(out.file);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': st.size });
      return fs.createReadStream(out.file).pipe(res);
    }
    return send(res, 200, { result: out.result, status: 'ok', time });
  } catch (e) {
    if (e instanceof ApiError) {
      if (e.status >= 500) console.error(`${method} ${pathname}: ${e.status} ${e.message}`);
      return sendError(res, e.status, e.message, started);
    }
    console.error(`${method} ${pathname}: ${e.stack}`);
    return sendError(res, 500, `Service internal error: ${e.message}`, started);
  }
}

function start(opts, onListening) {
  const s = new Standin(opts);
  const server = http.createServer({ keepAlive: true }, (req, res) => handle(s, req, res));
  // clients keep connections in a pool; Qdrant (actix) keeps them a while
  server.keepAliveTimeout = 75_000;
  server.headersTimeout = 80_000;
  server.requestTimeout = 0;
  server.listen(opts.port, opts.host, () => onListening && onListening(server, s));
  return { server, standin: s };
}

if (require.main === module) {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`qdrant-standin: ${e.message}\n${USAGE}\n`);
    process.exit(2);
  }
  if (opts.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const { server } = start(opts, (srv, s) => {
    const { port } = srv.address();
    const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
    // one line on stdout, written at once, so a script can read the port
    fs.writeSync(1, `Qdrant stand-in listening on http://${host}:${port}\n`);
    console.error(`qdrant-standin: pid ${process.pid}, snapshots in ${s.dataDir}${opts.apiKey ? ', api key required' : ''}${opts.sink ? ', sink mode' : ''}`);
  });
  server.on('error', (e) => {
    process.stderr.write(`qdrant-standin: ${e.message}\n`);
    process.exit(1);
  });
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // keep-alive connections would hold close() open
  process.on('SIGTERM', () => setTimeout(() => process.exit(0), 200).unref());
  process.on('SIGINT', () => setTimeout(() => process.exit(0), 200).unref());
}

module.exports = { start, parseArgs };
