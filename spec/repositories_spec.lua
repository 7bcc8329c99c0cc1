-- The repositories (db.users, db.collections, db.documents, db.operations,
-- db.chunks) against one freshly migrated database: every method, its
-- return shapes and its errors, bound to a pool or to a transaction.
require "semstore.compat" () -- Lua 5.4's library under LuaJIT too
local semstore = require "semstore"
local migrate = require "semstore.migrate"
local helpers = require "support.helpers"
local null = semstore.null

local V4 = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"
local UNKNOWN_UUID = "00000000-0000-4000-8000-000000000000"

-- Asserts a method answered nil, err with err.kind == kind; returns err.
local function fails(kind, res, err)
  assert.is_nil(res, "expected a failure of kind " .. kind)
  assert.is_table(err)
  assert.are.equal(kind, err.kind, tostring(err))
  assert.is_string(err.message)
  assert.is_string(tostring(err))
  return err
end

local function is_v4(id)
  return type(id) == "string" and id:match(V4) ~= nil and id == id:lower()
end

describe("repositories", function()
  local name, url, db
  local ada, bob, cy, dee -- users made through db.users:create (yescrypt: few of them)
  local seq = 0

  local function uniq(prefix)
    seq = seq + 1
    return (prefix or "x") .. "-" .. seq
  end

  local function sql(q, ...)
    return assert(db.pg:query(q, ...))
  end

  -- a user without a usable password, for tests that only need an id
  local function plain_user()
    local n = uniq "u"
    return sql("INSERT INTO users (username, email, hashed_password) VALUES ($1, $1 || '@example.org', 'x') RETURNING id", n)[1].id
  end

  local function new_collection(owner, fields)
    local f = { name = uniq "col", owner_id = owner, embedding_model = "bge-small" }
    for k, v in pairs(fields or {}) do f[k] = v end
    return assert(db.collections:create(f))
  end

  local function new_document(collection_id, fields)
    local f = { collection_id = collection_id, file_path = "/d/" .. uniq "f", file_name = "f.txt", file_size = 10,
      content_hash = uniq "h" }
    for k, v in pairs(fields or {}) do f[k] = v end
    local doc, created = db.documents:create(f)
    assert(doc, tostring(created))
    return doc, created
  end

  local function server_key(collection_id)
    return sql("SELECT chunk_partition_key($1) AS k", collection_id)[1].k
  end

  setup(function()
    name, url = helpers.fresh_database()
    db = helpers.connect({ size = 3, max_overflow = 2, timeout = 10 }, { postgres = url })
    assert(migrate.up(db))
    ada = assert(db.users:create { username = "ada", email = "ada@example.org", full_name = "Ada L", password = "s3cret-ada" })
    bob = assert(db.users:create { username = "bob", email = "bob@example.org", password = "s3cret-bob" })
    cy = assert(db.users:create { username = "cy", email = "cy@example.org", password = "s3cret-cy" })
    dee = assert(db.users:create { username = "dee", email = "dee@example.org", password = "s3cret-dee" })
  end)

  teardown(function()
    helpers.assert_all_returned(db)
    db:close()
    helpers.drop_database(name)
  end)

  -- ------------------------------------------------------------------ users
  describe("users", function()
    it("create returns the row without the hash, and stores a yescrypt hash", function()
      assert.are.equal("integer", math.type(ada.id))
      assert.are.equal("ada", ada.username)
      assert.are.equal("ada@example.org", ada.email)
      assert.are.equal("Ada L", ada.full_name)
      assert.are.equal(null, bob.full_name)
      assert.is_true(ada.is_active)
      assert.is_false(ada.is_superuser)
      assert.are.equal(null, ada.last_login)
      assert.is_string(ada.created_at)
      assert.is_nil(ada.hashed_password)
      for k in pairs(ada) do assert.is_nil(k:find "password", k) end
      local stored = sql("SELECT hashed_password FROM users WHERE id = $1", ada.id)[1].hashed_password
      assert.are.equal("$y$", stored:sub(1, 3))
      assert.is_nil(stored:find("s3cret-ada", 1, true))
      local other = sql("SELECT hashed_password FROM users WHERE id = $1", bob.id)[1].hashed_password
      assert.are_not.equal(stored, other)
    end)

    it("create refuses a duplicate username with the server's error", function()
      local err = fails("postgres", db.users:create { username = "ada", email = "ada2@example.org", password = "pw" })
      assert.are.equal("23505", err.code)
      assert.are.equal("users_username_key", err.constraint)
    end)

    it("create checks its fields before reaching the server", function()
      local err = fails("input", db.users:create { username = "eve", email = "eve@example.org" })
      assert.truthy(err.message:find "password")
      err = fails("input", db.users:create { username = "eve", password = "pw" })
      assert.truthy(err.message:find "email")
      err = fails("input", db.users:create { username = "eve", email = "eve@example.org", password = "pw", admin = true })
      assert.truthy(err.message:find "admin")
      err = fails("input", db.users:create { username = "eve", email = "eve@example.org", password = "" })
      assert.truthy(err.message:find "password")
      fails("input", db.users:create { username = "e\0ve", email = "eve@example.org", password = "pw" })
      fails("input", db.users:create { username = "eve", email = "eve@example.org", password = "p\0w" })
      fails("input", db.users:create { username = "eve\xff", email = "eve@example.org", password = "pw" })
      fails("input", db.users:create { username = 42, email = "eve@example.org", password = "pw" })
      fails("input", db.users:create "eve")
      fails("input", db.users:create())
      assert.are.equal(0, sql("SELECT count(*)::int AS n FROM users WHERE username LIKE 'e%ve%'")[1].n)
    end)

    it("get and get_by_username find a user, or answer not_found", function()
      local u = assert(db.users:get(bob.id))
      assert.are.equal("bob", u.username)
      assert.is_nil(u.hashed_password)
      u = assert(db.users:get_by_username "cy")
      assert.are.equal(cy.id, u.id)
      assert.is_nil(u.hashed_password)
      fails("not_found", db.users:get(987654321))
      fails("not_found", db.users:get_by_username "nobody")
      -- a decimal string is an id (what LuaJIT gives beyond 2^53), in canonical form only
      assert.are.equal("bob", assert(db.users:get(string.format("%d", bob.id))).username)
      for _, bad in ipairs { "01", "1.0", " 1", "+1", "1e3", "0x1", "", "9223372036854775808" } do
        fails("input", db.users:get(bad))
      end
      fails("input", db.users:get(1.5))
      fails("input", db.users:get())
      fails("input", db.users:get_by_username "a\0b")
    end)

    it("verify_password: true for the password, false otherwise, false for inactive users", function()
      assert.is_true(db.users:verify_password("ada", "s3cret-ada"))
      assert.is_false(db.users:verify_password("ada", "s3cret-bob"))
      assert.is_false(db.users:verify_password("nobody", "s3cret-ada"))
      sql("UPDATE users SET is_active = false WHERE id = $1", dee.id)
      assert.is_false(db.users:verify_password("dee", "s3cret-dee"))
      sql("UPDATE users SET is_active = true WHERE id = $1", dee.id)
    end)

    it("update_last_login sets last_login", function()
      local u = assert(db.users:update_last_login(cy.id))
      assert.are.equal(cy.id, u.id)
      assert.is_string(u.last_login)
      assert.is_nil(u.hashed_password)
      local row = sql("SELECT last_login IS NOT NULL AS set, last_login > now() - interval '1 minute' AS recent FROM users WHERE id = $1", cy.id)[1]
      assert.is_true(row.set)
      assert.is_true(row.recent)
      fails("not_found", db.users:update_last_login(987654321))
    end)
  end)

  -- ------------------------------------------------------------ collections
  describe("collections", function()
    it("create makes a v4 id, a vector store name from it, status pending and the defaults", function()
      local a = new_collection(ada.id)
      local b = new_collection(ada.id, { description = "two", quantization = "int8", chunk_size = 500,
        chunk_overlap = 0, is_public = true, meta = { team = "x", n = 3 }, chunking_strategy = "token",
        chunking_config = { size = 10 } })
      assert.is_true(is_v4(a.id), a.id)
      assert.is_true(is_v4(b.id), b.id)
      assert.are_not.equal(a.id, b.id)
      assert.are.equal("col_" .. a.id:gsub("-", "_"), a.vector_store_name)
      assert.are.equal("col_" .. b.id:gsub("-", "_"), b.vector_store_name)
      assert.are_not.equal(a.vector_store_name, b.vector_store_name)
      assert.are.equal("pending", a.status)
      assert.are.equal(ada.id, a.owner_id)
      assert.are.equal("float16", a.quantization)
      assert.are.equal(1000, a.chunk_size)
      assert.are.equal(200, a.chunk_overlap)
      assert.is_false(a.is_public)
      assert.are.equal(null, a.description)
      assert.are.equal(null, a.meta)
      assert.are.equal(0, a.document_count)
      assert.are.equal(0, a.vector_count)
      assert.are.equal("int8", b.quantization)
      assert.are.equal(500, b.chunk_size)
      assert.are.equal(0, b.chunk_overlap)
      assert.is_true(b.is_public)
      assert.are.same({ team = "x", n = 3 }, b.meta)
      assert.are.same({ size = 10 }, b.chunking_config)
      assert.are.equal("token", b.chunking_strategy)
      sql("UPDATE collections SET is_public = false WHERE id = $1", b.id) -- keep the public set small
    end)

    it("create refuses a duplicate name, a bad quantization and bad fields", function()
      local a = new_collection(ada.id)
      local err = fails("postgres", db.collections:create { name = a.name, owner_id = bob.id, embedding_model = "m" })
      assert.are.equal("23505", err.code)
      assert.are.equal("collections_name_key", err.constraint)
      err = fails("input", db.collections:create { name = uniq "col", owner_id = ada.id, embedding_model = "m", quantization = "float64" })
      assert.truthy(err.message:find "quantization")
      fails("input", db.collections:create { name = uniq "col", owner_id = ada.id, embedding_model = "m", colour = "red" })
      fails("input", db.collections:create { name = uniq "col", owner_id = ada.id })
      fails("input", db.collections:create { name = uniq "col", owner_id = "01", embedding_model = "m" })
      fails("input", db.collections:create { name = uniq "col", owner_id = true, embedding_model = "m" })
      fails("input", db.collections:create { name = uniq "col", owner_id = ada.id, embedding_model = "m", chunk_size = -1 })
      fails("input", db.collections:create { name = uniq "col", owner_id = ada.id, embedding_model = "m", is_public = "yes" })
      fails("input", db.collections:create { name = uniq "col", owner_id = ada.id, embedding_model = "m", meta = "{}" })
      err = fails("postgres", db.collections:create { name = uniq "col", owner_id = 987654321, embedding_model = "m" })
      assert.are.equal("23503", err.code)
    end)

    it("get_by_uuid and get_by_name find a collection, or answer not_found or input", function()
      local a = new_collection(bob.id)
      assert.are.equal(a.name, assert(db.collections:get_by_uuid(a.id)).name)
      assert.are.equal(a.id, assert(db.collections:get_by_name(a.name)).id)
      fails("not_found", db.collections:get_by_uuid(UNKNOWN_UUID))
      fails("not_found", db.collections:get_by_name "no such collection")
      local err = fails("input", db.collections:get_by_uuid(a.id:upper()))
      assert.truthy(err.message:find "UUID")
      fails("input", db.collections:get_by_uuid "garbage")
      fails("input", db.collections:get_by_uuid(a.id:gsub("-", "")))
      fails("input", db.collections:get_by_uuid("{" .. a.id .. "}"))
      fails("input", db.collections:get_by_uuid(a.id .. " "))
      fails("input", db.collections:get_by_uuid(42))
      fails("input", db.collections:get_by_uuid())
    end)

    it("get_by_uuid_with_permission_check lets in the owner, anyone on public, and grantees", function()
      local private = new_collection(ada.id)
      local public = new_collection(ada.id, { is_public = true })
      local shared = new_collection(ada.id)
      sql("INSERT INTO collection_permissions (collection_id, user_id, permission) VALUES ($1, $2, 'read')", shared.id, cy.id)
      local c = assert(db.collections:get_by_uuid_with_permission_check(private.id, ada.id))
      assert.are.equal(private.id, c.id)
      assert.is_nil(c.permitted)
      assert.are.equal(public.id, assert(db.collections:get_by_uuid_with_permission_check(public.id, bob.id)).id)
      assert.are.equal(shared.id, assert(db.collections:get_by_uuid_with_permission_check(shared.id, cy.id)).id)
      fails("access_denied", db.collections:get_by_uuid_with_permission_check(private.id, bob.id))
      fails("access_denied", db.collections:get_by_uuid_with_permission_check(shared.id, bob.id))
      fails("access_denied", db.collections:get_by_uuid_with_permission_check(private.id, cy.id))
      fails("not_found", db.collections:get_by_uuid_with_permission_check(UNKNOWN_UUID, ada.id))
      fails("input", db.collections:get_by_uuid_with_permission_check("nope", ada.id))
      fails("input", db.collections:get_by_uuid_with_permission_check(private.id))
      sql("UPDATE collections SET is_public = false WHERE id = $1", public.id)
    end)

    it("list_for_user gives the owner's, public and shared collections, with the total, paged", function()
      local me, other = plain_user(), plain_user()
      local mine = {}
      for i = 1, 3 do mine[i] = new_collection(me).id end
      local hidden = new_collection(other).id
      local public = new_collection(other, { is_public = true }).id
      local shared = new_collection(other).id
      sql("INSERT INTO collection_permissions (collection_id, user_id, permission) VALUES ($1, $2, 'write')", shared, me)
      -- what must be visible: mine, shared, and every public collection in the database
      local expected = { [shared] = true }
      for _, id in ipairs(mine) do expected[id] = true end
      for _, r in ipairs(sql "SELECT id FROM collections WHERE is_public") do expected[r.id] = true end
      local n = 0
      for _ in pairs(expected) do n = n + 1 end
      assert.is_true(n >= 5)

      local items, total = db.collections:list_for_user(me)
      assert(items, tostring(total))
      assert.are.equal(n, total)
      assert.are.equal(n, #items)
      local seen = {}
      for _, c in ipairs(items) do
        assert.is_true(expected[c.id] or false, c.name)
        seen[c.id] = true
      end
      assert.is_nil(seen[hidden])
      assert.is_true(seen[public])
      for i = 2, #items do assert.is_true(items[i - 1].created_at >= items[i].created_at, "newest first") end

      -- paging: total stays the full count, every item exactly once
      local walked, offset = {}, 0
      while true do
        local page, t = assert(db.collections:list_for_user(me, { offset = offset, limit = 2 }))
        assert.are.equal(n, t)
        assert.is_true(#page <= 2)
        if #page == 0 then break end
        for i, c in ipairs(page) do
          assert.is_nil(walked[c.id], "twice: " .. c.id)
          walked[c.id] = true
          assert.are.equal(items[offset + i].id, c.id)
        end
        offset = offset + #page
      end
      assert.are.equal(n, offset)
      local page, t = assert(db.collections:list_for_user(me, { offset = n + 10, limit = 5 }))
      assert.are.equal(0, #page)
      assert.are.equal(n, t)
      page, t = assert(db.collections:list_for_user(me, { limit = 1 }))
      assert.are.equal(1, #page)
      assert.are.equal(n, t)
      assert.are.equal(items[1].id, page[1].id)

      -- a user with nothing of their own sees the public collections only
      local nobody = plain_user()
      local _, public_total = assert(db.collections:list_for_user(nobody))
      assert.are.equal(sql("SELECT count(*)::int AS n FROM collections WHERE is_public")[1].n, public_total)

      fails("input", db.collections:list_for_user(me, { limit = 0 }))
      fails("input", db.collections:list_for_user(me, { limit = 10001 }))
      assert(db.collections:list_for_user(me, { limit = 10000 }))
      fails("input", db.collections:list_for_user(me, { offset = -1 }))
      fails("input", db.collections:list_for_user(me, { page = 2 }))
      fails("input", db.collections:list_for_user "me")
      sql("UPDATE collections SET is_public = false WHERE id = $1", public)
    end)

    it("update_status follows the transition table and stores the message", function()
      local statuses = { "pending", "ready", "processing", "error", "degraded" }
      local allowed = {
        pending = { pending = true, processing = true, ready = true, error = true },
        ready = { ready = true, processing = true, degraded = true, error = true },
        processing = { processing = true, ready = true, error = true, degraded = true },
        error = { error = true, processing = true, pending = true },
        degraded = { degraded = true, processing = true, ready = true, error = true },
      }
      local c = new_collection(ada.id)
      for _, from in ipairs(statuses) do
        for _, to in ipairs(statuses) do
          sql("UPDATE collections SET status = $2::collection_status, status_message = 'before' WHERE id = $1", c.id, from)
          local msg = from .. " -> " .. to
          local row, err = db.collections:update_status(c.id, to, msg)
          local now = sql("SELECT status::text AS s, status_message AS m FROM collections WHERE id = $1", c.id)[1]
          if allowed[from][to] then
            assert(row, msg .. ": " .. tostring(err))
            assert.are.equal(to, row.status)
            assert.are.equal(msg, row.status_message)
            assert.are.same({ s = to, m = msg }, { s = now.s, m = now.m })
          else
            fails("invalid_transition", row, err)
            assert.are.same({ s = from, m = "before" }, { s = now.s, m = now.m }, msg)
          end
        end
      end
      local row = assert(db.collections:update_status(c.id, "processing"))
      assert.are.equal(null, row.status_message)
      fails("input", db.collections:update_status(c.id, "done"))
      fails("input", db.collections:update_status(c.id))
      fails("input", db.collections:update_status(c.id, "ready", 42))
      fails("not_found", db.collections:update_status(UNKNOWN_UUID, "ready"))
      fails("input", db.collections:update_status("x", "ready"))
    end)

    it("update_stats sets the counts given and keeps the others", function()
      local c = new_collection(ada.id)
      local row = assert(db.collections:update_stats(c.id, { document_count = 3, vector_count = 30 }))
      assert.are.equal(3, row.document_count)
      assert.are.equal(30, row.vector_count)
      assert.are.equal(0, row.total_size_bytes)
      row = assert(db.collections:update_stats(c.id, { total_size_bytes = 5000000000, chunks_total_count = 7 }))
      assert.are.equal(3, row.document_count)
      assert.are.equal(30, row.vector_count)
      assert.are.equal(5000000000, row.total_size_bytes)
      assert.are.equal(7, row.chunks_total_count)
      row = assert(db.collections:update_stats(c.id, {}))
      assert.are.equal(3, row.document_count)
      fails("input", db.collections:update_stats(c.id, { document_count = -1 }))
      fails("input", db.collections:update_stats(c.id, { documents = 1 }))
      fails("not_found", db.collections:update_stats(UNKNOWN_UUID, { document_count = 1 }))
    end)

    it("rename: by the owner only, to a free name", function()
      local a, b = new_collection(ada.id), new_collection(ada.id)
      local new = uniq "renamed"
      local row = assert(db.collections:rename(a.id, new, ada.id))
      assert.are.equal(new, row.name)
      assert.are.equal(a.id, assert(db.collections:get_by_name(new)).id)
      fails("access_denied", db.collections:rename(a.id, uniq "theirs", bob.id))
      assert.are.equal(new, assert(db.collections:get_by_uuid(a.id)).name)
      fails("not_found", db.collections:rename(UNKNOWN_UUID, uniq "n", ada.id))
      local err = fails("postgres", db.collections:rename(b.id, new, ada.id))
      assert.are.equal("23505", err.code)
      assert.are.equal("collections_name_key", err.constraint)
      fails("input", db.collections:rename(a.id, nil, ada.id))
      fails("input", db.collections:rename(a.id, uniq "n"))
    end)

    it("update sets the named fields, clears with semstore.null, and refuses others", function()
      local c = new_collection(ada.id, { description = "old", meta = { a = 1 } })
      local row = assert(db.collections:update(c.id, { description = "new", chunk_size = 256, quantization = "float32",
        meta = { b = { 1, 2 } }, status_message = "hi", qdrant_collections = { "q1" } }))
      assert.are.equal("new", row.description)
      assert.are.equal(256, row.chunk_size)
      assert.are.equal("float32", row.quantization)
      assert.are.same({ b = { 1, 2 } }, row.meta)
      assert.are.equal("hi", row.status_message)
      assert.are.same({ "q1" }, row.qdrant_collections)
      assert.are.equal(c.name, row.name)
      assert.are.equal("pending", row.status)
      row = assert(db.collections:update(c.id, { is_public = false, chunk_overlap = 0 }))
      assert.is_false(row.is_public)
      assert.are.equal(0, row.chunk_overlap)
      assert.are.equal("new", row.description)
      row = assert(db.collections:update(c.id, { description = null, meta = null }))
      assert.are.equal(null, row.description)
      assert.are.equal(null, row.meta)
      local now = sql("SELECT description IS NULL AS d, meta IS NULL AS m FROM collections WHERE id = $1", c.id)[1]
      assert.is_true(now.d)
      assert.is_true(now.m)
      -- every updatable field at once (the most parameters a statement gets)
      row = assert(db.collections:update(c.id, { name = uniq "all", description = "d", embedding_model = "e",
        quantization = "int8", chunk_size = 10, chunk_overlap = 1, chunking_strategy = "s", chunking_config = { k = 1 },
        is_public = false, meta = { m = 1 }, status_message = "sm", qdrant_collections = { "a" }, qdrant_staging = { "b" } }))
      assert.are.equal("e", row.embedding_model)
      assert.are.same({ "b" }, row.qdrant_staging)

      local err = fails("input", db.collections:update(c.id, { colour = "red" }))
      assert.truthy(err.message:find "colour")
      err = fails("input", db.collections:update(c.id, { status = "ready" }))
      assert.truthy(err.message:find "status")
      fails("input", db.collections:update(c.id, {}))
      fails("input", db.collections:update(c.id, { chunk_size = "x" }))
      fails("input", db.collections:update(c.id, { quantization = "float64" }))
      fails("input", db.collections:update("nope", { description = "x" }))
      fails("not_found", db.collections:update(UNKNOWN_UUID, { description = "x" }))
      err = fails("postgres", db.collections:update(c.id, { name = null }))
      assert.are.equal("23502", err.code)
      assert.are.equal("pending", assert(db.collections:get_by_uuid(c.id)).status)
    end)

    it("delete: by the owner only; documents, chunks and operations go with it", function()
      local c = new_collection(ada.id)
      local doc = new_document(c.id)
      assert(db.chunks:create_chunk { collection_id = c.id, document_id = doc.id, chunk_index = 0, content = "x" })
      assert(db.operations:create { collection_id = c.id, user_id = ada.id, type = "index", config = {} })
      fails("access_denied", db.collections:delete(c.id, bob.id))
      assert(db.collections:get_by_uuid(c.id))
      assert.is_true(db.collections:delete(c.id, ada.id))
      fails("not_found", db.collections:get_by_uuid(c.id))
      fails("not_found", db.documents:get(doc.id))
      assert.are.equal(0, sql("SELECT count(*)::int AS n FROM chunks WHERE collection_id = $1", c.id)[1].n)
      assert.are.equal(0, sql("SELECT count(*)::int AS n FROM operations WHERE collection_id = $1", c.id)[1].n)
      fails("not_found", db.collections:delete(c.id, ada.id))
      fails("input", db.collections:delete(c.id))
    end)
  end)

  -- -------------------------------------------------------------- documents
  describe("documents", function()
    it("create finds the document another session committed while the INSERT waited on it", function()
      local c = new_collection(ada.id)
      -- psql inserts the same content and commits a second later; our INSERT
      -- waits on its row, does nothing, and its statement's snapshot cannot
      -- see the row: create must look again
      local insert = "BEGIN; INSERT INTO documents (collection_id, file_path, file_name, file_size, content_hash) VALUES ("
        .. semstore.quote_literal(c.id) .. ", '/p', 'p', 1, 'raced'); SELECT pg_sleep(1); COMMIT;"
      os.execute(string.format("psql %s -q -c %s >/dev/null 2>&1 &", helpers.shell_quote(url), helpers.shell_quote(insert)))
      local deadline = os.time() + 10
      -- sleeping, so its INSERT is done
      while sql("SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND datname = current_database()")[1].n == 0 do
        assert(os.time() < deadline, "psql did not start")
        helpers.sleep(0.05)
      end
      local doc, created = db.documents:create { collection_id = c.id, file_path = "/q", file_name = "q", file_size = 1,
        content_hash = "raced" }
      assert(doc, tostring(created))
      assert.is_false(created)
      assert.are.equal("/p", doc.file_path)
    end)

    it("create returns doc, true; the same content in the same collection returns it again, false", function()
      local c1, c2 = new_collection(ada.id), new_collection(ada.id)
      local doc, created = db.documents:create { collection_id = c1.id, file_path = "/a/b.txt", file_name = "b.txt",
        file_size = 123, mime_type = "text/plain", content_hash = "hash-1", meta = { pages = 2 } }
      assert(doc, tostring(created))
      assert.is_true(created)
      assert.is_true(is_v4(doc.id))
      assert.is_nil(doc.created)
      assert.are.equal(c1.id, doc.collection_id)
      assert.are.equal(123, doc.file_size)
      assert.are.equal("pending", doc.status)
      assert.are.same({ pages = 2 }, doc.meta)
      local again, created2 = db.documents:create { collection_id = c1.id, file_path = "/other.txt", file_name = "other.txt",
        file_size = 1, content_hash = "hash-1" }
      assert(again, tostring(created2))
      assert.is_false(created2)
      assert.are.equal(doc.id, again.id)
      assert.are.equal("/a/b.txt", again.file_path)
      assert.is_nil(again.created)
      local elsewhere, created3 = db.documents:create { collection_id = c2.id, file_path = "/a/b.txt", file_name = "b.txt",
        file_size = 123, content_hash = "hash-1" }
      assert(elsewhere, tostring(created3))
      assert.is_true(created3)
      assert.are_not.equal(doc.id, elsewhere.id)
      assert.are.equal(1, sql("SELECT count(*)::int AS n FROM documents WHERE collection_id = $1", c1.id)[1].n)

      fails("input", db.documents:create { collection_id = c1.id, file_path = "/x", file_name = "x", content_hash = "h-x" })
      fails("input", db.documents:create { collection_id = c1.id, file_path = "/x", file_name = "x", file_size = -1, content_hash = "h-x" })
      fails("input", db.documents:create { collection_id = c1.id, file_path = "/x", file_name = "x", file_size = 1.5, content_hash = "h-x" })
      fails("input", db.documents:create { collection_id = c1.id, file_path = "/x", file_name = "x", file_size = 1 })
      fails("input", db.documents:create { collection_id = "C1", file_path = "/x", file_name = "x", file_size = 1, content_hash = "h-x" })
      fails("input", db.documents:create { collection_id = c1.id, file_path = "/x", file_name = "x", file_size = 1, content_hash = "h-x", size = 1 })
      local err = fails("postgres", db.documents:create { collection_id = UNKNOWN_UUID, file_path = "/x", file_name = "x", file_size = 1, content_hash = "h-x" })
      assert.are.equal("23503", err.code)
    end)

    it("get finds a document, or answers not_found", function()
      local c = new_collection(ada.id)
      local doc = new_document(c.id)
      assert.are.equal(doc.file_path, assert(db.documents:get(doc.id)).file_path)
      fails("not_found", db.documents:get(UNKNOWN_UUID))
      fails("input", db.documents:get "nope")
    end)

    it("list_by_collection filters by status and pages with offset and limit", function()
      local c, other = new_collection(ada.id), new_collection(ada.id)
      local docs = {}
      for i = 1, 5 do docs[i] = new_document(c.id) end
      new_document(other.id)
      assert(db.documents:update_status(docs[2].id, "completed"))
      assert(db.documents:update_status(docs[4].id, "completed"))
      local all = assert(db.documents:list_by_collection(c.id))
      assert.are.equal(5, #all)
      for i = 1, 5 do assert.are.equal(docs[i].id, all[i].id, "oldest first") end
      local done = assert(db.documents:list_by_collection(c.id, { status = "completed" }))
      assert.are.same({ docs[2].id, docs[4].id }, { done[1].id, done[2].id })
      assert.are.equal(2, #done)
      assert.are.equal(3, #assert(db.documents:list_by_collection(c.id, { status = "pending" })))
      assert.are.equal(0, #assert(db.documents:list_by_collection(c.id, { status = "failed" })))
      local page = assert(db.documents:list_by_collection(c.id, { offset = 1, limit = 2 }))
      assert.are.same({ docs[2].id, docs[3].id }, { page[1].id, page[2].id })
      assert.are.equal(2, #page)
      assert.are.equal(0, #assert(db.documents:list_by_collection(c.id, { offset = 5 })))
      page = assert(db.documents:list_by_collection(c.id, { status = "pending", offset = 1, limit = 1 }))
      assert.are.same({ docs[3].id }, { page[1].id })
      assert.are.equal(0, #assert(db.documents:list_by_collection(UNKNOWN_UUID)))
      fails("input", db.documents:list_by_collection(c.id, { status = "done" }))
      fails("input", db.documents:list_by_collection(c.id, { limit = 0 }))
      fails("input", db.documents:list_by_collection(c.id, { limit = 10001 }))
      fails("input", db.documents:list_by_collection(c.id, { offset = -1 }))
      fails("input", db.documents:list_by_collection "nope")
    end)

    it("update_status sets the status and the error message", function()
      local c = new_collection(ada.id)
      local doc = new_document(c.id)
      local row = assert(db.documents:update_status(doc.id, "failed", "parse error"))
      assert.are.equal("failed", row.status)
      assert.are.equal("parse error", row.error_message)
      row = assert(db.documents:update_status(doc.id, "completed"))
      assert.are.equal("completed", row.status)
      assert.are.equal(null, row.error_message)
      fails("input", db.documents:update_status(doc.id, "done"))
      fails("not_found", db.documents:update_status(UNKNOWN_UUID, "completed"))
    end)

    it("delete answers true, then not_found", function()
      local c = new_collection(ada.id)
      local doc = new_document(c.id)
      assert(db.chunks:create_chunk { collection_id = c.id, document_id = doc.id, chunk_index = 0, content = "x" })
      assert.is_true(db.documents:delete(doc.id))
      fails("not_found", db.documents:get(doc.id))
      fails("not_found", db.documents:delete(doc.id))
      assert.are.equal(0, sql("SELECT count(*)::int AS n FROM chunks WHERE document_id = $1", doc.id)[1].n)
      fails("input", db.documents:delete "nope")
    end)
  end)

  -- ------------------------------------------------------------- operations
  describe("operations", function()
    local c
    before_each(function() c = c or new_collection(ada.id) end)

    local function new_op(fields)
      local f = { collection_id = c.id, user_id = ada.id, type = "index", config = { k = 1 } }
      for k, v in pairs(fields or {}) do f[k] = v end
      return assert(db.operations:create(f))
    end

    it("create makes a v4 uuid, status pending, and keeps config as JSON", function()
      local config = { paths = { "/a", "/b" }, depth = 3, nested = { flag = true, ratio = 0.25, none = null }, big = 9007199254740993 }
      local op = new_op { type = "reindex", config = config, meta = { by = "spec" } }
      assert.is_true(is_v4(op.uuid), op.uuid)
      assert.are.equal("integer", math.type(op.id))
      assert.are.equal("pending", op.status)
      assert.are.equal("reindex", op.type)
      assert.are.same(config, op.config)
      assert.are.same({ by = "spec" }, op.meta)
      assert.are.equal(null, op.started_at)
      assert.are.equal(null, op.completed_at)
      assert.are.equal(null, op.task_id)
      local again = assert(db.operations:get_by_uuid(op.uuid))
      assert.are.same(config, again.config)
      assert.are.equal(op.id, again.id)
      assert.are_not.equal(op.uuid, new_op().uuid)

      local err = fails("input", db.operations:create { collection_id = c.id, user_id = ada.id, type = "compact", config = {} })
      assert.truthy(err.message:find "type")
      fails("input", db.operations:create { collection_id = c.id, user_id = ada.id, config = {} })
      err = fails("input", db.operations:create { collection_id = c.id, user_id = ada.id, type = "index" })
      assert.truthy(err.message:find "config")
      fails("input", db.operations:create { collection_id = c.id, user_id = ada.id, type = "index", config = null })
      fails("input", db.operations:create { collection_id = c.id, user_id = ada.id, type = "index", config = "{}" })
      fails("input", db.operations:create { collection_id = c.id, user_id = ada.id, type = "index", config = {}, uuid = UNKNOWN_UUID })
      err = fails("postgres", db.operations:create { collection_id = UNKNOWN_UUID, user_id = ada.id, type = "index", config = {} })
      assert.are.equal("23503", err.code)
    end)

    it("get_by_uuid finds an operation, or answers not_found", function()
      local op = new_op()
      assert.are.equal(op.id, assert(db.operations:get_by_uuid(op.uuid)).id)
      fails("not_found", db.operations:get_by_uuid(UNKNOWN_UUID))
      fails("input", db.operations:get_by_uuid(op.uuid:upper()))
    end)

    it("update_status: processing sets started_at and task_id, completed sets completed_at, no way back", function()
      local op = new_op()
      local row = assert(db.operations:update_status(op.uuid, "processing", { task_id = "task-1" }))
      assert.are.equal("processing", row.status)
      assert.are.equal("task-1", row.task_id)
      assert.is_string(row.started_at)
      assert.are.equal(null, row.completed_at)
      local started = row.started_at
      row = assert(db.operations:update_status(op.uuid, "processing"))
      assert.are.equal(started, row.started_at, "started_at is kept")
      assert.are.equal("task-1", row.task_id, "task_id is kept")
      row = assert(db.operations:update_status(op.uuid, "completed"))
      assert.are.equal("completed", row.status)
      assert.is_string(row.completed_at)
      assert.are.equal(started, row.started_at)
      fails("invalid_transition", db.operations:update_status(op.uuid, "processing"))
      assert.are.equal("completed", assert(db.operations:get_by_uuid(op.uuid)).status)

      local failed = new_op()
      assert(db.operations:update_status(failed.uuid, "processing"))
      row = assert(db.operations:update_status(failed.uuid, "failed", { error_message = "boom" }))
      assert.are.equal("boom", row.error_message)
      assert.is_string(row.completed_at)

      fails("input", db.operations:update_status(op.uuid, "done"))
      fails("input", db.operations:update_status(op.uuid, "failed", { reason = "x" }))
      fails("not_found", db.operations:update_status(UNKNOWN_UUID, "processing"))
    end)

    it("update_status follows the transition table", function()
      local statuses = { "pending", "processing", "completed", "failed", "cancelled" }
      local allowed = {
        pending = { processing = true, failed = true, cancelled = true },
        processing = { processing = true, completed = true, failed = true, cancelled = true },
        completed = {}, failed = {}, cancelled = {},
      }
      local op = new_op()
      for _, from in ipairs(statuses) do
        for _, to in ipairs(statuses) do
          sql("UPDATE operations SET status = $2::operation_status WHERE uuid = $1", op.uuid, from)
          local row, err = db.operations:update_status(op.uuid, to)
          local now = sql("SELECT status::text AS s FROM operations WHERE uuid = $1", op.uuid)[1].s
          if allowed[from][to] then
            assert(row, from .. " -> " .. to .. ": " .. tostring(err))
            assert.are.equal(to, row.status)
            assert.are.equal(to, now)
          else
            fails("invalid_transition", row, err)
            assert.are.equal(from, now, from .. " -> " .. to)
          end
        end
      end
    end)

    it("cancel moves a pending or processing operation to cancelled, and nothing finished", function()
      local op = new_op()
      local row = assert(db.operations:cancel(op.uuid))
      assert.are.equal("cancelled", row.status)
      assert.is_string(row.completed_at)
      fails("invalid_transition", db.operations:cancel(op.uuid))
      local running = new_op()
      assert(db.operations:update_status(running.uuid, "processing"))
      assert.are.equal("cancelled", assert(db.operations:cancel(running.uuid)).status)
      local done = new_op()
      assert(db.operations:update_status(done.uuid, "processing"))
      assert(db.operations:update_status(done.uuid, "completed"))
      fails("invalid_transition", db.operations:cancel(done.uuid))
      assert.are.equal("completed", assert(db.operations:get_by_uuid(done.uuid)).status)
      fails("not_found", db.operations:cancel(UNKNOWN_UUID))
      fails("input", db.operations:cancel "nope")
    end)

    it("list_for_collection lists newest first, filtered by status", function()
      local mine = new_collection(bob.id)
      local ops = {}
      for i = 1, 4 do ops[i] = assert(db.operations:create { collection_id = mine.id, user_id = bob.id, type = "append", config = { i = i } }) end
      assert(db.operations:cancel(ops[2].uuid))
      assert(db.operations:cancel(ops[3].uuid))
      local all = assert(db.operations:list_for_collection(mine.id))
      assert.are.equal(4, #all)
      assert.are.same({ ops[4].id, ops[3].id, ops[2].id, ops[1].id }, { all[1].id, all[2].id, all[3].id, all[4].id })
      local cancelled = assert(db.operations:list_for_collection(mine.id, { status = "cancelled" }))
      assert.are.same({ ops[3].id, ops[2].id }, { cancelled[1].id, cancelled[2].id })
      assert.are.equal(2, #cancelled)
      local pending = assert(db.operations:list_for_collection(mine.id, { status = "pending" }))
      assert.are.equal(2, #pending)
      assert.are.equal(0, #assert(db.operations:list_for_collection(mine.id, { status = "completed" })))
      local page = assert(db.operations:list_for_collection(mine.id, { offset = 1, limit = 2 }))
      assert.are.same({ ops[3].id, ops[2].id }, { page[1].id, page[2].id })
      assert.are.equal(2, #page)
      fails("input", db.operations:list_for_collection(mine.id, { status = "done" }))
      fails("input", db.operations:list_for_collection(mine.id, { limit = 0 }))
      fails("input", db.operations:list_for_collection "nope")
    end)
  end)

  -- ----------------------------------------------------------------- chunks
  describe("chunks", function()
    it("create_chunk stores the chunk in the partition of its collection", function()
      local c = new_collection(ada.id)
      local doc = new_document(c.id)
      local ch = assert(db.chunks:create_chunk { collection_id = c.id, document_id = doc.id, chunk_index = 0,
        content = "hello", start_offset = 0, end_offset = 5, token_count = 2, metadata = { page = 1 } })
      assert.are.equal("integer", math.type(ch.id))
      assert.are.equal(server_key(c.id), ch.partition_key)
      assert.are.equal(semstore.partition_key(c.id), ch.partition_key)
      local leaf = sql("SELECT tableoid::regclass::text AS leaf FROM chunks WHERE id = $1", ch.id)[1].leaf
      assert.are.equal("chunks_p" .. ch.partition_key, leaf)
      assert.are.equal("hello", ch.content)
      assert.are.equal(2, ch.token_count)
      assert.are.same({ page = 1 }, ch.metadata)
      assert.are.equal(null, ch.embedding_vector_id)
      local loose = assert(db.chunks:create_chunk { collection_id = c.id, chunk_index = 1, content = "no document" })
      assert.are.equal(null, loose.document_id)

      fails("input", db.chunks:create_chunk { collection_id = c.id, chunk_index = 0 })
      fails("input", db.chunks:create_chunk { collection_id = c.id, chunk_index = -1, content = "x" })
      -- integer columns: checked before the server would say "out of range"
      local big = fails("input", db.chunks:create_chunk { collection_id = c.id, chunk_index = 2147483648, content = "x" })
      assert.truthy(big.message:find("chunk_index must be an integer from 0 to 2147483647", 1, true), big.message)
      assert(db.chunks:create_chunk { collection_id = c.id, chunk_index = 2147483647, content = "max" })
      fails("input", db.collections:update(c.id, { chunk_size = 2 ^ 31 }))
      fails("input", db.chunks:create_chunk { collection_id = c.id:upper(), chunk_index = 0, content = "x" })
      fails("input", db.chunks:create_chunk { collection_id = c.id, chunk_index = 0, content = "x", partition_key = 3 })
      fails("input", db.chunks:create_chunk { collection_id = c.id, chunk_index = 0, content = "x\0y" })
      local err = fails("postgres", db.chunks:create_chunk { collection_id = UNKNOWN_UUID, chunk_index = 0, content = "x" })
      assert.are.equal("23503", err.code)
    end)

    it("get_chunk_by_id needs the chunk's own collection", function()
      local c, other = new_collection(ada.id), new_collection(ada.id)
      local ch = assert(db.chunks:create_chunk { collection_id = c.id, chunk_index = 0, content = "mine" })
      local got = assert(db.chunks:get_chunk_by_id(ch.id, c.id))
      assert.are.equal("mine", got.content)
      fails("not_found", db.chunks:get_chunk_by_id(ch.id, other.id))
      fails("not_found", db.chunks:get_chunk_by_id(ch.id, UNKNOWN_UUID))
      fails("not_found", db.chunks:get_chunk_by_id(ch.id + 1000000, c.id))
      assert.are.equal("mine", assert(db.chunks:get_chunk_by_id(string.format("%d", ch.id), c.id)).content)
      fails("input", db.chunks:get_chunk_by_id(string.format("%d.0", ch.id), c.id))
      fails("input", db.chunks:get_chunk_by_id(ch.id, "nope"))
    end)

    it("get_chunks_by_document orders by chunk_index", function()
      local c = new_collection(ada.id)
      local doc, other = new_document(c.id), new_document(c.id)
      for _, i in ipairs { 2, 0, 3, 1 } do
        assert(db.chunks:create_chunk { collection_id = c.id, document_id = doc.id, chunk_index = i, content = "c" .. i })
      end
      assert(db.chunks:create_chunk { collection_id = c.id, document_id = other.id, chunk_index = 0, content = "other" })
      local rows = assert(db.chunks:get_chunks_by_document(doc.id, c.id))
      assert.are.equal(4, #rows)
      for i = 1, 4 do
        assert.are.equal(i - 1, rows[i].chunk_index)
        assert.are.equal("c" .. (i - 1), rows[i].content)
      end
      rows = assert(db.chunks:get_chunks_by_document(doc.id, c.id, 2))
      assert.are.same({ 0, 1 }, { rows[1].chunk_index, rows[2].chunk_index })
      assert.are.equal(2, #rows)
      assert.are.equal(0, #assert(db.chunks:get_chunks_by_document(UNKNOWN_UUID, c.id)))
      fails("input", db.chunks:get_chunks_by_document(doc.id, c.id, 0))
      fails("input", db.chunks:get_chunks_by_document(doc.id))
    end)

    it("get_chunks_by_collection pages by keyset: every id once, ascending", function()
      local c, other = new_collection(ada.id), new_collection(ada.id)
      local ids = {}
      for i = 1, 25 do
        ids[i] = assert(db.chunks:create_chunk { collection_id = c.id, chunk_index = i, content = "k" .. i }).id
        if i % 5 == 0 then assert(db.chunks:create_chunk { collection_id = other.id, chunk_index = i, content = "o" }) end
      end
      local walked, after, pages = {}, nil, 0
      repeat
        local page = assert(db.chunks:get_chunks_by_collection(c.id, { after_id = after, limit = 10 }))
        pages = pages + 1
        assert.is_true(#page <= 10)
        for _, r in ipairs(page) do
          assert.are.equal(c.id, r.collection_id)
          if #walked > 0 then assert.is_true(r.id > walked[#walked], "ascending") end
          walked[#walked + 1] = r.id
        end
        after = #page > 0 and page[#page].id or after
      until #page < 10
      assert.are.equal(3, pages)
      assert.are.same(ids, walked)
      assert.are.equal(0, #assert(db.chunks:get_chunks_by_collection(c.id, { after_id = ids[25] })))
      assert.are.equal(25, #assert(db.chunks:get_chunks_by_collection(c.id)))
      fails("input", db.chunks:get_chunks_by_collection(c.id, { limit = 0 }))
      fails("input", db.chunks:get_chunks_by_collection(c.id, { after_id = "5.0" }))
      assert.are.equal(20, #assert(db.chunks:get_chunks_by_collection(c.id, { after_id = string.format("%d", ids[5]) })))
      fails("input", db.chunks:get_chunks_by_collection(c.id, { after = 5 }))
    end)

    it("update_chunk_embeddings updates chunks across partitions at once, or nothing", function()
      -- collections in at least three partitions
      local cols, keys, distinct = {}, {}, 0
      while distinct < 3 or #cols < 4 do
        local c = new_collection(ada.id)
        local k = server_key(c.id)
        if not keys[k] then distinct = distinct + 1 end
        keys[k] = true
        cols[#cols + 1] = c
      end
      local chunks = {}
      for i, c in ipairs(cols) do
        for j = 1, 3 do
          chunks[#chunks + 1] = assert(db.chunks:create_chunk { collection_id = c.id, chunk_index = j, content = i .. "/" .. j })
        end
      end
      local function embedded()
        local n = 0
        for _, ch in ipairs(chunks) do
          local r = sql("SELECT embedding_vector_id AS v FROM chunks WHERE id = $1", ch.id)[1]
          if r.v ~= null then n = n + 1 end
        end
        return n
      end

      -- a bad item anywhere: an input error and nothing updated
      local items = {}
      for i, ch in ipairs(chunks) do items[i] = { chunk_id = ch.id, collection_id = ch.collection_id, vector_id = "v" .. ch.id } end
      local bad = {}
      for i, it in ipairs(items) do bad[i] = it end
      bad[#bad + 1] = { chunk_id = chunks[1].id, collection_id = "NOT-A-UUID", vector_id = "v" }
      local err = fails("input", db.chunks:update_chunk_embeddings(bad))
      assert.truthy(err.message:find "item " .. #bad)
      assert.are.equal(0, embedded())
      bad[#bad] = { chunk_id = chunks[1].id, collection_id = chunks[1].collection_id }
      fails("input", db.chunks:update_chunk_embeddings(bad))
      bad[#bad] = "not a table"
      fails("input", db.chunks:update_chunk_embeddings(bad))
      bad[#bad] = { chunk_id = 1.5, collection_id = chunks[1].collection_id, vector_id = "v" }
      fails("input", db.chunks:update_chunk_embeddings(bad))
      assert.are.equal(0, embedded())

      assert.are.equal(#items, db.chunks:update_chunk_embeddings(items))
      assert.are.equal(#chunks, embedded())
      for _, ch in ipairs(chunks) do
        assert.are.equal("v" .. ch.id, assert(db.chunks:get_chunk_by_id(ch.id, ch.collection_id)).embedding_vector_id)
      end
      -- a chunk named with the wrong collection is not touched (and not counted)
      local n = db.chunks:update_chunk_embeddings {
        { chunk_id = chunks[1].id, collection_id = chunks[1].collection_id, vector_id = "again" },
        { chunk_id = chunks[1].id, collection_id = cols[#cols].id ~= chunks[1].collection_id and cols[#cols].id or cols[1].id, vector_id = "wrong" },
      }
      assert.are.equal(1, n)
      assert.are.equal("again", assert(db.chunks:get_chunk_by_id(chunks[1].id, chunks[1].collection_id)).embedding_vector_id)
      assert.are.equal(0, db.chunks:update_chunk_embeddings {})
      -- one chunk twice would leave which vector id wins to chance: refused
      local none, err = db.chunks:update_chunk_embeddings {
        { chunk_id = chunks[2].id, collection_id = chunks[2].collection_id, vector_id = "x" },
        { chunk_id = chunks[2].id, collection_id = chunks[2].collection_id, vector_id = "y" },
      }
      assert.is_nil(none)
      assert.are.equal("input", err.kind)
      assert.truthy(err.message:find("item 2", 1, true), err.message)
      assert.are.equal("v" .. chunks[2].id, assert(db.chunks:get_chunk_by_id(chunks[2].id, chunks[2].collection_id)).embedding_vector_id)
    end)

    it("get_chunks_without_embeddings and get_chunk_statistics", function()
      local c = new_collection(ada.id)
      local d1, d2 = new_document(c.id), new_document(c.id)
      local chunks = {}
      for i = 1, 6 do
        chunks[i] = assert(db.chunks:create_chunk { collection_id = c.id, document_id = i <= 4 and d1.id or d2.id,
          chunk_index = i, content = string.rep("a", i), token_count = i * 10 })
      end
      assert.are.equal(2, db.chunks:update_chunk_embeddings {
        { chunk_id = chunks[2].id, collection_id = c.id, vector_id = "v2" },
        { chunk_id = chunks[5].id, collection_id = c.id, vector_id = "v5" },
      })
      local pending = assert(db.chunks:get_chunks_without_embeddings(c.id))
      assert.are.same({ chunks[1].id, chunks[3].id, chunks[4].id, chunks[6].id },
        { pending[1].id, pending[2].id, pending[3].id, pending[4].id })
      assert.are.equal(4, #pending)
      local two = assert(db.chunks:get_chunks_without_embeddings(c.id, 2))
      assert.are.same({ chunks[1].id, chunks[3].id }, { two[1].id, two[2].id })
      assert.are.equal(2, #two)
      fails("input", db.chunks:get_chunks_without_embeddings(c.id, 0))

      local s = assert(db.chunks:get_chunk_statistics(c.id))
      assert.are.equal(6, s.total_chunks)
      assert.are.equal(2, s.embedded_chunks)
      assert.are.equal(4, s.pending_chunks)
      assert.are.equal(2, s.documents)
      assert.are.equal(210, s.total_tokens)
      assert.are.equal(21, s.total_bytes)
      assert.are.equal(3.5, s.avg_chunk_bytes)
      assert.is_string(s.first_created_at)
      local empty = assert(db.chunks:get_chunk_statistics(new_collection(ada.id).id))
      assert.are.equal(0, empty.total_chunks)
      assert.are.equal(0, empty.total_tokens)
      assert.are.equal(null, empty.avg_chunk_bytes)
      fails("input", db.chunks:get_chunk_statistics "nope")
    end)

    it("delete_chunks_by_document and delete_chunks_by_collection return the counts", function()
      local c, other = new_collection(ada.id), new_collection(ada.id)
      local d1, d2 = new_document(c.id), new_document(c.id)
      for i = 1, 3 do assert(db.chunks:create_chunk { collection_id = c.id, document_id = d1.id, chunk_index = i, content = "a" }) end
      for i = 1, 2 do assert(db.chunks:create_chunk { collection_id = c.id, document_id = d2.id, chunk_index = i, content = "b" }) end
      assert(db.chunks:create_chunk { collection_id = c.id, chunk_index = 9, content = "loose" })
      assert(db.chunks:create_chunk { collection_id = other.id, chunk_index = 1, content = "other" })
      assert.are.equal(0, db.chunks:delete_chunks_by_document(d1.id, other.id))
      assert.are.equal(3, db.chunks:delete_chunks_by_document(d1.id, c.id))
      assert.are.equal(0, db.chunks:delete_chunks_by_document(d1.id, c.id))
      assert.are.equal(3, db.chunks:delete_chunks_by_collection(c.id))
      assert.are.equal(0, db.chunks:delete_chunks_by_collection(c.id))
      assert.are.equal(1, sql("SELECT count(*)::int AS n FROM chunks WHERE collection_id = $1", other.id)[1].n)
      assert(db.documents:get(d1.id), "documents stay")
      fails("input", db.chunks:delete_chunks_by_collection "nope")
      fails("input", db.chunks:delete_chunks_by_document(d1.id))
    end)
  end)

  -- ----------------------------------------------------------- transactions
  describe("bound to a transaction", function()
    it("rolls back what the repository calls did", function()
      local cname = uniq "tx-col"
      local before = sql("SELECT last_login FROM users WHERE id = $1", bob.id)[1].last_login
      local seen_inside
      local ok, err = db.pg:transaction(function(tx)
        local r = semstore.repositories(tx)
        local c = assert(r.collections:create { name = cname, owner_id = bob.id, embedding_model = "m" })
        assert(r.users:update_last_login(bob.id))
        local ch = assert(r.chunks:create_chunk { collection_id = c.id, chunk_index = 0, content = "x" })
        -- a method with a transaction of its own nests as a savepoint
        assert.are.equal(1, r.chunks:update_chunk_embeddings { { chunk_id = ch.id, collection_id = c.id, vector_id = "v" } })
        assert.are.equal("in_transaction", tx:transaction_status())
        seen_inside = assert(r.collections:get_by_name(cname)).id
        -- the pool, on another connection, does not see it yet
        fails("not_found", db.collections:get_by_name(cname))
        return nil, "undo"
      end)
      assert.is_nil(ok)
      assert.are.equal("undo", err)
      assert.is_string(seen_inside)
      fails("not_found", db.collections:get_by_name(cname))
      fails("not_found", db.collections:get_by_uuid(seen_inside))
      assert.are.equal(0, sql("SELECT count(*)::int AS n FROM chunks WHERE collection_id = $1", seen_inside)[1].n)
      assert.are.equal(before, sql("SELECT last_login FROM users WHERE id = $1", bob.id)[1].last_login)
    end)

    it("commits what the calls did when the function succeeds, and a failed call fails it", function()
      local cname = uniq "tx-ok"
      local id = assert(db.pg:transaction(function(tx)
        local r = semstore.repositories(tx)
        local c = assert(r.collections:create { name = cname, owner_id = bob.id, embedding_model = "m" })
        assert(r.collections:update_status(c.id, "processing", "in tx"))
        return c.id
      end))
      local c = assert(db.collections:get_by_uuid(id))
      assert.are.equal("processing", c.status)
      assert.are.equal("in tx", c.status_message)

      local other = uniq "tx-dup"
      local ok, err = db.pg:transaction(function(tx)
        local r = semstore.repositories(tx)
        assert(r.collections:create { name = other, owner_id = bob.id, embedding_model = "m" })
        local _, e = r.collections:create { name = cname, owner_id = bob.id, embedding_model = "m" }
        assert.are.equal("23505", e.code)
        return true
      end)
      assert.is_nil(ok)
      assert.are.equal("25P02", err.code)
      fails("not_found", db.collections:get_by_name(other))
      helpers.assert_all_returned(db)
    end)
  end)

  -- ------------------------------------------------------------ the pool
  it("1,000 calls from 50 coroutines never take more than the pool's connections", function()
    local pool = helpers.connect({ size = 3, max_overflow = 0, timeout = 5 }, { postgres = url })
    local cols = {}
    for i = 1, 5 do cols[i] = new_collection(ada.id).id end
    local held = {}
    local done, errors = 0, {}
    local workers = {}
    for w = 1, 50 do
      workers[w] = coroutine.create(function()
        -- two of the workers keep a connection of their own across yields
        local repos = pool
        local conn
        if w <= 2 then
          conn = assert(pool.pg:acquire())
          held[w] = conn
          repos = semstore.repositories(conn)
        end
        for i = 1, 20 do
          local id = cols[(w + i) % #cols + 1]
          local c, err
          if i % 4 == 0 then
            c, err = repos.collections:get_by_uuid_with_permission_check(id, ada.id)
          else
            c, err = repos.collections:get_by_uuid(id)
          end
          if not c or c.id ~= id then errors[#errors + 1] = tostring(err) end
          done = done + 1
          coroutine.yield()
        end
        if conn then conn:release() end
      end)
    end
    local alive = #workers
    while alive > 0 do
      alive = 0
      for _, co in ipairs(workers) do
        if coroutine.status(co) == "suspended" then
          assert(coroutine.resume(co))
          if coroutine.status(co) ~= "dead" then alive = alive + 1 end
          assert.is_true(pool.pg:stats().in_use <= 3)
        end
      end
    end
    assert.are.same({}, errors)
    assert.are.equal(1000, done)
    local s = pool.pg:stats()
    assert.is_true(s.peak <= 3, "peak " .. s.peak)
    assert.is_true(s.peak >= 1)
    assert.are.equal(3, s.max)
    assert.are.equal(0, s.in_use)
    assert.are.equal(0, s.timeouts)
    assert.is_true(s.acquired >= 1000 - 2 * 20)
    for _, conn in pairs(held) do assert.is_true(conn:released()) end
    helpers.assert_all_returned(pool)
    pool:close()
  end)
  -- -------------------------------------------------- edges found in review
  describe("edges", function()
    it("verify_password refuses a password with a zero byte instead of comparing a prefix", function()
      fails("input", db.users:verify_password("ada", "s3cret-ada\0anything"))
      assert.is_true(db.users:verify_password("ada", "s3cret-ada"))
    end)

    it("chunk_size must be positive, checked before the server's CHECK", function()
      fails("input", db.collections:create { name = uniq "col", owner_id = ada.id, embedding_model = "m", chunk_size = 0 })
      local c = new_collection(ada.id)
      fails("input", db.collections:update(c.id, { chunk_size = 0 }))
    end)

    it("keyset and offset pagination take 64-bit positions", function()
      local c = new_collection(ada.id)
      assert.are.equal(0, #assert(db.chunks:get_chunks_by_collection(c.id, { after_id = 3000000000 })))
      assert.are.equal(0, #assert(db.documents:list_by_collection(c.id, { offset = 3000000000 })))
      local items, total = assert(db.collections:list_for_user(ada.id, { offset = 3000000000 }))
      assert.are.equal(0, #items)
      assert.is_true(total > 0)
    end)

    it("an id beyond 2^53 comes back exact (under LuaJIT its decimal string) and goes back in as it came", function()
      local seq = sql("SELECT pg_get_serial_sequence('users', 'id') AS s")[1].s
      local last = sql("SELECT last_value AS v FROM " .. seq)[1].v
      sql("SELECT setval($1, 9007199254740992)", seq)
      local ok, id = pcall(plain_user)
      sql("SELECT setval($1, $2)", seq, last)
      assert(ok, id)
      assert.are.equal(helpers.int8 "9007199254740993", id)
      assert.are.equal(helpers.luajit and "string" or "number", type(id))
      assert.are.equal(id, assert(db.users:get(id)).id)
      assert.are.equal(id, assert(db.users:get "9007199254740993").id)
      fails("not_found", db.users:get "9007199254740994")
      local c = new_collection(id)
      assert.are.equal(id, c.owner_id)
      local items, total = assert(db.collections:list_for_user(id))
      assert.are.equal(1, total)
      assert.are.equal(c.id, items[1].id)
      assert(db.collections:delete(c.id, id))
      sql("DELETE FROM users WHERE id = $1", id)
    end)

    it("update_chunk_embeddings refuses an item field it does not know", function()
      local c = new_collection(ada.id)
      local ch = assert(db.chunks:create_chunk { collection_id = c.id, chunk_index = 0, content = "x" })
      local err = fails("input", db.chunks:update_chunk_embeddings {
        { chunk_id = ch.id, collection_id = c.id, vector_id = "v", typo = 1 } })
      assert.truthy(err.message:find("typo", 1, true), err.message)
      assert.are.equal(null, assert(db.chunks:get_chunk_by_id(ch.id, c.id)).embedding_vector_id)
    end)

    it("update_chunk_embeddings: an item's metamethod cannot release the connection it runs on", function()
      local c = new_collection(ada.id)
      local ch = assert(db.chunks:create_chunk { collection_id = c.id, chunk_index = 0, content = "x" })
      local conn = assert(db.pg:acquire())
      local values = { chunk_id = ch.id, collection_id = c.id, vector_id = "v" }
      local item = setmetatable({}, { __index = function(_, k) conn:release() return values[k] end })
      local ok, err = pcall(semstore.repositories(conn).chunks.update_chunk_embeddings, semstore.repositories(conn).chunks, { item })
      assert.is_false(ok)
      assert.truthy(tostring(err):find("in use by a repository call", 1, true), tostring(err))
      assert.is_false(conn:released())
      assert.are.equal("idle", conn:transaction_status())
      conn:release()
      assert.are.equal(null, assert(db.chunks:get_chunk_by_id(ch.id, c.id)).embedding_vector_id)
    end)

    it("in a migration, the repositories run inside the migration's transaction", function()
      local dir = helpers.tmpdir()
      helpers.write_file(dir .. "/0001_seed_user.lua", [[
return { up = function(db)
  assert(db.users:create { username = "migrated", email = "migrated@example.org", password = "pw" })
  error("and then the migration fails")
end }]])
      local res, err = migrate.up(db, { dir = dir })
      helpers.rmdir(dir)
      assert.is_nil(res)
      assert.truthy(tostring(err):find("and then the migration fails", 1, true), tostring(err))
      fails("not_found", db.users:get_by_username "migrated")
    end)
  end)
end)
