'use strict';
// The stand-in's own tests: node --test test.js
// Each scenario talks HTTP to a server started on a free port, and checks
// answers against values computed here, Qdrant's formulas written out again.
const { test, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const http = require('http');
const { start } = require('./server');

let server, base, dataDir;
const agent = new http.Agent({ keepAlive: true });

function call(method, p, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? null : typeof body === 'string' ? body : JSON.stringify(body);
    const len = data === null ? {} : { 'content-length': Buffer.byteLength(data) };
    const req = http.request(base + p, { method, agent, headers: { 'content-type': 'application/json', ...len, ...headers } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let json = null;
        try { json = JSON.parse(text); } catch (_) { /* not JSON */ }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    if (data !== null) req.write(data);
    req.end();
  });
}

before(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'standin-test.'));
  await new Promise((resolve) => {
    ({ server } = start({ host: '127.0.0.1', port: 0, data: dataDir, apiKey: null, sink: false }, (srv) => {
      base = `http://127.0.0.1:${srv.address().port}`;
      resolve();
    }));
  });
});
after(() => {
  agent.destroy();
  server.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
});
beforeEach(async () => {
  await call('POST', '/__standin/reset');
  await call('POST', '/__standin/config', { indexing_ms: 0 });
});

// a deterministic pseudo-random generator, so failures reproduce
function rng(seed) {
  let x = seed;
  return () => {
    x = (x * 1103515245 + 12345) % 2147483648;
    return x / 2147483648 - 0.5;
  };
}

const DIM = 8;
function vectors(n, seed) {
  const r = rng(seed);
  return Array.from({ length: n }, () => Array.from({ length: DIM }, () => Math.fround(r())));
}

const SCORE = {
  Dot: (a, b) => a.reduce((s, x, i) => s + x * b[i], 0),
  Cosine: (a, b) => {
    const n = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
    return SCORE.Dot(a, b) / (n(a) * n(b));
  },
  Euclid: (a, b) => Math.sqrt(a.reduce((s, x, i) => s + (x - b[i]) ** 2, 0)),
  Manhattan: (a, b) => a.reduce((s, x, i) => s + Math.abs(x - b[i]), 0),
};

for (const distance of ['Cosine', 'Dot', 'Euclid', 'Manhattan']) {
  test(`exact search with ${distance} matches a computation here`, async () => {
    assert.equal((await call('PUT', '/collections/c', { vectors: { size: DIM, distance } })).status, 200);
    const vs = vectors(200, 7);
    const put = await call('PUT', '/collections/c/points?wait=true', { points: vs.map((v, i) => ({ id: i, vector: v })) });
    assert.deepEqual(put.json.result.status, 'completed');
    const q = vectors(1, 99)[0];
    const small = distance === 'Euclid' || distance === 'Manhattan';
    const expected = vs.map((v, i) => ({ id: i, score: SCORE[distance](q, v) }))
      .sort((a, b) => (small ? a.score - b.score : b.score - a.score)).slice(0, 5);
    const res = await call('POST', '/collections/c/points/query', { query: q, limit: 5 });
    assert.equal(res.status, 200);
    assert.deepEqual(res.json.result.points.map((p) => p.id), expected.map((p) => p.id));
    res.json.result.points.forEach((p, i) => assert.ok(Math.abs(p.score - expected[i].score) < 1e-4, `${p.score} vs ${expected[i].score}`));
    // offset skips, score_threshold cuts in the distance's own direction
    const page2 = await call('POST', '/collections/c/points/query', { query: q, limit: 2, offset: 2 });
    assert.deepEqual(page2.json.result.points.map((p) => p.id), expected.slice(2, 4).map((p) => p.id));
    // just past the third score: float32 against this double computation
    const cut = expected[2].score + (small ? 1e-5 : -1e-5);
    const thr = await call('POST', '/collections/c/points/query', { query: q, limit: 50, score_threshold: cut });
    for (const p of thr.json.result.points) assert.ok(small ? p.score <= cut : p.score >= cut);
    assert.ok(thr.json.result.points.length >= 3);
  });
}

