'use strict';
// Collections held in memory, with exact (brute-force) search.
//
// A collection keeps its points in slots 0..count-1: ids, payloads and
// versions in plain arrays, each named dense vector in one growable
// Float32Array (slot * dim), so a search is one tight loop over contiguous
// memory. Deleting a point moves the last slot into its place, so slots stay
// dense. Scores and orderings follow Qdrant; each rule names its source file
// in github.com/qdrant/qdrant.
const { parseUuid } = require('./schema');

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}
// StorageError's prefixes and HTTP codes (lib/storage/src/content_manager/
// errors.rs, src/actix/helpers.rs)
const badInput = (d) => new ApiError(400, `Wrong input: ${d}`);
const notFound = (d) => new ApiError(404, `Not found: ${d}`);
const alreadyExists = (d) => new ApiError(409, `Wrong input: ${d}`);
const badRequest = (d) => new ApiError(400, `Bad request: ${d}`);

// A point id as a Map key: a number for an integer id, the canonical
// lower-case hyphenated text for a UUID (what Qdrant answers with).
function idKey(id) {
  if (typeof id === 'number') {
    if (Number.isInteger(id) && id >= 0) return id;
  } else if (typeof id === 'string') {
    const u = parseUuid(id);
    if (u) return u;
  }
  throw new ApiError(400, `Format error in JSON body: value ${id} is not a valid point ID, valid values are either an unsigned integer or a UUID`);
}

