// The JS peer of bench/qdrant_bench.lua, and the points file it and the Lua
// writers read. Run by qdrant_bench.lua; not a test.
//
//   node bench/qdrant_js_upsert.mjs gen FILE N
//     writes N points of 512-dimension vectors (values k/1e6 in [-1,1), from
//     a fixed-seed generator) with small payloads to FILE: a JSON array with
//     one point a line (Qdrant's point shape, ready to send)
//   node bench/qdrant_js_upsert.mjs upsert URL COLLECTION FILE [BATCH (256)] [INFLIGHT (4)]
//     loads FILE, then upserts every point with @qdrant/js-client-rest
//     (client.upsert(name, { wait: true, points: batch }), INFLIGHT requests
//     at once) and prints one JSON line: points, batches, seconds (from the
//     points in memory to the last response), cpu (user+sys seconds over the
//     same span), bytes (request JSON, counted after the clock stops)
//   node bench/qdrant_js_upsert.mjs count-sink
//     a sink that counts request bodies (untimed byte counts only): prints
//     its URL, answers GET /collections/NAME (512, Cosine), PUT .../points,
//     and GET /__bytes with {"requests":N,"bytes":N}, which also resets them
import fs from 'node:fs';
import http from 'node:http';

const DIMS = 512;

// mulberry32: a small fixed-seed generator, the same on every machine
function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

function gen(file, n) {
  const rnd = mulberry32(20261202);
  const fd = fs.openSync(`${file}.tmp`, 'w');
  fs.writeSync(fd, '[\n');
  const vec = new Array(DIMS);
  let lines = [];
  for (let i = 1; i <= n; i++) {
    // six decimals: every writer's number text is the same ("-0.12345")
    for (let d = 0; d < DIMS; d++) vec[d] = ((rnd() % 2000000) - 1000000) / 1e6;
    const p = { id: i, vector: vec, payload: { source: 'bench', n: i, tag: `t${i % 10}` } };
    lines.push(JSON.stringify(p) + (i < n ? ',\n' : '\n'));
    if (lines.length === 1000) { fs.writeSync(fd, lines.join('')); lines = []; }
  }
  fs.writeSync(fd, lines.join('') + ']\n');
  fs.closeSync(fd);
  fs.renameSync(`${file}.tmp`, file);
}

// One point a line: parsed line by line, since the whole file is close to
// V8's longest string.
function load(file) {
  const buf = fs.readFileSync(file);
  const points = [];
  let start = 0;
  for (;;) {
    const nl = buf.indexOf(10, start);
    const end = nl < 0 ? buf.length : nl;
    let line = buf.toString('utf8', start, end);
    if (line.endsWith(',')) line = line.slice(0, -1);
    if (line.startsWith('{')) points.push(JSON.parse(line));
    if (nl < 0) break;
    start = nl + 1;
  }
  return points;
}

async function upsert(url, name, file, batchSize, inflight) {
  const { QdrantClient } = await import('./js/node_modules/@qdrant/js-client-rest/dist/esm/index.js');
  const client = new QdrantClient({ url, checkCompatibility: false });
  const points = load(file);
  const batches = [];
  for (let i = 0; i < points.length; i += batchSize) batches.push(points.slice(i, i + batchSize));
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  let next = 0, written = 0;
  // a simple promise pool: `inflight` workers, each taking the next batch
  async function worker() {
    while (next < batches.length) {
      const batch = batches[next++];
      const r = await client.upsert(name, { wait: true, points: batch });
      if (r.status !== 'completed') throw new Error(`upsert: status ${r.status}`);
      written += batch.length;
    }
  }
  await Promise.all(Array.from({ length: inflight }, worker));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  // the bodies the client sent: JSON.stringify of { points } (wait goes in the query)
  let bytes = 0;
  for (const b of batches) bytes += Buffer.byteLength(JSON.stringify({ points: b }));
  process.stdout.write(`${JSON.stringify({ points: written, batches: batches.length, seconds, cpu: (cpu.user + cpu.system) / 1e6, bytes })}\n`);
}

function countSink() {
  let requests = 0, bytes = 0;
  const info = JSON.stringify({
    result: { status: 'green', optimizer_status: 'ok', points_count: 0, segments_count: 1,
      config: { params: { vectors: { size: DIMS, distance: 'Cosine' }, shard_number: 1, replication_factor: 1 } },
      payload_schema: {} },
    status: 'ok', time: 0,
  });
  const server = http.createServer({ keepAlive: true }, (req, res) => {
    const path = req.url.split('?')[0];
    if (req.method === 'PUT' && /^\/collections\/[^/]+\/points$/.test(path)) {
      requests += 1;
      req.on('data', (c) => { bytes += c.length; });
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"result":{"operation_id":0,"status":"completed"},"status":"ok","time":0}');
      });
      return;
    }
    req.resume();
    req.on('end', () => {
      if (req.method === 'GET' && path === '/__bytes') {
        const out = JSON.stringify({ requests, bytes });
        requests = 0; bytes = 0;
        res.writeHead(200, { 'content-type': 'application/json' });
        return res.end(out);
      }
      if (req.method === 'GET' && /^\/collections\/[^/]+$/.test(path)) {
        res.writeHead(200, { 'content-type': 'application/json' });
        return res.end(info);
      }
      res.writeHead(404, { 'content-length': 0 });
      res.end();
    });
  });
  server.listen(0, '127.0.0.1', () => {
    fs.writeSync(1, `count sink listening on http://127.0.0.1:${server.address().port}\n`);
  });
  process.on('SIGTERM', () => process.exit(0));
}

const [mode, ...args] = process.argv.slice(2);
if (mode === 'gen') gen(args[0], Number(args[1]));
else if (mode === 'upsert') {
  upsert(args[0], args[1], args[2], Number(args[3] || 256), Number(args[4] || 4)).catch((e) => {
    process.stderr.write(`qdrant_js_upsert: ${e.stack || e}\n`);
    process.exit(1);
  });
} else if (mode === 'count-sink') countSink();
else {
  process.stderr.write('usage: node bench/qdrant_js_upsert.mjs gen FILE N | upsert URL COLLECTION FILE [BATCH] [INFLIGHT] | count-sink\n');
  process.exit(2);
}
