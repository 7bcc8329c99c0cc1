'use strict';
// POST /collections/{name}/points/query: exact search, prefetch and fusion.
const { badInput, idKey, smallerIsBetter, cosinePreprocess, compareIds } = require('./store');

// lib/segment/src/common/reciprocal_rank_fusion.rs: DEFAULT_RRF_K = 2 and
// position_score(pos, k, w) = 1 / ((pos + 1) / w + k - 1), pos counted from
// 0, so 1 / (pos + k) with the default weight 1; a weight <= 0 adds nothing.
const DEFAULT_RRF_K = 2;
function rrf(lists, k, weights) {
  if (weights && weights.length !== lists.length) {
    throw badInput(`Number of weights in RRF should match number of pre-fetches: got ${weights.length}, expected ${lists.length}`);
  }
  const byId = new Map();
  lists.forEach((list, li) => {
    const w = weights ? weights[li] : 1;
    list.forEach((p, pos) => {
      const s = w <= 0 ? 0 : Math.fround(1 / ((pos + 1) / w + k - 1));
      const seen = byId.get(p.id);
      if (seen) seen.score = Math.fround(seen.score + s);
      else byId.set(p.id, { ...p, score: s });
    });
  });
  return sortDesc([...byId.values()]);
}

// lib/segment/src/common/score_fusion.rs: DBSF normalises each list with
// its mean and sample variance (Welford) to [mean - 3 sd, mean + 3 sd]
// mapped onto [0, 1] (a list of one point scores 0.5, equal extremes give
// 0.5), then sums a point's normalised scores over the lists.
function distrNorm(list) {
  if (list.length < 2) return list.map((p) => ({ ...p, score: 0.5 }));
  let mean = 0, agg = 0, k = 0;
  for (const p of list) {
    k++;
    const old = p.score - mean;
    mean = Math.fround(mean + old / k);
    agg = Math.fround(agg + old * (p.score - mean));
  }
  const sd = Math.sqrt(agg / (list.length - 1));
  const min = mean - 3 * sd, max = mean + 3 * sd;
  if (min === max) return list.map((p) => ({ ...p, score: 0.5 }));
  return list.map((p) => ({ ...p, score: Math.fround((p.score - min) / (max - min)) }));
}
function dbsf(lists) {
  const byId = new Map();
  for (const list of lists) {
    for (const p of distrNorm(list)) {
      const seen = byId.get(p.id);
      if (seen) seen.score = Math.fround(seen.score + p.score);
      else byId.set(p.id, p);
    }
  }
  return sortDesc([...byId.values()]);
}

// Stable: ties keep the order in which points were first seen.
function sortDesc(points) { return points.sort((a, b) => b.score - a.score); }

// The parsed query of a request or a prefetch.
function parseQuery(col, q, using, exclude) {
  if (q === undefined || q === null) return { kind: 'none' };
  if (typeof q === 'object' && !Array.isArray(q)) {
    if ('nearest' in q) return parseQuery(col, q.nearest, using, exclude);
    if ('fusion' in q) return { kind: 'fusion', method: q.fusion, k: DEFAULT_RRF_K };
    if ('rrf' in q) return { kind: 'fusion', method: 'rrf', k: (q.rrf && q.rrf.k) || DEFAULT_RRF_K, weights: q.rrf && q.rrf.weights };
    if ('indices' in q) {
      const name = using === undefined || using === null ? '' : using;
      if (!col.sparse.has(name)) throw badInput(`Not existing vector name error: ${name}`);
      return { kind: 'sparse', name, indices: q.indices, values: q.values };
    }
    const what = Object.keys(q)[0];
    throw badInput(`the stand-in does not support ${what} queries`);
  }
  if (Array.isArray(q)) {
    const name = using === undefined || using === null ? '' : using;
    const d = col.dense.get(name);
    if (!d) throw badInput(`Not existing vector name error: ${name}`);
    if (q.length > 0 && Array.isArray(q[0])) throw badInput('multivector queries are not supported by the stand-in');
    if (q.length !== d.dim) {
      throw badInput(`Vector dimension error: expected dim: ${d.dim}, got ${q.length}${name ? ` for vector '${name}'` : ''}`);
    }
    return { kind: 'dense', name, vec: Float32Array.from(q) };
  }
  // a point id: search with that point's vector, and leave the point out
  // (collection_query.rs, exclude_referenced_ids)
  const key = idKey(q);
  const slot = col.slotOf.get(key);
  if (slot === undefined) throw notFoundPoint(key);
  exclude.add(key);
  const name = using === undefined || using === null ? '' : using;
  if (col.sparse.has(name)) {
    const v = col.sparse.get(name).get(slot);
    if (!v) throw badInput(`No vector ${name} in point ${key}`);
    return { kind: 'sparse', name, indices: v.indices, values: v.values };
  }
  const d = col.dense.get(name);
  if (!d) throw badInput(`Not existing vector name error: ${name}`);
  const v = d.get(slot);
  if (!v) throw badInput(`Vector of point ${key} is missing: ${name}`);
  return { kind: 'dense', name, vec: Float32Array.from(v) };
}

