-- Bulk-inserting chunks: semstore's db.chunks:create_chunks_bulk against
-- psql's \copy (text format) and LuaSQL (Debian's lua-sql-postgres) with
-- 500-row INSERTs, on the same server, the same rows, in one run. The built-in
-- schema is migrated into a fresh database (chunks in 100 LIST partitions,
-- three indexes and the partition-key CHECK), with one user, 20 collections
-- and a document in each; the rows (~1 KB of text and a small jsonb each) are
-- made once, deterministically, and kept in memory. `chunks` is truncated
-- before every contender, and every contender's rows are counted and checked
-- afterwards, so a broken one cannot look fast. Each contender runs once a
-- round, the starting contender rotating from round to round; with several
-- rounds the median counts.
--
-- With --rss, a separate lua5.4 process also streams 1,000,000 chunks (or N)
-- through create_chunks_bulk{parallel = 2} from an iterator (no array in
-- memory) and reports its peak RSS (VmHWM) and rate.
--
-- Not a test; bench/run.sh runs it pinned to one core, the server to the other.
-- With --costs, create_chunks_bulk runs again under the schema without each
-- per-row check in turn (and with migration 0006's drops undone), so each
-- check's price shows as rows/s (README "Bulk chunk inserts").
--
--   DATABASE_URL=... lua5.4 bench/chunks_bench.lua [rows (200000)] [rounds (1)] [--rss [N (1000000)]] [--costs]
-- Progress goes to stderr, the Markdown table to stdout.

local COLLECTIONS = 20
local BATCH = 500               -- rows per LuaSQL INSERT
local RUN = 50                  -- consecutive chunks of one collection (one "file")
local BENCH_DB = "semstore_chunks_bench"

local function log(fmt, ...)
  io.stderr:write(string.format(fmt, ...), "\n")
  io.stderr:flush()
end

-- seconds on a clock that never jumps
local now = require("semstore.core").monotime

-- ---------------------------------------------------------------- the rows

-- A deterministic generator, independent of math.random.
local function lcg(seed)
  local s = seed
  return function(n)
    s = (s * 6364136223846793005 + 1442695040888963407) & 0x7fffffffffffffff
    return (s >> 33) % n
  end
end

-- ~64 KB of ASCII prose with newlines, now and then a tab, a backslash and
-- quotes (what COPY and SQL literals must escape); chunk texts are windows
-- into it.
local WORDS = { "the", "vector", "store", "keeps", "chunks", "of", "every", "document", "and", "a", "search",
  "finds", "them", "by", "meaning", "not", "only", "words", "index", "partition", "collection", "embedding",
  "model", "token", "query", "result", "score", "page", "section", "table", "figure", "note", "value" }
local function make_pool()
  local rnd = lcg(12345)
  local parts, size = {}, 0
  while size < 65536 do
    local w = WORDS[rnd(#WORDS) + 1]
    local r = rnd(100)
    if r < 6 then
      w = w .. ".\n"
    elseif r < 7 then
      w = w .. "\t"
    elseif r < 8 then
      w = "C:\\docs\\" .. w
    elseif r < 9 then
      w = "'" .. w .. "'"
    elseif r < 10 then
      w = '"' .. w .. '"'
    else
      w = w .. " "
    end
    parts[#parts + 1] = w
    size = size + #w
  end
  return table.concat(parts)
end

-- make_row(i, rnd, cols) -> one chunk table, the i-th (1-based) of the
-- stream: runs of RUN chunks of one collection, collections in turn;
-- chunk_index counts per collection. cols[k] = { id =, document_id = }.
local POOL = make_pool()
local function row_maker(cols)
  local rnd = lcg(42)
  local next_index = {}
  return function(i)
    local file = (i - 1) // RUN
    local c = cols[file % #cols + 1]
    local ci = next_index[c] or 0
    next_index[c] = ci + 1
    local len = 950 + rnd(100)
    local off = rnd(#POOL - len) + 1
    local content = "chunk " .. i .. " of file-" .. file .. ".txt\n" .. POOL:sub(off, off + len - 1)
    local start = ci * 800
    return {
      collection_id = c.id,
      document_id = c.document_id,
      chunk_index = ci,
      content = content,
      start_offset = start,
      end_offset = start + #content,
      token_count = #content // 4,
      metadata = { source = "file-" .. file .. ".txt", page = ci // 5 + 1, tags = { "t" .. (i % 7), "lang-en" } },
    }
  end
end

local function load_cols(pg)
  local rows = assert(pg:query [[
    select c.id, d.id as document_id from collections c join documents d on d.collection_id = c.id order by c.name]])
  local cols = {}
  for k, r in ipairs(rows) do cols[k] = { id = r.id, document_id = r.document_id } end
  assert(#cols == COLLECTIONS, "expected " .. COLLECTIONS .. " collections with a document each")
  return cols
end

local function status_kb(field)
  local f = assert(io.open "/proc/self/status")
  local s = f:read "a"
  f:close()
  return tonumber(s:match(field .. ":%s*(%d+)"))
end

-- ------------------------------------------------------------- the child

-- --rss-child N: stream N chunks through create_chunks_bulk from an
-- iterator, then print one line for the parent.
if arg[1] == "--rss-child" then
  local n = assert(math.tointeger(tonumber(arg[2])), "--rss-child N")
  local semstore = require "semstore"
  local db = assert(semstore.connect { name = "rss", postgres = assert(os.getenv "DATABASE_URL"),
    pool = { size = 2, max_overflow = 0, statement_timeout = 0 } })
  if not db.chunks then
    print "RSS skipped"
    os.exit(0)
  end
  local make = row_maker(load_cols(db.pg))
  collectgarbage()
  local base = status_kb "VmRSS"
  local i = 0
  local function iter()
    if i >= n then return nil end
    i = i + 1
    return make(i)
  end
  local t0 = now()
  local got, err, report = db.chunks:create_chunks_bulk(iter, { parallel = 2 })
  local secs = now() - t0
  if got ~= n or report.connections ~= 2 then
    io.stderr:write("create_chunks_bulk: ", tostring(got), " ", tostring(err), " ", tostring(report and report.fallback), "\n")
    os.exit(1)
  end
  print(string.format("RSS %d %.3f %d %d", n, secs, status_kb "VmHWM", base))
  db:close()
  os.exit(0)
end

-- ------------------------------------------------------------- the parent

local rows_n, rounds, rss_n, costs = 200000, 1, nil, false
do
  local pos = {}
  local i = 1
  while i <= #arg do
    if arg[i] == "--costs" then
      costs = true
    elseif arg[i] == "--rss" then
      rss_n = 1000000
      if tonumber(arg[i + 1]) then
        rss_n = math.tointeger(tonumber(arg[i + 1]))
        i = i + 1
      end
    else
      pos[#pos + 1] = arg[i]
    end
    i = i + 1
  end
  rows_n = math.tointeger(tonumber(pos[1] or rows_n)) or error("rows must be an integer")
  rounds = math.tointeger(tonumber(pos[2] or rounds)) or error("rounds must be an integer")
  assert(rows_n >= 1 and rounds >= 1 and (not rss_n or rss_n >= 1), "rows, rounds and N must be positive")
end

local semstore = require "semstore"
local migrate = require "semstore.migrate"
local cjson = require "cjson"
local luasql = require("luasql.postgres").postgres()

local url = assert(os.getenv "DATABASE_URL", "set DATABASE_URL")

-- The URL (or conninfo) of the same server with another database.
local function with_dbname(u, name)
  local head, tail = u:match "^(%a[%w+.-]*://[^/?]*)/?[^?]*(.*)$"
  if head then return head .. "/" .. name .. tail end
  return u .. " dbname=" .. name
end
local burl = with_dbname(url, BENCH_DB)

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local admin = assert(semstore.connect { name = "chunks_bench_admin", postgres = url, pool = { size = 1, max_overflow = 0 } })
assert(admin.pg:exec("drop database if exists " .. semstore.quote_ident(BENCH_DB) .. " with (force)"))
assert(admin.pg:exec("create database " .. semstore.quote_ident(BENCH_DB)))

local db = assert(semstore.connect { name = "chunks_bench", postgres = burl,
  pool = { size = 2, max_overflow = 0, statement_timeout = 0 } })
log("migrating the built-in schema into %s", BENCH_DB)
assert(migrate.up(db))
assert(db.pg:exec [[
  insert into users (username, email, hashed_password) values ('bench', 'bench@example.com', 'x');
  insert into collections (name, owner_id, vector_store_name, embedding_model)
    select 'bench-' || lpad(g::text, 2, '0'), u.id, 'vs_bench_' || g, 'BAAI/bge-small-en-v1.5'
    from generate_series(1, 20) g, users u;
  insert into documents (collection_id, file_path, file_name, file_size, content_hash)
    select id, '/data/' || name || '.txt', name || '.txt', 1000000, md5(name) from collections;
  analyze]])
local cols = load_cols(db.pg)

-- The partition key of each collection: semstore's when it has one (checked
-- against the server's), else the server's.
local pkey = {}
for _, c in ipairs(cols) do
  local sql_key = assert(db.pg:query("select chunk_partition_key($1) as k", c.id))[1].k
  if semstore.partition_key then
    local k = semstore.partition_key(c.id)
    assert(k == sql_key, "semstore.partition_key disagrees with chunk_partition_key for " .. c.id)
  end
  pkey[c.id] = sql_key
end
if not semstore.partition_key then log "semstore.partition_key is missing: partition keys from chunk_partition_key()" end

log("generating %d chunks", rows_n)
local make = row_maker(cols)
local rows, total_bytes = {}, 0
for i = 1, rows_n do
  local r = make(i)
  rows[i] = r
  total_bytes = total_bytes + #r.content
end
collectgarbage()
log("  %.1f MB of text; this process holds %.0f MB (VmRSS)", total_bytes / 1e6, status_kb "VmRSS" / 1024)

-- The TSV file for \copy, partition key included; written once, not timed.
local COPY_COLS = "collection_id, partition_key, document_id, chunk_index, content, start_offset, end_offset, token_count, metadata"
local COPY_ESC = { ["\\"] = "\\\\", ["\t"] = "\\t", ["\n"] = "\\n", ["\r"] = "\\r" }
local function copy_text(s) return (s:gsub("[\\\t\n\r]", COPY_ESC)) end
local tsv = os.tmpname()
do
  local f = assert(io.open(tsv, "wb"))
  for _, r in ipairs(rows) do
    f:write(copy_text(r.collection_id), "\t", pkey[r.collection_id], "\t", copy_text(r.document_id), "\t",
      r.chunk_index, "\t", copy_text(r.content), "\t", r.start_offset, "\t", r.end_offset, "\t",
      r.token_count, "\t", copy_text(cjson.encode(r.metadata)), "\n")
  end
  f:close()
end

local lconn = assert(luasql:connect(burl))

-- psql's binary COPY into the leaf tables: one file per leaf, in COPY's
-- binary format, made once (by loading the rows with semstore and letting
-- psql copy each leaf out); not timed. Leaves go to two scripts of about
-- the same size for the two-connection run.
local leaf_scripts = {}
local function make_leaf_files()
  assert(db.pg:exec "truncate chunks")
  local n, err = db.chunks:create_chunks_bulk(rows)
  assert(n == #rows, "create_chunks_bulk: " .. tostring(n) .. " " .. tostring(err))
  local leaves = assert(db.pg:query [[
    select partition_key as k, count(*) as n from chunks group by partition_key order by count(*) desc]])
  local all, halves, sizes = {}, { {}, {} }, { 0, 0 }
  for _, leaf in ipairs(leaves) do
    local file = os.tmpname()
    local name = string.format("chunks_p%d", leaf.k)
    assert(db.pg:query("select 1 from pg_class where relname = $1", name)[1], "no leaf table " .. name)
    local cmd = string.format("%s -X -q -v ON_ERROR_STOP=1 %s -c %s", os.getenv "PSQL" or "psql", shell_quote(burl),
      shell_quote(string.format("\\copy %s (%s) to '%s' (format binary)", name, COPY_COLS, file)))
    assert(os.execute(cmd), "psql \\copy to a file failed")
    local line = string.format("\\copy %s (%s) from '%s' (format binary)\n", name, COPY_COLS, file)
    all[#all + 1] = line
    -- the larger leaves first, each to the half with less so far
    local h = sizes[1] <= sizes[2] and 1 or 2
    halves[h][#halves[h] + 1] = line
    sizes[h] = sizes[h] + leaf.n
    leaf_scripts.files = leaf_scripts.files or {}
    table.insert(leaf_scripts.files, file)
  end
  local function script(lines)
    local name = os.tmpname()
    local f = assert(io.open(name, "wb"))
    f:write(table.concat(lines))
    f:close()
    table.insert(leaf_scripts.files, name)
    return name
  end
  leaf_scripts.one = script(all)
  leaf_scripts.halves = { script(halves[1]), script(halves[2]) }
  log("  %d leaves; the two halves hold %d and %d rows", #leaves, sizes[1], sizes[2])
end

local function reset()
  assert(db.pg:exec "truncate chunks")
  assert(db.pg:exec "checkpoint")
end

-- Every row is there, whole: the count, the total length of the texts, and
-- a few rows compared field by field.
local function verify(name, n, bytes)
  local r = assert(db.pg:query "select count(*) as n, coalesce(sum(octet_length(content)), 0)::int8 as b from chunks")[1]
  assert(r.n == n, string.format("%s: %d rows in chunks, expected %d", name, r.n, n))
  assert(r.b == bytes, string.format("%s: %d bytes of content, expected %d", name, r.b, bytes))
  for _, i in ipairs { 1, n // 2 + 1, n } do
    local want = rows[i]
    local got = assert(db.pg:query([[
      select content, document_id, start_offset, end_offset, token_count, metadata, partition_key
      from chunks where collection_id = $1 and chunk_index = $2]], want.collection_id, want.chunk_index))
    assert(#got == 1, name .. ": row " .. i .. " missing or duplicated")
    got = got[1]
    assert(got.content == want.content, name .. ": row " .. i .. ": content differs")
    assert(got.document_id == want.document_id and got.start_offset == want.start_offset and
      got.end_offset == want.end_offset and got.token_count == want.token_count, name .. ": row " .. i .. " differs")
    assert(got.partition_key == pkey[want.collection_id], name .. ": row " .. i .. ": partition key differs")
    assert(got.metadata.source == want.metadata.source and got.metadata.page == want.metadata.page and
      got.metadata.tags[1] == want.metadata.tags[1] and got.metadata.tags[2] == want.metadata.tags[2],
      name .. ": row " .. i .. ": metadata differs")
  end
end

local function luasql_insert(list, count)
  local function q(s) return "'" .. lconn:escape(s) .. "'" end
  assert(lconn:setautocommit(false))
  local head = "insert into chunks (" .. COPY_COLS .. ") values "
  local i = 1
  while i <= count do
    local last = math.min(i + BATCH - 1, count)
    local vals = {}
    for j = i, last do
      local r = list[j]
      vals[#vals + 1] = string.format("(%s,%d,%s,%d,%s,%d,%d,%d,%s)", q(r.collection_id), pkey[r.collection_id],
        q(r.document_id), r.chunk_index, q(r.content), r.start_offset, r.end_offset, r.token_count,
        q(cjson.encode(r.metadata)))
    end
    local n = assert(lconn:execute(head .. table.concat(vals, ",")))
    assert(n == last - i + 1, "LuaSQL inserted " .. tostring(n))
    i = last + 1
  end
  assert(lconn:commit())
  assert(lconn:setautocommit(true))
end

local psql = os.getenv "PSQL" or "psql"
local function psql_script(file)
  -- -1: the whole script in one transaction
  return string.format("%s -X -q -1 -v ON_ERROR_STOP=1 %s -f %s", psql, shell_quote(burl), shell_quote(file))
end
local function semstore_bulk(parallel)
  return function()
    local n, err, report = db.chunks:create_chunks_bulk(rows, { parallel = parallel })
    assert(n == #rows, "create_chunks_bulk: " .. tostring(n) .. " " .. tostring(err))
    assert(report.connections == parallel, "create_chunks_bulk copied on " .. report.connections ..
      " connections: " .. tostring(report.fallback))
  end
end
local contenders = {
  { name = "psql", fn = function()
    local cmd = string.format("%s -X -q -v ON_ERROR_STOP=1 %s -c %s", psql, shell_quote(burl),
      shell_quote("\\copy chunks (" .. COPY_COLS .. ") from '" .. tsv .. "'"))
    assert(os.execute(cmd), "psql \\copy failed")
  end },
  { name = "psql binary", fn = function()
    assert(os.execute(psql_script(leaf_scripts.one)), "psql binary COPY failed")
  end },
  { name = "psql binary x2", fn = function()
    -- two transactions, one per connection: not atomic as a whole
    local cmd = string.format("%s & p=$!; %s; b=$?; wait $p; a=$?; [ $a = 0 ] && [ $b = 0 ]",
      psql_script(leaf_scripts.halves[1]), psql_script(leaf_scripts.halves[2]))
    assert(os.execute(cmd), "psql binary COPY on two connections failed")
  end },
  { name = "LuaSQL", fn = function() luasql_insert(rows, #rows) end,
    warm = function()
      local n = math.min(BATCH, #rows)
      luasql_insert(rows, n)
    end },
  { name = "semstore x2", fn = semstore_bulk(2) },
  { name = "semstore", fn = semstore_bulk(1),
    warm = function()
      local few = table.move(rows, 1, math.min(BATCH, #rows), 1, {})
      local n, err = db.chunks:create_chunks_bulk(few)
      assert(n == #few, "create_chunks_bulk: " .. tostring(n) .. " " .. tostring(err))
    end },
}
if not db.chunks then
  log "db.chunks is missing (create_chunks_bulk not there yet): skipping semstore"
  table.remove(contenders)
end

if db.chunks then
  log "writing each leaf's rows to a file in COPY's binary format, for psql"
  make_leaf_files()
else
  for i = #contenders, 1, -1 do
    if contenders[i].name:find "binary" or contenders[i].name:find "x2" then table.remove(contenders, i) end
  end
end

-- Warm up the connections (catalog caches, prepared statements) with a few rows.
for _, c in ipairs(contenders) do
  if c.warm then
    reset()
    c.warm()
  end
end

local rates = {}
for _, c in ipairs(contenders) do rates[c.name] = {} end
for round = 1, rounds do
  for k = 0, #contenders - 1 do
    local c = contenders[(round - 1 + k) % #contenders + 1]
    reset()
    log("round %d/%d: %s, %d rows", round, rounds, c.name, #rows)
    local t0 = now()
    c.fn()
    local secs = now() - t0
    verify(c.name, #rows, total_bytes)
    local rate = #rows / secs
    table.insert(rates[c.name], rate)
    log("  %.2f s, %.0f rows/s", secs, rate)
  end
end
-- Each per-row check's price: the schema without it (or, first, with what
-- migration 0006 dropped put back), create_chunks_bulk timed, the schema
-- restored. Every variant once a round, the first one rotating.
local variants = {
  { name = "the schema as migrated", drop = "", restore = "" },
  { name = "with 0006's drops undone (uuid_text domain on both id columns, index on collection_id)",
    drop = [[CREATE INDEX idx_chunks_part_collection ON chunks (collection_id);
      ALTER TABLE chunks ALTER COLUMN collection_id TYPE uuid_text, ALTER COLUMN document_id TYPE uuid_text]],
    restore = [[DROP INDEX idx_chunks_part_collection;
      ALTER TABLE chunks ALTER COLUMN collection_id TYPE text, ALTER COLUMN document_id TYPE text]] },
  { name = "without the partition-key CHECK", drop = "ALTER TABLE chunks DROP CONSTRAINT chunks_partition_key_matches",
    restore = [[ALTER TABLE chunks ADD CONSTRAINT chunks_partition_key_matches
      CHECK (partition_key = chunk_partition_key(collection_id))]] },
  { name = "without the two foreign keys",
    drop = "ALTER TABLE chunks DROP CONSTRAINT chunks_collection_id_fkey, DROP CONSTRAINT chunks_document_id_fkey",
    restore = [[ALTER TABLE chunks ADD CONSTRAINT chunks_collection_id_fkey FOREIGN KEY (collection_id)
      REFERENCES collections (id) ON DELETE CASCADE, ADD CONSTRAINT chunks_document_id_fkey FOREIGN KEY (document_id)
      REFERENCES documents (id) ON DELETE CASCADE]] },
  { name = "without the index on (collection_id, chunk_index)", drop = "DROP INDEX idx_chunks_part_chunk_index",
    restore = "CREATE INDEX idx_chunks_part_chunk_index ON chunks (collection_id, chunk_index)" },
  { name = "without the index on document_id", drop = "DROP INDEX idx_chunks_part_document",
    restore = "CREATE INDEX idx_chunks_part_document ON chunks (document_id)" },
}
local cost_rates = {}
if costs and db.chunks then
  for round = 1, rounds do
    for k = 0, #variants - 1 do
      local v = variants[(round - 1 + k) % #variants + 1]
      reset()
      if v.drop ~= "" then assert(db.pg:exec(v.drop)) end
      log("costs, round %d/%d: %s", round, rounds, v.name)
      local t0 = now()
      local n, err = db.chunks:create_chunks_bulk(rows)
      local secs = now() - t0
      assert(n == #rows, "create_chunks_bulk: " .. tostring(n) .. " " .. tostring(err))
      verify(v.name, #rows, total_bytes)
      reset()
      if v.restore ~= "" then assert(db.pg:exec(v.restore)) end
      cost_rates[v.name] = cost_rates[v.name] or {}
      table.insert(cost_rates[v.name], #rows / secs)
      log("  %.2f s, %.0f rows/s", secs, #rows / secs)
    end
  end
end

local med = {}
for name, r in pairs(cost_rates) do
  table.sort(r)
  cost_rates[name] = r[(#r + 1) // 2]
end
for name, r in pairs(rates) do
  table.sort(r)
  med[name] = r[(#r + 1) // 2]
end
os.remove(tsv)
for _, f in ipairs(leaf_scripts.files or {}) do os.remove(f) end
lconn:close()

-- The streaming child: its own process, so its peak RSS is its own.
local rss
if rss_n and db.chunks then
  rows = nil
  reset()
  log("child lua5.4: streaming %d chunks through create_chunks_bulk(iterator, { parallel = 2 })", rss_n)
  local lua = os.getenv "LUA" or "lua5.4"
  local p = assert(io.popen(string.format("DATABASE_URL=%s %s %s --rss-child %d", shell_quote(burl), lua,
    shell_quote(arg[0]), rss_n)))
  local out = p:read "a"
  local ok = p:close()
  local n, secs, hwm, base = out:match "RSS (%d+) ([%d.]+) (%d+) (%d+)"
  assert(ok and n, "the --rss child failed: " .. out)
  local count = assert(db.pg:query "select count(*) as n from chunks")[1].n
  assert(count == rss_n, string.format("child: %d rows in chunks, expected %d", count, rss_n))
  rss = { n = rss_n, rate = rss_n / tonumber(secs), hwm = tonumber(hwm) / 1024, base = tonumber(base) / 1024 }
  log("  %.1f s, %.0f rows/s, peak RSS %.1f MB (%.1f MB before the insert)", tonumber(secs), rss.rate, rss.hwm, rss.base)
elseif rss_n then
  log "db.chunks is missing: skipping the RSS measurement"
end

db:close()
assert(admin.pg:exec("drop database " .. semstore.quote_ident(BENCH_DB) .. " with (force)"))
admin:close()

local function num(x) return x and string.format("%.0f", x) or "skipped" end
local function ratio(a, b) return (a and b) and string.format("%.2fx", a / b) or "-" end
local function thousands(n)
  local s = tostring(n):reverse():gsub("(%d%d%d)", "%1,"):reverse()
  return (s:gsub("^,", ""))
end
local what = string.format("%s chunks (~1 KB text + jsonb, %d collections, 100 partitions)", thousands(rows_n), COLLECTIONS)
print(string.format("%s of %d round%s, same server, same rows, same run", rounds > 1 and "median" or "one",
  rounds, rounds > 1 and "s" or ""))
print "| benchmark | semstore | peer | ratio |"
print "|---|---|---|---|"
print(string.format("| rows/s inserting %s: `create_chunks_bulk` vs `psql \\copy` (text, into the parent) | %s | %s | %s |",
  what, num(med.semstore), num(med.psql), ratio(med.semstore, med.psql)))
print(string.format("| rows/s inserting %s: `create_chunks_bulk` vs psql binary COPY into the leaves, one connection, one transaction | %s | %s | %s |",
  what, num(med.semstore), num(med["psql binary"]), ratio(med.semstore, med["psql binary"])))
print(string.format("| rows/s inserting %s: `create_chunks_bulk{parallel = 2}` (two-phase commit) vs psql binary COPY into the leaves on two connections (two transactions) | %s | %s | %s |",
  what, num(med["semstore x2"]), num(med["psql binary x2"]), ratio(med["semstore x2"], med["psql binary x2"])))
print(string.format("| rows/s inserting %s: `create_chunks_bulk{parallel = 2}` vs `psql \\copy` (text, into the parent) | %s | %s | %s |",
  what, num(med["semstore x2"]), num(med.psql), ratio(med["semstore x2"], med.psql)))
print(string.format("| rows/s inserting %s: `create_chunks_bulk` vs LuaSQL %d-row INSERTs | %s | %s | %s |",
  what, BATCH, num(med.semstore), num(med.LuaSQL), ratio(med.semstore, med.LuaSQL)))
print ""
print "Every contender's rates (rows/s), all rounds:"
for _, c in ipairs(contenders) do
  local all = {}
  for _, r in ipairs(rates[c.name]) do all[#all + 1] = string.format("%.0f", r) end
  print(string.format("- %s: %s", c.name, table.concat(all, ", ")))
end
if rss then
  print(string.format("| peak RSS (MB) of a lua5.4 process streaming %s chunks from an iterator with `parallel = 2` (%.0f MB before the insert) | %.1f | - | - |",
    thousands(rss.n), rss.base, rss.hwm))
  print(string.format("| rows/s streaming those %s chunks | %.0f | - | - |", thousands(rss.n), rss.rate))
end
if next(cost_rates) then
  local base = cost_rates[variants[1].name]
  print ""
  print(string.format("create_chunks_bulk, %s, under the schema without each per-row check", what))
  print "| schema | rows/s | against the schema as migrated |"
  print "|---|---|---|"
  for _, v in ipairs(variants) do
    print(string.format("| %s | %s | %s |", v.name, num(cost_rates[v.name]), ratio(cost_rates[v.name], base)))
  end
end