test('Cosine vectors are stored normalised, as Qdrant does', async () => {
  await call('PUT', '/collections/c', { vectors: { size: 2, distance: 'Cosine' } });
  await call('PUT', '/collections/c/points', { points: [{ id: 1, vector: [3, 4] }] });
  const got = await call('GET', '/collections/c/points/1');
  assert.deepEqual(got.json.result.vector.map((x) => Math.round(x * 1e6) / 1e6), [0.6, 0.8]);
});

test('sparse search with the idf modifier uses ln((n - df + 0.5) / (df + 0.5) + 1)', async () => {
  await call('PUT', '/collections/s', { sparse_vectors: { text: { modifier: 'idf' } } });
  const docs = [
    { id: 1, vector: { text: { indices: [1, 2], values: [1, 1] } } },
    { id: 2, vector: { text: { indices: [2], values: [2] } } },
    { id: 3, vector: { text: { indices: [3], values: [1] } } },
  ];
  await call('PUT', '/collections/s/points', { points: docs });
  const idf = (n, df) => Math.log((n - df + 0.5) / (df + 0.5) + 1);
  const res = await call('POST', '/collections/s/points/query', { query: { indices: [1, 2], values: [1, 1] }, using: 'text' });
  const want = { 1: idf(3, 1) + idf(3, 2), 2: 2 * idf(3, 2) };
  const pts = res.json.result.points;
  assert.deepEqual(pts.map((p) => p.id).sort(), [1, 2], 'point 3 shares no dimension');
  for (const p of pts) assert.ok(Math.abs(p.score - want[p.id]) < 1e-5);
});

test('RRF and DBSF on a hand example', async () => {
  await call('PUT', '/collections/f', { vectors: { a: { size: 1, distance: 'Dot' }, b: { size: 1, distance: 'Dot' } } });
  // a ranks 1 > 2 > 3 (scores 3, 2, 1); b ranks 3 > 2 (scores 10, 5), 1 has no b
  await call('PUT', '/collections/f/points', { points: [
    { id: 1, vector: { a: [3] } }, { id: 2, vector: { a: [2], b: [5] } }, { id: 3, vector: { a: [1], b: [10] } },
  ] });
  const prefetch = [{ query: [1], using: 'a' }, { query: [1], using: 'b' }];
  const rrf = await call('POST', '/collections/f/points/query', { prefetch, query: { fusion: 'rrf' } });
  // 1 / (pos + 2): id 1: 1/2; id 2: 1/3 + 1/3; id 3: 1/4 + 1/2
  const want = { 1: 1 / 2, 2: 2 / 3, 3: 3 / 4 };
  assert.deepEqual(rrf.json.result.points.map((p) => p.id), [3, 2, 1]);
  for (const p of rrf.json.result.points) assert.ok(Math.abs(p.score - want[p.id]) < 1e-6);
  const k10 = await call('POST', '/collections/f/points/query', { prefetch, query: { rrf: { k: 10 } } });
  assert.ok(Math.abs(k10.json.result.points.find((p) => p.id === 1).score - 1 / 10) < 1e-6);

  const dbsf = await call('POST', '/collections/f/points/query', { prefetch, query: { fusion: 'dbsf' } });
  // list a: mean 2, sample sd 1 -> (s - (2 - 3)) / 6; list b: mean 7.5, sd sqrt(12.5)
  const sdB = Math.sqrt(12.5);
  const nb = (s) => (s - (7.5 - 3 * sdB)) / (6 * sdB);
  const wantD = { 1: 4 / 6, 2: 3 / 6 + nb(5), 3: 2 / 6 + nb(10) };
  for (const p of dbsf.json.result.points) assert.ok(Math.abs(p.score - wantD[p.id]) < 1e-5, `${p.id}: ${p.score} vs ${wantD[p.id]}`);
  assert.deepEqual(dbsf.json.result.points.map((p) => p.id), Object.keys(wantD).map(Number).sort((x, y) => wantD[y] - wantD[x]));
});