// ExtendedPointId's derived Ord: every integer id before every UUID, UUIDs
// by their bytes, which is the order of their lower-case hex text
// (lib/segment/src/types.rs). Scroll pages follow it.
function compareIds(a, b) {
  const na = typeof a === 'number', nb = typeof b === 'number';
  if (na && nb) return a - b;
  if (na) return -1;
  if (nb) return 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

const DISTANCES = new Set(['Cosine', 'Dot', 'Euclid', 'Manhattan']);
// Euclid and Manhattan scores are distances: smaller is better
// (lib/segment/src/spaces/simple.rs, postprocess returns |score|, sqrt'd for Euclid)
const smallerIsBetter = (distance) => distance === 'Euclid' || distance === 'Manhattan';

// lib/segment/src/spaces/simple.rs cosine_preprocess and spaces/tools.rs
// is_length_zero_or_normalized: a zero vector or one already of length 1
// (within 1e-6 of the squared length) is kept as it is.
function cosinePreprocess(vec) {
  let len = 0;
  for (let i = 0; i < vec.length; i++) len += vec[i] * vec[i];
  len = Math.fround(len);
  if (len < 1.1920929e-7 || Math.abs(len - 1) <= 1e-6) return vec;
  const l = Math.sqrt(len);
  const out = new Float32Array(vec.length);
  for (let i = 0; i < vec.length; i++) out[i] = vec[i] / l;
  return out;
}

const DEFAULT_HNSW = { m: 16, ef_construct: 100, full_scan_threshold: 10000, max_indexing_threads: 0, on_disk: false };
const DEFAULT_OPTIMIZERS = {
  deleted_threshold: 0.2, vacuum_min_vector_number: 1000, default_segment_number: 0, max_segment_size: null,
  memmap_threshold: null, indexing_threshold: 10000, flush_interval_sec: 5, max_optimization_threads: null,
};
const DEFAULT_WAL = { wal_capacity_mb: 32, wal_segments_ahead: 0, wal_retain_closed: 1 };

class DenseStore {
  constructor(params) {
    this.params = params;
    this.dim = params.size;
    this.distance = params.distance;
    this.data = new Float32Array(this.dim * 16);
    this.has = new Uint8Array(16);
  }
  ensure(slots) {
    if (this.has.length >= slots) return;
    let cap = this.has.length;
    while (cap < slots) cap *= 2;
    const data = new Float32Array(cap * this.dim);
    data.set(this.data);
    const has = new Uint8Array(cap);
    has.set(this.has);
    this.data = data;
    this.has = has;
  }
  set(slot, vec) {
    this.ensure(slot + 1);
    const v = this.distance === 'Cosine' ? cosinePreprocess(vec) : vec;
    this.data.set(v, slot * this.dim);
    this.has[slot] = 1;
  }
  get(slot) {
    if (!this.has[slot]) return undefined;
    return Array.from(this.data.subarray(slot * this.dim, (slot + 1) * this.dim));
  }
  move(from, to) {
    this.ensure(to + 1);
    this.data.copyWithin(to * this.dim, from * this.dim, (from + 1) * this.dim);
    this.has[to] = this.has[from];
    this.has[from] = 0;
  }
  clear(slot) { if (slot < this.has.length) this.has[slot] = 0; }
}

class SparseStore {
  constructor(params) {
    this.params = params;
    this.vecs = [];
  }
  set(slot, v) {
    // sorted by index, as Qdrant stores them
    const order = v.indices.map((_, i) => i).sort((a, b) => v.indices[a] - v.indices[b]);
    this.vecs[slot] = { indices: Uint32Array.from(order.map((i) => v.indices[i])), values: Float32Array.from(order.map((i) => v.values[i])) };
  }
  get(slot) {
    const v = this.vecs[slot];
    return v && { indices: Array.from(v.indices), values: Array.from(v.values) };
  }
  move(from, to) { this.vecs[to] = this.vecs[from]; this.vecs[from] = undefined; }
  clear(slot) { this.vecs[slot] = undefined; }
}

function mergeDefaults(defaults, given) {
  const out = { ...defaults };
  for (const [k, v] of Object.entries(given || {})) if (v !== undefined) out[k] = v;
  return out;
}

function checkDenseParams(p, name) {
  if (!p || typeof p.size !== 'number' || !DISTANCES.has(p.distance)) {
    throw badInput(`vector params${name ? ` for ${name}` : ''} need a size and a distance`);
  }
}

class Collection {
  constructor(name, body) {
    this.name = name;
    const vectors = body.vectors === undefined || body.vectors === null ? {} : body.vectors;
    // one unnamed vector (`vectors: {size, distance}`) is stored under "",
    // Qdrant's DEFAULT_VECTOR_NAME
    this.single = typeof vectors.size === 'number';
    this.vectorsConfig = vectors;
    this.dense = new Map();
    if (this.single) {
      checkDenseParams(vectors);
      this.dense.set('', new DenseStore(vectors));
    } else {
      for (const [n, p] of Object.entries(vectors)) {
        checkDenseParams(p, n);
        this.dense.set(n, new DenseStore(p));
      }
    }
    this.sparse = new Map();
    for (const [n, p] of Object.entries(body.sparse_vectors || {})) this.sparse.set(n, new SparseStore(p || {}));
    this.params = {
      shard_number: body.shard_number || 1,
      ...(body.sharding_method ? { sharding_method: body.sharding_method } : {}),
      replication_factor: body.replication_factor || 1,
      write_consistency_factor: body.write_consistency_factor || 1,
      on_disk_payload: body.on_disk_payload === undefined || body.on_disk_payload === null ? true : body.on_disk_payload,
    };
    this.hnsw = mergeDefaults(DEFAULT_HNSW, body.hnsw_config);
    this.optimizers = mergeDefaults(DEFAULT_OPTIMIZERS, body.optimizers_config);
    this.wal = mergeDefaults(DEFAULT_WAL, body.wal_config);
    this.quantization = body.quantization_config || null;
    this.strictMode = body.strict_mode_config || { enabled: false };
    this.metadata = body.metadata || undefined;
    this.payloadIndexes = new Map();
    this.ids = [];
    this.payloads = [];
    this.versions = [];
    this.slotOf = new Map();
    this.count = 0;
    this.opNumber = 0;
    this.sortedIds = null; // cache of ids in Qdrant's order, dropped on a write
    this.yellowUntil = 0;
  }

  info() {
    const vectors = {};
    if (this.single) Object.assign(vectors, this.vectorsConfig);
    else for (const [n, p] of Object.entries(this.vectorsConfig)) vectors[n] = p;
    const sparse = {};
    for (const [n, s] of this.sparse) sparse[n] = s.params;
    const payloadSchema = {};
    for (const [field, idx] of this.payloadIndexes) {
      let points = 0;
      for (let s = 0; s < this.count; s++) if (valuesAt(this.payloads[s], field).length > 0) points++;
      payloadSchema[field] = { data_type: idx.data_type, ...(idx.params ? { params: idx.params } : {}), points };
    }
    let indexed = 0;
    for (const d of this.dense.values()) for (let s = 0; s < this.count; s++) indexed += d.has[s];
    const params = { vectors, ...this.params };
    if (this.sparse.size > 0) params.sparse_vectors = sparse;
    return {
      status: Date.now() < this.yellowUntil ? 'yellow' : 'green',
      optimizer_status: 'ok',
      // below indexing_threshold Qdrant builds no HNSW graph, so it counts none
      indexed_vectors_count: this.count >= this.optimizers.indexing_threshold ? indexed : 0,
      points_count: this.count,
      segments_count: 2,
      config: {
        params,
        hnsw_config: this.hnsw,
        optimizer_config: this.optimizers,
        wal_config: this.wal,
        quantization_config: this.quantization,
        strict_mode_config: this.strictMode,
        ...(this.metadata ? { metadata: this.metadata } : {}),
      },
      payload_schema: payloadSchema,
    };
  }

  update(body) {
    if (body.optimizers_config) this.optimizers = mergeDefaults(this.optimizers, body.optimizers_config);
    if (body.hnsw_config) this.hnsw = mergeDefaults(this.hnsw, body.hnsw_config);
    if (body.params) {
      for (const [k, v] of Object.entries(body.params)) if (v !== null && v !== undefined) this.params[k] = v;
    }
    if (body.quantization_config !== undefined) {
      this.quantization = body.quantization_config === 'Disabled' ? null : body.quantization_config;
    }
    if (body.strict_mode_config) this.strictMode = { ...this.strictMode, ...body.strict_mode_config };
    if (body.metadata) this.metadata = { ...(this.metadata || {}), ...body.metadata };
    if (body.vectors) {
      for (const [n, diff] of Object.entries(body.vectors)) {
        const key = this.single && n === '' ? '' : n;
        const d = this.dense.get(key);
        if (!d) throw badInput(`Not existing vector name error: ${n}`);
        for (const [k, v] of Object.entries(diff || {})) if (v !== null && v !== undefined) d.params[k] = v;
      }
    }
    if (body.sparse_vectors) {
      for (const [n, diff] of Object.entries(body.sparse_vectors)) {
        const s = this.sparse.get(n);
        if (!s) throw badInput(`Not existing vector name error: ${n}`);
        for (const [k, v] of Object.entries(diff || {})) if (v !== null && v !== undefined) s.params[k] = v;
      }
    }
  }

  // The vector store `using` names: "" (or absent) is the unnamed one.
  denseStore(name) {
    const key = name === undefined || name === null ? '' : name;
    return this.dense.get(key);
  }

  checkVectorName(name) {
    if (!this.dense.has(name) && !this.sparse.has(name)) {
      throw badInput(`Not existing vector name error: ${name === '' ? '' : name}`);
    }
  }

  // A point's vectors as given: an array (the unnamed vector), or an object
  // of named dense arrays and sparse {indices, values}. Checked before any
  // point of the request is written, as Qdrant checks the whole operation
  // first (src/common/validate_vectors.rs).
  checkVectors(vector) {
    if (Array.isArray(vector)) {
      if (vector.length > 0 && Array.isArray(vector[0])) throw badInput('multivectors are not supported by the stand-in');
      const d = this.dense.get('');
      if (!d) throw badInput('Not existing vector name error: ');
      if (vector.length !== d.dim) throw badInput(`Vector dimension error: expected dim: ${d.dim}, got ${vector.length}`);
      return;
    }
    for (const [name, v] of Object.entries(vector || {})) {
      if (Array.isArray(v)) {
        const d = this.dense.get(name);
        if (!d) {
          if (this.sparse.has(name)) throw badInput(`Conversion between sparse and regular vectors failed`);
          throw badInput(`Not existing vector name error: ${name}`);
        }
        if (v.length > 0 && Array.isArray(v[0])) throw badInput('multivectors are not supported by the stand-in');
        if (v.length !== d.dim) throw badInput(`Vector dimension error: expected dim: ${d.dim}, got ${v.length} for vector '${name}'`);
      } else if (v && typeof v === 'object' && Array.isArray(v.indices)) {
        if (!this.sparse.has(name)) {
          if (this.dense.has(name)) throw badInput(`Conversion between sparse and regular vectors failed`);
          throw badInput(`Not existing vector name error: ${name}`);
        }
        if (v.indices.length !== v.values.length) {
          throw new ApiError(422, `Validation error in JSON body: [vector.${name}: must be the same length as indices]`);
        }
        if (new Set(v.indices).size !== v.indices.length) {
          throw new ApiError(422, `Validation error in JSON body: [vector.${name}.indices: must be unique]`);
        }
      } else {
        throw badInput(`inference objects (documents, images) are not supported by the stand-in: ${name}`);
      }
    }
  }

  touch() {
    this.opNumber += 1;
    this.sortedIds = null;
    return this.opNumber;
  }

  upsert(points) {
    for (const p of points) this.checkVectors(p.vector);
    const op = this.touch();
    for (const p of points) {
      const key = idKey(p.id);
      let slot = this.slotOf.get(key);
      if (slot === undefined) {
        slot = this.count++;
        this.slotOf.set(key, slot);
        this.ids[slot] = key;
      } else {
        // an upsert replaces the whole point: vectors it does not name go
        for (const d of this.dense.values()) d.clear(slot);
        for (const s of this.sparse.values()) s.clear(slot);
      }
      this.payloads[slot] = p.payload || {};
      this.versions[slot] = op;
      if (Array.isArray(p.vector)) {
        this.dense.get('').set(slot, p.vector);
      } else {
        for (const [name, v] of Object.entries(p.vector || {})) {
          if (Array.isArray(v)) this.dense.get(name).set(slot, v);
          else this.sparse.get(name).set(slot, v);
        }
      }
    }
    return op;
  }

  removeSlot(slot) {
    const last = this.count - 1;
    this.slotOf.delete(this.ids[slot]);
    if (slot !== last) {
      this.ids[slot] = this.ids[last];
      this.payloads[slot] = this.payloads[last];
      this.versions[slot] = this.versions[last];
      this.slotOf.set(this.ids[slot], slot);
      for (const d of this.dense.values()) d.move(last, slot);
      for (const s of this.sparse.values()) s.move(last, slot);
    } else {
      for (const d of this.dense.values()) d.clear(slot);
      for (const s of this.sparse.values()) s.clear(slot);
    }
    this.ids.length = last;
    this.payloads.length = last;
    this.versions.length = last;
    this.count = last;
  }

  // The slots a PointsSelector ({points: [...]} or {filter}) names.
  selectSlots(selector) {
    if (selector.points) {
      const out = [];
      for (const id of selector.points) {
        const s = this.slotOf.get(idKey(id));
        if (s !== undefined) out.push(s);
      }
      return out;
    }
    const mask = this.filterMask(selector.filter);
    const out = [];
    for (let s = 0; s < this.count; s++) if (mask === null || mask[s]) out.push(s);
    return out;
  }

  deletePoints(selector) {
    const ids = this.selectSlots(selector).map((s) => this.ids[s]);
    const op = this.touch();
    for (const id of ids) {
      const s = this.slotOf.get(id);
      if (s !== undefined) this.removeSlot(s);
    }
    return op;
  }

  setPayload(body, overwrite) {
    const slots = this.selectSlots(body);
    const op = this.touch();
    for (const s of slots) {
      if (overwrite) {
        this.payloads[s] = { ...body.payload };
      } else if (body.key) {
        // set_payload with a key merges into the object at that path
        let obj = this.payloads[s];
        for (const part of body.key.split('.')) {
          if (!obj[part] || typeof obj[part] !== 'object' || Array.isArray(obj[part])) obj[part] = {};
          obj = obj[part];
        }
        Object.assign(obj, body.payload);
      } else {
        this.payloads[s] = { ...this.payloads[s], ...body.payload };
      }
      this.versions[s] = op;
    }
    return op;
  }

  deletePayload(body) {
    const slots = this.selectSlots(body);
    const op = this.touch();
    for (const s of slots) {
      const p = { ...this.payloads[s] };
      for (const k of body.keys) deletePath(p, k);
      this.payloads[s] = p;
      this.versions[s] = op;
    }
    return op;
  }

  clearPayload(selector) {
    const slots = this.selectSlots(selector);
    const op = this.touch();
    for (const s of slots) {
      this.payloads[s] = {};
      this.versions[s] = op;
    }
    return op;
  }

  // A Record as Qdrant answers it: payload and vector only when asked for.
  record(slot, withPayload, withVector) {
    const r = { id: this.ids[slot] };
    const payload = selectPayload(this.payloads[slot], withPayload);
    if (payload !== undefined) r.payload = payload;
    const vector = this.vectorsOf(slot, withVector);
    if (vector !== undefined) r.vector = vector;
    return r;
  }

  vectorsOf(slot, withVector) {
    if (!withVector) return undefined;
    const names = withVector === true ? null : new Set(withVector);
    if (this.single && (names === null || names.has(''))) {
      return this.dense.get('').get(slot);
    }
    const out = {};
    for (const [n, d] of this.dense) {
      if (names && !names.has(n)) continue;
      const v = d.get(slot);
      if (v) out[n] = v;
    }
    for (const [n, s] of this.sparse) {
      if (names && !names.has(n)) continue;
      const v = s.get(slot);
      if (v) out[n] = v;
    }
    return out;
  }

  sortedSlots() {
    if (!this.sortedIds) this.sortedIds = this.ids.slice(0, this.count).sort(compareIds);
    return this.sortedIds;
  }

  // null: no filter, every slot matches; else a Uint8Array over the slots
  filterMask(filter) {
    if (!filter) return null;
    const mask = new Uint8Array(this.count);
    for (let s = 0; s < this.count; s++) {
      mask[s] = matchFilter(filter, this.payloads[s], this.ids[s]) ? 1 : 0;
    }
    return mask;
  }

  scroll(body) {
    const limit = body.limit === undefined || body.limit === null ? 10 : body.limit;
    if (body.order_by) throw badInput('order_by is not supported by the stand-in');
    const ids = this.sortedSlots();
    let start = 0;
    if (body.offset !== undefined && body.offset !== null) {
      // the first id at or after the offset, like Qdrant's range scan
      const off = idKey(body.offset);
      let lo = 0, hi = ids.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (compareIds(ids[mid], off) < 0) lo = mid + 1; else hi = mid;
      }
      start = lo;
    }
    const points = [];
    let next = null;
    for (let i = start; i < ids.length; i++) {
      const slot = this.slotOf.get(ids[i]);
      if (body.filter && !matchFilter(body.filter, this.payloads[slot], ids[i])) continue;
      if (points.length === limit) {
        next = ids[i];
        break;
      }
      points.push(this.record(slot, body.with_payload === undefined ? true : body.with_payload, body.with_vector || false));
    }
    return { points, next_page_offset: next };
  }

  countPoints(body) {
    const mask = this.filterMask(body.filter);
    if (mask === null) return this.count;
    let n = 0;
    for (let s = 0; s < this.count; s++) n += mask[s];
    return n;
  }
}

