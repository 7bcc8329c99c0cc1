-- Embedders turn texts into vectors: a plain function fn(texts) -> vectors,
-- or an object with emb:dense(texts) and, for hybrid search,
-- emb:sparse(texts). semstore.embedders.local_hash is the deterministic one
-- that ships: no model and no network, for demos and tests (the hashing
-- runs in C: csrc/core/embed_hash.c).
local compat = require "semstore.compat"
compat() -- Lua 5.4's library, under LuaJIT too (semstore/compat.lua)
local core = require "semstore.core"

local M = {}

local LocalHash = {}
LocalHash.__index = LocalHash

-- emb:dense(texts) -> an array of `dim`-number vectors, L2-normalised
function LocalHash:dense(texts) return core.embed_dense(texts, self.dim) end

-- emb:sparse(texts) -> an array of { indices =, values = } (BM25 term
-- weights; put Qdrant's `idf` modifier on the sparse vector)
function LocalHash:sparse(texts) return core.embed_sparse(texts, self.avg_words) end

function LocalHash:__tostring() return string.format("semstore.embedders.local_hash(dim = %d)", self.dim) end

local OPTIONS = { "dim", "avg_words" }

-- semstore.embedders.local_hash{ dim = 256, avg_words = 256 }
function M.local_hash(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("local_hash takes a table of options", 2) end
  local ok, err = core.check_keys(opts, OPTIONS, "local_hash's options")
  if not ok then error(err, 2) end
  local dim = opts.dim or 256
  if math.type(dim) ~= "integer" or dim < 1 or dim > 65536 then error("dim must be an integer from 1 to 65536", 2) end
  local avg = opts.avg_words or 256
  if type(avg) ~= "number" or not (avg > 0) then error("avg_words must be a positive number", 2) end
  return setmetatable({ dim = dim, avg_words = avg }, LocalHash)
end

return M