test('filters: must, should, must_not, nested paths, any/except/text, range, has_id, is_empty', async () => {
  await call('PUT', '/collections/p', { vectors: { size: 1, distance: 'Dot' } });
  await call('PUT', '/collections/p/points', { points: [
    { id: 1, vector: [1], payload: { tag: 'a', n: 1, meta: { lang: 'en' }, text: 'hello world' } },
    { id: 2, vector: [1], payload: { tag: ['a', 'b'], n: 5, meta: { lang: 'de' } } },
    { id: 3, vector: [1], payload: { tag: 'c', n: 10, list: [] } },
  ] });
  const ids = async (filter) => (await call('POST', '/collections/p/points/scroll', { filter })).json.result.points.map((p) => p.id);
  assert.deepEqual(await ids({ must: [{ key: 'tag', match: { value: 'a' } }] }), [1, 2]);
  assert.deepEqual(await ids({ must: [{ key: 'meta.lang', match: { value: 'de' } }] }), [2]);
  assert.deepEqual(await ids({ should: [{ key: 'tag', match: { value: 'c' } }, { key: 'n', range: { lt: 2 } }] }), [1, 3]);
  assert.deepEqual(await ids({ must_not: [{ key: 'tag', match: { any: ['b', 'c'] } }] }), [1]);
  assert.deepEqual(await ids({ must: [{ key: 'tag', match: { except: ['a'] } }] }), [3]);
  assert.deepEqual(await ids({ must: [{ key: 'text', match: { text: 'world' } }] }), [1]);
  assert.deepEqual(await ids({ must: [{ key: 'n', range: { gte: 5, lte: 10 } }] }), [2, 3]);
  assert.deepEqual(await ids({ must: [{ has_id: [3, 1] }] }), [1, 3]);
  assert.deepEqual(await ids({ must: [{ is_empty: { key: 'list' } }, { must_not: [{ key: 'n', range: { lt: 5 } }] }] }), [2, 3]);
  const count = await call('POST', '/collections/p/points/count', { filter: { must: [{ key: 'tag', match: { value: 'a' } }] }, exact: true });
  assert.equal(count.json.result.count, 2);
});

test('scroll pages in id order, integers before UUIDs, with next_page_offset', async () => {
  await call('PUT', '/collections/s', { vectors: { size: 1, distance: 'Dot' } });
  const ids = [5, 'B0000000-0000-0000-0000-000000000000', 1, 3, '{a0000000-0000-0000-0000-000000000000}', 2, 4];
  await call('PUT', '/collections/s/points', { points: ids.map((id) => ({ id, vector: [1] })) });
  const seen = [];
  let offset = null;
  for (let i = 0; i < 10; i++) {
    const page = await call('POST', '/collections/s/points/scroll', { limit: 3, offset });
    seen.push(...page.json.result.points.map((p) => p.id));
    offset = page.json.result.next_page_offset;
    if (offset === null) break;
  }
  assert.deepEqual(seen, [1, 2, 3, 4, 5, 'a0000000-0000-0000-0000-000000000000', 'b0000000-0000-0000-0000-000000000000']);
  const def = await call('POST', '/collections/s/points/scroll', {});
  assert.equal(def.json.result.points.length, 7, 'limit defaults to 10');
  assert.ok('payload' in def.json.result.points[0], 'scroll returns payloads by default');
});