function deletePath(obj, key) {
  const parts = key.split('.');
  let o = obj;
  for (let i = 0; i < parts.length - 1; i++) {
    if (!o || typeof o !== 'object') return;
    o = o[parts[i]];
  }
  if (o && typeof o === 'object') delete o[parts[parts.length - 1]];
}

// with_payload: true/false, a list of keys to include, or {include}/{exclude}
function selectPayload(payload, withPayload) {
  if (withPayload === undefined || withPayload === false || withPayload === null) return undefined;
  if (withPayload === true) return payload;
  if (Array.isArray(withPayload)) return pick(payload, withPayload);
  if (withPayload.include) return pick(payload, withPayload.include);
  if (withPayload.exclude) {
    const out = JSON.parse(JSON.stringify(payload));
    for (const k of withPayload.exclude) deletePath(out, k);
    return out;
  }
  return payload;
}

function pick(payload, keys) {
  const out = {};
  for (const k of keys) {
    const top = k.split('.')[0].replace(/\[\]$/, '');
    if (payload[top] !== undefined) out[top] = payload[top];
  }
  return out;
}

// The values at a key path: "a.b" walks into objects and through arrays
// (flattening them, as Qdrant's JsonPath does); "a[].b" the same; "a[0]" an
// element. Arrays at the end are flattened too: a condition on a field
// holding [1, 2] matches when 1 or 2 matches.
function valuesAt(payload, key) {
  let cur = [payload];
  const parts = key.match(/[^.[\]]+|\[\d*\]/g) || [];
  for (const part of parts) {
    const next = [];
    if (part === '[]') {
      for (const v of cur) if (Array.isArray(v)) next.push(...v);
    } else if (part[0] === '[') {
      const i = Number(part.slice(1, -1));
      for (const v of cur) if (Array.isArray(v) && i < v.length) next.push(v[i]);
    } else {
      for (const v of cur) {
        if (Array.isArray(v)) {
          for (const e of v) if (e && typeof e === 'object' && !Array.isArray(e) && part in e) next.push(e[part]);
        } else if (v && typeof v === 'object' && part in v) {
          next.push(v[part]);
        }
      }
    }
    cur = next;
  }
  const flat = [];
  for (const v of cur) {
    if (Array.isArray(v)) flat.push(...v);
    else flat.push(v);
  }
  return flat;
}