function notFoundPoint(key) {
  const { notFound } = require('./store');
  return notFound(`No point with id ${key} found`);
}

// Scores of every candidate slot (all slots, or those in `only`), as
// [{slot, score}] in best-first order, at most `top` of them.
function scoreDense(col, q, mask, only, top, threshold) {
  const d = col.dense.get(q.name);
  const dim = d.dim, data = d.data, has = d.has;
  let qv = q.vec;
  if (d.distance === 'Cosine') qv = cosinePreprocess(qv);
  const small = smallerIsBetter(d.distance);
  const heap = new TopK(top, small);
  const visit = (s) => {
    if (!has[s] || (mask && !mask[s])) return;
    const off = s * dim;
    let acc = 0;
    switch (d.distance) {
      case 'Euclid':
        for (let i = 0; i < dim; i++) { const x = qv[i] - data[off + i]; acc += x * x; }
        acc = Math.sqrt(acc);
        break;
      case 'Manhattan':
        for (let i = 0; i < dim; i++) acc += Math.abs(qv[i] - data[off + i]);
        break;
      default:
        for (let i = 0; i < dim; i++) acc += qv[i] * data[off + i];
    }
    const score = Math.fround(acc);
    if (threshold !== undefined && threshold !== null && (small ? score > threshold : score < threshold)) return;
    heap.push(score, s);
  };
  if (only) for (const s of only) visit(s);
  else for (let s = 0; s < col.count; s++) visit(s);
  return heap.sorted(col);
}

// Sparse dot product; with modifier "idf" the query's weights are scaled by
// ln((n - df + 0.5) / (df + 0.5) + 1), n the points that have this sparse
// vector and df those with the dimension (lib/segment/src/data_types/
// query_context.rs, fancy_idf). Only points sharing a dimension with the
// query are found, as Qdrant's inverted index finds them.
function scoreSparse(col, q, mask, only, top, threshold) {
  const store = col.sparse.get(q.name);
  const weights = new Map();
  q.indices.forEach((ix, i) => weights.set(ix, q.values[i]));
  if (store.params.modifier === 'idf') {
    let n = 0;
    const df = new Map();
    for (let s = 0; s < col.count; s++) {
      const v = store.vecs[s];
      if (!v) continue;
      n++;
      for (const ix of v.indices) if (weights.has(ix)) df.set(ix, (df.get(ix) || 0) + 1);
    }
    for (const [ix, w] of weights) {
      const f = df.get(ix) || 0;
      weights.set(ix, Math.fround(w * Math.fround(Math.log((n - f + 0.5) / (f + 0.5) + 1))));
    }
  }
  const heap = new TopK(top, false);
  const visit = (s) => {
    const v = store.vecs[s];
    if (!v || (mask && !mask[s])) return;
    let acc = 0, hit = false;
    for (let i = 0; i < v.indices.length; i++) {
      const w = weights.get(v.indices[i]);
      if (w !== undefined) { acc += w * v.values[i]; hit = true; }
    }
    if (!hit) return;
    const score = Math.fround(acc);
    if (threshold !== undefined && threshold !== null && score < threshold) return;
    heap.push(score, s);
  };
  if (only) for (const s of only) visit(s);
  else for (let s = 0; s < col.count; s++) visit(s);
  return heap.sorted(col);
}