test("Qdrant's error messages and status codes", async () => {
  let r = await call('GET', '/collections/nope');
  assert.equal(r.status, 404);
  assert.equal(r.json.status.error, 'Not found: Collection `nope` doesn\'t exist!');
  assert.equal(typeof r.json.time, 'number');
  await call('PUT', '/collections/e', { vectors: { size: 4, distance: 'Dot' } });
  r = await call('PUT', '/collections/e', { vectors: { size: 4, distance: 'Dot' } });
  assert.equal(r.status, 409);
  assert.equal(r.json.status.error, 'Wrong input: Collection `e` already exists!');
  r = await call('PUT', '/collections/e/points', { points: [{ id: 1, vector: [1, 2, 3] }] });
  assert.equal(r.status, 400);
  assert.equal(r.json.status.error, 'Wrong input: Vector dimension error: expected dim: 4, got 3');
  r = await call('PUT', '/collections/e/points', { points: [{ id: 'not-a-uuid', vector: [1, 2, 3, 4] }] });
  assert.equal(r.status, 400);
  assert.equal(r.json.status.error, 'Format error in JSON body: value not-a-uuid is not a valid point ID, valid values are either an unsigned integer or a UUID');
  r = await call('GET', '/collections/e/points/42');
  assert.equal(r.status, 404);
  assert.equal(r.json.status.error, 'Not found: No point with id 42 found');
  r = await call('PUT', '/collections/e/points', '{"points": [');
  assert.equal(r.status, 400);
  assert.match(r.json.status.error, /^Format error in JSON body: /);
});

test('validation: a wrong type is a 400 format error, a broken range a 422', async () => {
  let r = await call('PUT', '/collections/v', { vectors: { size: '4', distance: 'Cosine' } });
  assert.equal(r.status, 400);
  assert.match(r.json.status.error, /^Format error in JSON body: vectors: data did not match any variant of untagged enum VectorsConfig/);
  r = await call('PUT', '/collections/v', { vectors: { size: 4, distance: 'Cosine' }, hnsw_config: { m: 'sixteen' } });
  assert.equal(r.status, 400);
  await call('PUT', '/collections/v', { vectors: { size: 4, distance: 'Cosine' } });
  r = await call('POST', '/collections/v/points/scroll', { limit: 0 });
  assert.equal(r.status, 422);
  assert.equal(r.json.status.error, 'Validation error in JSON body: [limit: value 0 invalid, must be 1 or larger]');
  r = await call('POST', '/collections/v/points/query', { query: [1, 2, 3, 4], limit: 'ten' });
  assert.equal(r.status, 400);
  r = await call('POST', '/collections/v/points/delete', { filter: { must: [{ key: 'a', match: { valeu: 1 } }] } });
  assert.equal(r.status, 400);
});

test('a body above 32 MiB is refused with 400', async () => {
  await call('PUT', '/collections/big', { vectors: { size: 1, distance: 'Dot' } });
  const r = await call('PUT', '/collections/big/points', 'x'.repeat(32 * 1024 * 1024 + 1));
  assert.equal(r.status, 400);
  assert.equal(r.json.status.error, `JSON payload (${32 * 1024 * 1024 + 1} bytes) is larger than allowed (limit: 33554432 bytes).`);
});