function rawAt(payload, key) {
  let v = payload;
  for (const part of key.split('.')) {
    if (!v || typeof v !== 'object' || Array.isArray(v)) return undefined;
    v = v[part];
  }
  return v;
}

function matchFilter(f, payload, id) {
  if (!f) return true;
  const list = (x) => (x === undefined || x === null ? [] : Array.isArray(x) ? x : [x]);
  for (const c of list(f.must)) if (!matchCondition(c, payload, id)) return false;
  for (const c of list(f.must_not)) if (matchCondition(c, payload, id)) return false;
  const should = list(f.should);
  if (should.length > 0 && !should.some((c) => matchCondition(c, payload, id))) return false;
  if (f.min_should) {
    const n = f.min_should.conditions.filter((c) => matchCondition(c, payload, id)).length;
    if (n < f.min_should.min_count) return false;
  }
  return true;
}

function matchCondition(c, payload, id) {
  if (c.must !== undefined || c.should !== undefined || c.must_not !== undefined || c.min_should !== undefined) {
    return matchFilter(c, payload, id);
  }
  if (c.has_id) return c.has_id.some((x) => idKey(x) === id);
  if (c.is_empty) {
    const v = rawAt(payload, c.is_empty.key);
    if (v === undefined || v === null) return true;
    if (Array.isArray(v)) return v.length === 0;
    return valuesAt(payload, c.is_empty.key).length === 0;
  }
  if (c.is_null) {
    const v = rawAt(payload, c.is_null.key);
    return v === null || (Array.isArray(v) && v.length > 0 && v.every((e) => e === null));
  }
  if (c.nested) {
    const items = valuesAt(payload, c.nested.key).filter((e) => e && typeof e === 'object');
    return items.some((e) => matchFilter(c.nested.filter, e, id));
  }
  if (c.has_vector !== undefined) return true;
  if (c.key === undefined) throw badInput('the stand-in does not support this condition');
  const values = valuesAt(payload, c.key);
  if (c.match) {
    const m = c.match;
    if ('value' in m) return values.some((v) => v === m.value);
    if ('any' in m) return values.some((v) => m.any.includes(v));
    if ('except' in m) return values.length === 0 || !values.some((v) => m.except.includes(v));
    if ('text' in m) return values.some((v) => typeof v === 'string' && v.includes(m.text));
    if ('phrase' in m) return values.some((v) => typeof v === 'string' && v.includes(m.phrase));
    if ('text_any' in m) return values.some((v) => typeof v === 'string' && m.text_any.split(/\s+/).some((w) => w && v.includes(w)));
    return false;
  }
  if (c.range) {
    const r = c.range;
    const toNum = (x) => (typeof x === 'string' ? Date.parse(x) : x);
    return values.some((raw) => {
      const v = toNum(raw);
      if (typeof v !== 'number' || Number.isNaN(v)) return false;
      if (r.gt !== undefined && r.gt !== null && !(v > toNum(r.gt))) return false;
      if (r.gte !== undefined && r.gte !== null && !(v >= toNum(r.gte))) return false;
      if (r.lt !== undefined && r.lt !== null && !(v < toNum(r.lt))) return false;
      if (r.lte !== undefined && r.lte !== null && !(v <= toNum(r.lte))) return false;
      return true;
    });
  }
  if (c.values_count) {
    const n = rawAt(payload, c.key) === undefined ? 0 : values.length;
    const r = c.values_count;
    return !((r.gt != null && !(n > r.gt)) || (r.gte != null && !(n >= r.gte)) || (r.lt != null && !(n < r.lt)) || (r.lte != null && !(n <= r.lte)));
  }
  if (c.geo_radius || c.geo_bounding_box || c.geo_polygon) throw badInput('geo conditions are not supported by the stand-in');
  return false;
}

module.exports = {
  ApiError, badInput, notFound, alreadyExists, badRequest, Collection, idKey, compareIds, smallerIsBetter,
  cosinePreprocess, matchFilter, valuesAt,
};