// The best `k` (score, slot) pairs: a binary heap whose root is the worst
// kept, so a 20k-point scan costs O(n log k).
class TopK {
  constructor(k, smallBetter) {
    this.k = k;
    this.small = smallBetter;
    this.scores = [];
    this.slots = [];
  }
  // whether a is worse than b
  worse(a, b) { return this.small ? a > b : a < b; }
  push(score, slot) {
    if (this.k <= 0) return;
    const sc = this.scores, sl = this.slots;
    if (sc.length < this.k) {
      sc.push(score); sl.push(slot);
      let i = sc.length - 1;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (!this.worse(sc[i], sc[p])) break;
        [sc[i], sc[p]] = [sc[p], sc[i]]; [sl[i], sl[p]] = [sl[p], sl[i]];
        i = p;
      }
      return;
    }
    if (!this.worse(sc[0], score)) return;
    sc[0] = score; sl[0] = slot;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1, r = l + 1;
      let m = i;
      if (l < sc.length && this.worse(sc[l], sc[m])) m = l;
      if (r < sc.length && this.worse(sc[r], sc[m])) m = r;
      if (m === i) break;
      [sc[i], sc[m]] = [sc[m], sc[i]]; [sl[i], sl[m]] = [sl[m], sl[i]];
      i = m;
    }
  }
  // best first; equal scores by id, so answers do not depend on slot order
  sorted(col) {
    const out = this.scores.map((score, i) => ({ slot: this.slots[i], score }));
    out.sort((a, b) => (a.score !== b.score ? (this.small ? a.score - b.score : b.score - a.score)
      : compareIds(col.ids[a.slot], col.ids[b.slot])));
    return out;
  }
}

function andFilters(a, b) {
  if (!a) return b || null;
  if (!b) return a;
  return { must: [a, b] };
}

// Runs a query or prefetch; returns [{id, slot, score}] best first, at most
// offset + limit of them (the caller drops the offset).
function run(col, req, outerFilter, exclude) {
  const filter = andFilters(outerFilter, req.filter);
  const limit = req.limit === undefined || req.limit === null ? 10 : req.limit;
  const offset = req.offset || 0;
  const want = limit + offset;
  const q = parseQuery(col, req.query, req.using, exclude);
  const prefetches = req.prefetch === undefined || req.prefetch === null ? [] : Array.isArray(req.prefetch) ? req.prefetch : [req.prefetch];
  const threshold = req.score_threshold;

  const maskFor = () => {
    let mask = col.filterMask(filter);
    if (exclude.size > 0) {
      if (!mask) mask = new Uint8Array(col.count).fill(1);
      for (const id of exclude) { const s = col.slotOf.get(id); if (s !== undefined) mask[s] = 0; }
    }
    return mask;
  };
  const toPoints = (scored) => scored.map((r) => ({ id: col.ids[r.slot], slot: r.slot, score: r.score }));

  if (prefetches.length === 0) {
    if (q.kind === 'fusion') throw badInput('Fusion queries need at least one prefetch');
    if (q.kind === 'none') {
      // no query: points in id order, scored 0
      const mask = maskFor();
      const out = [];
      for (const id of col.sortedSlots()) {
        const s = col.slotOf.get(id);
        if (mask && !mask[s]) continue;
        out.push({ id, slot: s, score: 0 });
        if (out.length === want) break;
      }
      return out;
    }
    const mask = maskFor();
    const scored = q.kind === 'dense' ? scoreDense(col, q, mask, null, want, threshold) : scoreSparse(col, q, mask, null, want, threshold);
    return toPoints(scored);
  }

  // prefetches see the outer filter too (Qdrant propagates it down)
  const lists = prefetches.map((p) => run(col, p, filter, exclude).slice(p.offset || 0));
  let fused;
  if (q.kind === 'fusion') {
    fused = q.method === 'dbsf' ? dbsf(lists) : rrf(lists, q.k, q.weights);
    if (threshold !== undefined && threshold !== null) fused = fused.filter((p) => p.score >= threshold);
    return fused.slice(0, want);
  }
  if (q.kind === 'none') {
    if (lists.length !== 1) throw badInput('A query is needed to combine several prefetches');
    return lists[0].slice(0, want);
  }
  // rescore the prefetched candidates with this query
  const only = new Set();
  for (const list of lists) for (const p of list) only.add(p.slot);
  const mask = maskFor();
  const scored = q.kind === 'dense' ? scoreDense(col, q, mask, only, want, threshold) : scoreSparse(col, q, mask, only, want, threshold);
  return toPoints(scored);
}

function query(col, req) {
  const exclude = new Set();
  const found = run(col, req, null, exclude);
  const offset = req.offset || 0;
  const withPayload = req.with_payload === undefined ? false : req.with_payload;
  const withVector = req.with_vector === undefined ? false : req.with_vector;
  return {
    points: found.slice(offset).map((p) => {
      const r = col.record(p.slot, withPayload, withVector);
      const out = { id: p.id, version: col.versions[p.slot], score: p.score };
      if (r.payload !== undefined) out.payload = r.payload;
      if (r.vector !== undefined) out.vector = r.vector;
      return out;
    }),
  };
}

module.exports = { query, rrf, dbsf, DEFAULT_RRF_K };