test('faults: next N, every K-th, 429 with Retry-After, drop, stall; stats count them', async () => {
  await call('PUT', '/collections/x', { vectors: { size: 1, distance: 'Dot' } });
  await call('POST', '/__standin/stats/reset');
  await call('POST', '/__standin/faults', { kind: '503', count: 2, path: '/points', method: 'PUT' });
  const put = () => call('PUT', '/collections/x/points', { points: [{ id: 1, vector: [1] }] });
  assert.equal((await call('GET', '/collections/x')).status, 200, 'the fault only hits PUT .../points');
  assert.equal((await put()).status, 503);
  assert.equal((await put()).status, 503);
  assert.equal((await put()).status, 200);
  await call('POST', '/__standin/faults', { kind: '429', every: 2, count: 1, retry_after: 3 });
  assert.equal((await put()).status, 200);
  const limited = await put();
  assert.equal(limited.status, 429);
  assert.equal(limited.headers['retry-after'], '3');
  assert.equal((await put()).status, 200);
  await call('POST', '/__standin/faults', { kind: 'drop' });
  await assert.rejects(put());
  await call('POST', '/__standin/faults', { kind: 'stall', stall_ms: 300 });
  const t0 = Date.now();
  assert.equal((await put()).status, 200);
  assert.ok(Date.now() - t0 >= 280);
  const stats = (await call('GET', '/__standin/stats')).json;
  assert.equal(stats.faults_served, 5);
  assert.equal(stats.points_written, 4, 'the three answered 200 plus the stalled one');
  assert.equal(stats.by_route['PUT /collections/{collection_name}/points'], 4, 'faulted requests never reach a route');
  assert.equal(stats.last_headers['content-type'], 'application/json');
  await call('POST', '/__standin/faults', { kind: '500', count: 5 });
  await call('DELETE', '/__standin/faults');
  assert.equal((await put()).status, 200);
});

test('indexing_ms keeps a collection yellow after a write, then green', async () => {
  await call('PUT', '/collections/y', { vectors: { size: 1, distance: 'Dot' } });
  await call('POST', '/__standin/config', { indexing_ms: 200 });
  await call('PUT', '/collections/y/points', { points: [{ id: 1, vector: [1] }] });
  assert.equal((await call('GET', '/collections/y')).json.result.status, 'yellow');
  await new Promise((r) => setTimeout(r, 250));
  assert.equal((await call('GET', '/collections/y')).json.result.status, 'green');
});

test('aliases work as collection names; payload indexes show in payload_schema', async () => {
  await call('PUT', '/collections/real', { vectors: { size: 1, distance: 'Dot' } });
  let r = await call('POST', '/collections/aliases', { actions: [{ create_alias: { collection_name: 'real', alias_name: 'al' } }] });
  assert.equal(r.json.result, true);
  await call('PUT', '/collections/al/points', { points: [{ id: 1, vector: [1], payload: { k: 'v' } }] });
  assert.equal((await call('GET', '/collections/real')).json.result.points_count, 1);
  assert.deepEqual((await call('GET', '/aliases')).json.result.aliases, [{ alias_name: 'al', collection_name: 'real' }]);
  await call('POST', '/collections/aliases', { actions: [{ rename_alias: { old_alias_name: 'al', new_alias_name: 'al2' } }] });
  assert.deepEqual((await call('GET', '/collections/real/aliases')).json.result.aliases, [{ alias_name: 'al2', collection_name: 'real' }]);
  r = await call('PUT', '/collections/al2/index', { field_name: 'k', field_schema: 'keyword' });
  assert.equal(r.status, 200);
  assert.deepEqual((await call('GET', '/collections/real')).json.result.payload_schema, { k: { data_type: 'keyword', points: 1 } });
  await call('DELETE', '/collections/real/index/k');
  assert.deepEqual((await call('GET', '/collections/real')).json.result.payload_schema, {});
  assert.equal((await call('GET', '/collections/al2/exists')).json.result.exists, true);
});

