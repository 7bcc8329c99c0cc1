-- The deterministic local embedder (csrc/core/embed_hash.c).
require "semstore.compat" () -- Lua 5.4's library under LuaJIT too
local semstore = require "semstore"

local function cosine(a, b)
  local s = 0
  for i = 1, #a do s = s + a[i] * b[i] end
  return s
end

describe("semstore.embedders.local_hash", function()
  local emb = semstore.embedders.local_hash { dim = 256 }

  it("gives unit vectors of the dimension asked, the same every time", function()
    local v = emb:dense { "The quick brown fox", "" }
    assert.equal(2, #v)
    assert.equal(256, #v[1])
    local norm = 0
    for _, x in ipairs(v[1]) do norm = norm + x * x end
    assert.is_true(math.abs(norm - 1) < 1e-5)
    assert.same(v[1], emb:dense({ "The quick brown fox" })[1])
    assert.same(v[1], emb:dense({ "the QUICK, brown fox!" })[1]) -- case and punctuation folded
    for _, x in ipairs(v[2]) do assert.equal(0, x) end     -- no features: the zero vector
    assert.equal(64, #semstore.embedders.local_hash({ dim = 64 }):dense({ "x" })[1])
  end)

  it("ranks a paraphrase above an unrelated text", function()
    local v = emb:dense {
      "How do I reset my account password?",
      "Resetting the password of your account",
      "The recipe needs two cups of flour and an egg",
    }
    assert.is_true(cosine(v[1], v[2]) > cosine(v[1], v[3]) + 0.2,
      string.format("%.3f vs %.3f", cosine(v[1], v[2]), cosine(v[1], v[3])))
  end)

  it("gives sparse vectors with sorted unique indices and saturating term weights", function()
    local s = emb:sparse { "apple apple apple banana", "" }
    assert.equal(2, #s[1].indices)
    assert.equal(#s[1].indices, #s[1].values)
    assert.is_true(s[1].indices[1] < s[1].indices[2])
    local apple = emb:sparse({ "apple" })[1].indices[1]
    local w = {}
    for i, idx in ipairs(s[1].indices) do w[idx] = s[1].values[i] end
    assert.is_true(w[apple] > 1 and w[apple] < 2.2) -- three times is worth more, not three times more
    assert.same({ indices = {}, values = {} }, s[2])
    assert.same(emb:sparse({ "Apple" })[1], emb:sparse({ "apple" })[1])
  end)

  it("refuses bad options and texts", function()
    assert.has_error(function() semstore.embedders.local_hash { dim = 0 } end)
    assert.has_error(function() semstore.embedders.local_hash { dimension = 8 } end)
    assert.has_error(function() emb:dense { "a", 42 } end)
    assert.has_error(function() emb:sparse "not a table" end)
  end)

  it("searches through Qdrant: the paraphrase first, dense and hybrid", function()
    local URL = os.getenv "QDRANT_URL"
    local helpers = require "support.helpers"
    local q = helpers.connect(nil, { qdrant = URL }).qdrant
    local name = helpers.unique("embed", "_")
    assert(q:create_collection(name, { vectors = { dense = { size = 256, distance = "Cosine" } },
      sparse_vectors = { text = { modifier = "idf" } } }))
    local texts = { "Resetting the password of your account", "The recipe needs two cups of flour",
      "Trains leave the station every hour" }
    local dense, sparse = emb:dense(texts), emb:sparse(texts)
    local points = {}
    for i = 1, #texts do points[i] = { id = i, vector = { dense = dense[i], text = sparse[i] } } end
    assert(q:upsert(name, points))
    local query = "how do I reset my account password"
    local hits = assert(q:query(name, { query = emb:dense({ query })[1], using = "dense", limit = 3 }))
    assert.equal(1, hits[1].id)
    hits = assert(q:query(name, { fusion = "rrf", limit = 3, prefetch = {
      { query = emb:dense({ query })[1], using = "dense", limit = 3 },
      { query = emb:sparse({ query })[1], using = "text", limit = 3 } } }))
    assert.equal(1, hits[1].id)
    assert(q:delete_collection(name))
  end)
end)

describe("semstore.chunk_text", function()
  it("cuts by characters, never inside one, preferably after whitespace, with overlap", function()
    local text = "Caf\u{e9} cr\u{e8}me br\u{fb}l\u{e9}e, \u{1F600} and more words here"
    local chunks = semstore.chunk_text(text, 10, 3)
    assert.is_true(#chunks > 2)
    for i, c in ipairs(chunks) do
      assert.equal(c.content, text:sub(c.start_offset + 1, c.end_offset))
      assert.is_truthy(utf8.len(c.content), "chunk " .. i .. " is not whole UTF-8")
      assert.is_true(utf8.len(c.content) <= 10)
      if i > 1 then assert.is_true(c.start_offset < chunks[i - 1].end_offset) end
    end
    assert.equal(#text, chunks[#chunks].end_offset)
    assert.equal("Caf\u{e9} cr\u{e8}me", chunks[1].content) -- a cut before a space is between words
    assert.equal("cr\u{e8}me", chunks[2].content:match "^%S+")   -- the overlap starts at a word
    assert.same({}, semstore.chunk_text("", 10, 0))
    assert.has_error(function() semstore.chunk_text("x", 0) end)
    assert.has_error(function() semstore.chunk_text("x", 5, 5) end)
  end)
end)