test('set payload, delete by filter, retrieve, query by point id and batch queries', async () => {
  await call('PUT', '/collections/w', { vectors: { size: 2, distance: 'Dot' } });
  await call('PUT', '/collections/w/points', { batch: { ids: [1, 2, 3], vectors: [[1, 0], [0.9, 0.1], [0, 1]], payloads: [{ g: 1 }, { g: 2 }, { g: 2 }] } });
  await call('POST', '/collections/w/points/payload', { payload: { extra: true }, filter: { must: [{ key: 'g', match: { value: 2 } }] } });
  const got = await call('POST', '/collections/w/points', { ids: [3, 1, 99] });
  assert.deepEqual(got.json.result.map((p) => [p.id, p.payload]), [[3, { g: 2, extra: true }], [1, { g: 1 }]]);
  const byId = await call('POST', '/collections/w/points/query', { query: 1, limit: 1 });
  assert.deepEqual(byId.json.result.points.map((p) => p.id), [2], 'the point queried by is left out');
  const batch = await call('POST', '/collections/w/points/query/batch', { searches: [{ query: [0, 1], limit: 1 }, { query: [1, 0], limit: 1 }] });
  assert.deepEqual(batch.json.result.map((r) => r.points[0].id), [3, 1]);
  await call('POST', '/collections/w/points/delete?wait=true', { filter: { must: [{ key: 'extra', match: { value: true } }] } });
  assert.equal((await call('POST', '/collections/w/points/count', {})).json.result.count, 1);
});

test('snapshots: create, list, recover into a new collection', async () => {
  await call('PUT', '/collections/snap', { vectors: { size: 2, distance: 'Euclid' } });
  await call('PUT', '/collections/snap/points', { points: [{ id: 7, vector: [1, 2], payload: { a: 1 } }] });
  const made = (await call('POST', '/collections/snap/snapshots')).json.result;
  assert.match(made.name, /^snap-\d+-\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d\.snapshot$/);
  const list = (await call('GET', '/collections/snap/snapshots')).json.result;
  assert.deepEqual(list.map((s) => s.name), [made.name]);
  assert.equal(list[0].checksum.length, 64);
  const file = path.join(dataDir, 'snapshots', 'snap', made.name);
  const r = await call('PUT', '/collections/copy/snapshots/recover', { location: `file://${file}` });
  assert.equal(r.json.result, true);
  const p = await call('GET', '/collections/copy/points/7');
  assert.deepEqual(p.json.result, { id: 7, payload: { a: 1 }, vector: [1, 2] });
  assert.equal((await call('DELETE', `/collections/snap/snapshots/${made.name}`)).json.result, true);
});

test('20,000 x 512 vectors are searched in well under 100 ms', async () => {
  await call('PUT', '/collections/perf', { vectors: { size: 512, distance: 'Cosine' } });
  const r = rng(3);
  for (let b = 0; b < 20; b++) {
    const points = Array.from({ length: 1000 }, (_, i) => ({ id: b * 1000 + i, vector: Array.from({ length: 512 }, r) }));
    assert.equal((await call('PUT', '/collections/perf/points', { points })).status, 200);
  }
  const q = Array.from({ length: 512 }, r);
  await call('POST', '/collections/perf/points/query', { query: q, limit: 10 });
  const t0 = process.hrtime.bigint();
  const res = await call('POST', '/collections/perf/points/query', { query: q, limit: 10 });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  assert.equal(res.json.result.points.length, 10);
  assert.ok(ms < 100, `${ms} ms`);
});

test('an api key is required when set, with Qdrant\'s 401 messages', async () => {
  const { server: keyed } = await new Promise((resolve) => {
    const s = start({ host: '127.0.0.1', port: 0, data: dataDir, apiKey: 'sekret', sink: false }, (srv) => resolve({ server: srv }));
    return s;
  });
  const url = `http://127.0.0.1:${keyed.address().port}`;
  const get = (headers) => new Promise((resolve, reject) => {
    http.get(`${url}/collections`, { headers }, (res) => {
      let t = '';
      res.on('data', (c) => { t += c; });
      res.on('end', () => resolve({ status: res.statusCode, text: t }));
    }).on('error', reject);
  });
  assert.deepEqual(await get({}), { status: 401, text: 'Must provide an API key or an Authorization bearer token' });
  assert.deepEqual(await get({ 'api-key': 'wrong' }), { status: 401, text: 'Invalid API key or JWT' });
  assert.equal((await get({ 'api-key': 'sekret' })).status, 200);
  assert.equal((await get({ authorization: 'Bearer sekret' })).status, 200);
  keyed.close();
});
