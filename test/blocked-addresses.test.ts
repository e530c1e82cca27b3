import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { schema } from '../src/database/index.ts'
import { newId } from '../src/lib/ids.ts'
import { BlockedAddressRepository } from '../src/modules/blocked-addresses/repository.ts'
import { bearer, buildTestApp, graphql, type TestApp } from './support/app.ts'

let t: TestApp

beforeAll(async () => {
  t = await buildTestApp()
})
afterAll(() => t.close())

type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE'

async function call(method: Method, url: string, payload?: unknown, key = t.adminKey) {
  const response = await t.app.inject({ method, url, headers: bearer(key), payload: payload as object })
  return { status: response.statusCode, headers: response.headers, body: response.body ? response.json() : null }
}

async function block(pattern: string, action = 'discard', note?: string) {
  const response = await call('POST', '/v1/blocked-addresses', { pattern, action, ...(note !== undefined ? { note } : {}) })
  expect(response.status, JSON.stringify(response.body)).toBe(201)
  return response.body as { id: string; pattern: string; action: string; note: string | null; createdAt: string; updatedAt: string }
}

async function auditOf(id: string) {
  const page = (await call('GET', `/v1/audit?resourceType=blocked_address&resourceId=${id}`)).body
  return page.items as { action: string; resourceType: string; actorKeyId: string | null; diff: { changes: Record<string, unknown> } }[]
}

describe('REST', () => {
  it('creates a block with the pattern in lower case, a Location, and an audit entry', async () => {
    const response = await call('POST', '/v1/blocked-addresses', { pattern: 'Spammer@Example.COM', action: 'spam', note: 'sends offers' })
    expect(response.status).toBe(201)
    expect(response.body).toEqual({
      id: expect.any(String),
      pattern: 'spammer@example.com',
      action: 'spam',
      note: 'sends offers',
      createdAt: expect.any(String),
      updatedAt: expect.any(String),
    })
    expect(response.headers.location).toBe(`/v1/blocked-addresses/${response.body.id}`)
    expect((await call('GET', response.headers.location as string)).body).toEqual(response.body)

    const admin = await t.app.services.apiKeys.authenticate(`Bearer ${t.adminKey}`)
    const [created] = await auditOf(response.body.id)
    expect(created).toMatchObject({ action: 'create', resourceType: 'blocked_address', actorKeyId: admin.keyId })
    expect(created!.diff.changes).toMatchObject({ pattern: { to: 'spammer@example.com' }, action: { to: 'spam' }, note: { to: 'sends offers' } })

    const domain = await block('*@Bulk-Mail.example', 'no_automated_replies')
    expect(domain).toMatchObject({ pattern: '*@bulk-mail.example', action: 'no_automated_replies', note: null })
  })

  it('refuses a pattern that is already blocked, in any case, with 409 naming the holder', async () => {
    const first = await block('dup@twice.example')
    for (const pattern of ['dup@twice.example', 'DUP@Twice.Example']) {
      const again = await call('POST', '/v1/blocked-addresses', { pattern, action: 'spam' })
      expect(again.status).toBe(409)
      expect(again.headers['content-type']).toMatch(/^application\/problem\+json/)
      expect(again.body).toMatchObject({ code: 'BLOCKED_ADDRESS_EXISTS', existingId: first.id, field: 'pattern', detail: expect.stringContaining(first.id) })
    }
    // The refused creates left the block as it was, and recorded nothing.
    expect((await call('GET', `/v1/blocked-addresses/${first.id}`)).body.action).toBe('discard')
    expect((await call('GET', '/v1/blocked-addresses?q=twice.example')).body.items).toHaveLength(1)
    expect((await auditOf(first.id)).map((entry) => entry.action)).toEqual(['create'])
  })

  it('of creates of one pattern at once, one stores it and the others get 409', async () => {
    const two = await Promise.all(
      ['race@same.example', 'Race@Same.example'].map((pattern) => call('POST', '/v1/blocked-addresses', { pattern, action: 'discard' })),
    )
    expect(two.map((response) => response.status).sort()).toEqual([201, 409])
    const created = two.find((response) => response.status === 201)!.body
    expect(two.find((response) => response.status === 409)!.body).toMatchObject({ code: 'BLOCKED_ADDRESS_EXISTS', existingId: created.id })

    const many = await Promise.all(Array.from({ length: 6 }, () => call('POST', '/v1/blocked-addresses', { pattern: '*@crowd.example', action: 'spam' })))
    expect(many.map((response) => response.status).sort()).toEqual([201, 409, 409, 409, 409, 409])
    const winner = many.find((response) => response.status === 201)!.body
    for (const response of many.filter((response) => response.status === 409)) expect(response.body.existingId).toBe(winner.id)
    expect((await auditOf(winner.id)).map((entry) => entry.action)).toEqual(['create'])
    expect((await call('GET', '/v1/blocked-addresses?q=race@same.example')).body.items.map((item: { id: string }) => item.id)).toEqual([created.id])
  })

  it('refuses invalid patterns with a 400 naming the field', async () => {
    const invalid = [
      'no-at-sign.example',
      '*@',
      '*@example',
      'a@b',
      'with space@example.com',
      ' lead@example.com',
      'trail@example.com ',
      'ctl\u0001@example.com',
      'nul\u0000@example.com',
      'line\nbreak@example.com',
      'bidi\u202E@example.com',
      '*x@example.com',
      'x*@example.com',
      '**@example.com',
      'a@*.example.com',
      'two@at@example.com',
      '@example.com',
      '',
      `${'a'.repeat(320)}@example.com`,
    ]
    const total = async () => (await call('GET', '/v1/blocked-addresses?limit=200')).body.items.length
    const before = await total()
    for (const pattern of invalid) {
      const response = await call('POST', '/v1/blocked-addresses', { pattern, action: 'discard' })
      expect(response.status, JSON.stringify(pattern)).toBe(400)
      expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
      expect(response.body.code).toBe('VALIDATION_FAILED')
      expect(response.body.errors.map((error: { field: string }) => error.field), JSON.stringify(pattern)).toContain('pattern')
    }
    const message = (await call('POST', '/v1/blocked-addresses', { pattern: '*x@example.com', action: 'discard' })).body.errors[0].message
    expect(message).toContain('*@domain')
    expect(await total()).toBe(before)
  })

  it('refuses unknown actions, unknown fields and missing fields', async () => {
    const cases: [unknown, string][] = [
      [{ pattern: 'a@action.example', action: 'bounce' }, 'action'],
      [{ pattern: 'a@action.example', action: 'DISCARD' }, 'action'],
      [{ pattern: 'a@action.example' }, 'action'],
      [{ action: 'spam' }, 'pattern'],
      [{ pattern: 'a@action.example', action: 'spam', enabled: true }, 'enabled'],
      [{ pattern: 'a@action.example', action: 'spam', note: 'x\u0000y' }, 'note'],
    ]
    for (const [payload, field] of cases) {
      const response = await call('POST', '/v1/blocked-addresses', payload)
      expect(response.status, JSON.stringify(payload)).toBe(400)
      expect(response.body.code).toBe('VALIDATION_FAILED')
      expect(response.body.errors.map((error: { field: string }) => error.field), JSON.stringify(payload)).toContain(field)
    }
    expect((await call('GET', '/v1/blocked-addresses?action=bounce')).body.errors[0].field).toBe('query.action')
  })

  it('lists newest first, filtered by action and by a piece of the pattern, page by page', async () => {
    const a = await block('one@list.example', 'spam')
    const b = await block('*@list.example', 'discard')
    const c = await block('two@list.example', 'spam')
    const all = (await call('GET', '/v1/blocked-addresses?q=LIST.example')).body
    expect(all.items.map((item: { id: string }) => item.id)).toEqual([c.id, b.id, a.id])
    expect(all.nextCursor).toBeNull()

    const spam = (await call('GET', '/v1/blocked-addresses?q=list.example&action=spam')).body
    expect(spam.items.map((item: { id: string }) => item.id)).toEqual([c.id, a.id])
    // q is plain text, not a LIKE pattern.
    expect((await call('GET', '/v1/blocked-addresses?q=%25@list')).body.items).toEqual([])
    expect((await call('GET', '/v1/blocked-addresses?q=*@list')).body.items.map((item: { id: string }) => item.id)).toEqual([b.id])

    const first = (await call('GET', '/v1/blocked-addresses?q=list.example&limit=2')).body
    expect(first.items.map((item: { id: string }) => item.id)).toEqual([c.id, b.id])
    expect(first.nextCursor).toEqual(expect.any(String))
    const second = (await call('GET', `/v1/blocked-addresses?q=list.example&limit=2&cursor=${first.nextCursor}`)).body
    expect(second.items.map((item: { id: string }) => item.id)).toEqual([a.id])
    expect(second.nextCursor).toBeNull()
    expect((await call('GET', '/v1/blocked-addresses?cursor=bogus')).status).toBe(400)
  })

  it('gets one block, and 404 for an unknown id', async () => {
    const created = await block('get@one.example')
    expect((await call('GET', `/v1/blocked-addresses/${created.id}`)).body).toEqual(created)
    const missing = await call('GET', `/v1/blocked-addresses/${newId()}`)
    expect(missing.status).toBe(404)
    expect(missing.body.code).toBe('NOT_FOUND')
    expect((await call('GET', '/v1/blocked-addresses/not-a-uuid')).status).toBe(400)
  })

  it('changes the action, the pattern (lower case) and the note (null clears it), audited', async () => {
    const created = await block('patch@me.example', 'discard', 'first note')
    const changed = await call('PATCH', `/v1/blocked-addresses/${created.id}`, { action: 'no_automated_replies', pattern: 'Patched@Me.example' })
    expect(changed.status).toBe(200)
    expect(changed.body).toMatchObject({ id: created.id, action: 'no_automated_replies', pattern: 'patched@me.example', note: 'first note' })
    expect(Date.parse(changed.body.updatedAt)).toBeGreaterThanOrEqual(Date.parse(created.updatedAt))

    const cleared = await call('PATCH', `/v1/blocked-addresses/${created.id}`, { note: null })
    expect(cleared.body).toMatchObject({ note: null, action: 'no_automated_replies' })

    const entries = await auditOf(created.id)
    expect(entries.map((entry) => entry.action)).toEqual(['update', 'update', 'create'])
    expect(entries[1]!.diff.changes).toEqual({
      action: { from: 'discard', to: 'no_automated_replies' },
      pattern: { from: 'patch@me.example', to: 'patched@me.example' },
    })
    expect(entries[0]!.diff.changes).toEqual({ note: { from: 'first note', to: null } })

    expect((await call('PATCH', `/v1/blocked-addresses/${created.id}`, {})).status).toBe(400)
    expect((await call('PATCH', `/v1/blocked-addresses/${created.id}`, { pattern: '*x@me.example' })).body.errors[0].field).toBe('pattern')
    expect((await call('PATCH', `/v1/blocked-addresses/${newId()}`, { action: 'spam' })).status).toBe(404)
    // Its own pattern again is no conflict.
    expect((await call('PATCH', `/v1/blocked-addresses/${created.id}`, { pattern: 'PATCHED@me.example' })).status).toBe(200)
  })

  it('refuses to move a block onto a pattern another block holds', async () => {
    const holder = await block('holder@move.example')
    const mover = await block('mover@move.example')
    const response = await call('PATCH', `/v1/blocked-addresses/${mover.id}`, { pattern: 'Holder@Move.example', action: 'spam' })
    expect(response.status).toBe(409)
    expect(response.body).toMatchObject({ code: 'BLOCKED_ADDRESS_EXISTS', existingId: holder.id })
    expect((await call('GET', `/v1/blocked-addresses/${mover.id}`)).body).toEqual(mover)
    expect((await auditOf(mover.id)).map((entry) => entry.action)).toEqual(['create'])
  })

  it('deletes a block (204), audited; a second delete is 404', async () => {
    const created = await block('delete@me.example', 'spam')
    const deleted = await t.app.inject({ method: 'DELETE', url: `/v1/blocked-addresses/${created.id}`, headers: bearer(t.adminKey) })
    expect(deleted.statusCode).toBe(204)
    expect(deleted.body).toBe('')
    expect((await call('GET', `/v1/blocked-addresses/${created.id}`)).status).toBe(404)
    expect((await call('DELETE', `/v1/blocked-addresses/${created.id}`)).status).toBe(404)
    const [entry] = await auditOf(created.id)
    expect(entry).toMatchObject({ action: 'delete', diff: { changes: { pattern: { from: 'delete@me.example' }, action: { from: 'spam' } } } })
    // The pattern is free again.
    expect((await call('POST', '/v1/blocked-addresses', { pattern: 'delete@me.example', action: 'discard' })).status).toBe(201)
  })

  it('needs config:read to read and config:write to change', async () => {
    const reader = await t.keyWith('config:read')
    const writer = await t.keyWith('config:write')
    const sender = await t.keyWith('mail:send')
    const created = await block('scopes@keys.example')

    expect((await call('GET', '/v1/blocked-addresses', undefined, reader)).status).toBe(200)
    expect((await call('GET', `/v1/blocked-addresses/${created.id}`, undefined, reader)).status).toBe(200)
    const refused = await call('POST', '/v1/blocked-addresses', { pattern: 'reader@keys.example', action: 'spam' }, reader)
    expect(refused.status).toBe(403)
    expect(refused.body).toMatchObject({ code: 'FORBIDDEN', missingScopes: ['config:write'] })
    expect((await call('PATCH', `/v1/blocked-addresses/${created.id}`, { action: 'spam' }, reader)).status).toBe(403)
    expect((await call('DELETE', `/v1/blocked-addresses/${created.id}`, undefined, reader)).status).toBe(403)
    expect((await call('GET', '/v1/blocked-addresses', undefined, sender)).status).toBe(403)
    expect((await t.app.inject({ method: 'GET', url: '/v1/blocked-addresses' })).statusCode).toBe(401)

    expect((await call('POST', '/v1/blocked-addresses', { pattern: 'writer@keys.example', action: 'spam' }, writer)).status).toBe(201)
    expect((await call('GET', '/v1/blocked-addresses?q=keys.example', undefined, writer)).body.items).toHaveLength(2)
  })
})

describe('GraphQL', () => {
  const fields = 'id pattern action note createdAt updatedAt'

  it('creates, lists, changes and deletes blocks, with the action as an enum', async () => {
    const created = await graphql(
      t.app,
      t.adminKey,
      `mutation($input: CreateBlockedAddressInput!) { createBlockedAddress(input: $input) { ${fields} } }`,
      { input: { pattern: 'GQL@Graph.example', action: 'NO_AUTOMATED_REPLIES', note: 'via graphql' } },
    )
    expect(created.body.errors).toBeUndefined()
    const block = created.body.data.createBlockedAddress
    expect(block).toMatchObject({ pattern: 'gql@graph.example', action: 'NO_AUTOMATED_REPLIES', note: 'via graphql' })
    expect((await call('GET', `/v1/blocked-addresses/${block.id}`)).body.action).toBe('no_automated_replies')
    await graphql(t.app, t.adminKey, `mutation { createBlockedAddress(input: { pattern: "*@graph.example", action: SPAM }) { id } }`)

    const list = await graphql(t.app, t.adminKey, `query($q: String, $action: BlockAction) { blockedAddresses(q: $q, action: $action, limit: 10) { items { ${fields} } nextCursor } }`, {
      q: 'graph.example',
      action: 'NO_AUTOMATED_REPLIES',
    })
    expect(list.body.errors).toBeUndefined()
    expect(list.body.data.blockedAddresses).toEqual({ items: [block], nextCursor: null })
    const both = await graphql(t.app, t.adminKey, `{ blockedAddresses(q: "GRAPH.example") { items { pattern action } } }`)
    expect(both.body.data.blockedAddresses.items).toEqual([
      { pattern: '*@graph.example', action: 'SPAM' },
      { pattern: 'gql@graph.example', action: 'NO_AUTOMATED_REPLIES' },
    ])
    expect((await graphql(t.app, t.adminKey, `query($id: ID!) { blockedAddress(id: $id) { ${fields} } }`, { id: block.id })).body.data.blockedAddress).toEqual(block)

    const updated = await graphql(t.app, t.adminKey, `mutation($id: ID!, $input: UpdateBlockedAddressInput!) { updateBlockedAddress(id: $id, input: $input) { pattern action note } }`, {
      id: block.id,
      input: { action: 'DISCARD', note: null },
    })
    expect(updated.body.errors).toBeUndefined()
    expect(updated.body.data.updateBlockedAddress).toEqual({ pattern: 'gql@graph.example', action: 'DISCARD', note: null })
    const kept = await graphql(t.app, t.adminKey, `mutation($id: ID!) { updateBlockedAddress(id: $id, input: { note: "again" }) { note } }`, { id: block.id })
    expect(kept.body.data.updateBlockedAddress.note).toBe('again')
    const untouched = await graphql(t.app, t.adminKey, `mutation($id: ID!) { updateBlockedAddress(id: $id, input: { action: SPAM }) { action note } }`, { id: block.id })
    expect(untouched.body.data.updateBlockedAddress).toEqual({ action: 'SPAM', note: 'again' })

    const deleted = await graphql(t.app, t.adminKey, `mutation($id: ID!) { deleteBlockedAddress(id: $id) }`, { id: block.id })
    expect(deleted.body.data.deleteBlockedAddress).toBe(true)
    const gone = await graphql(t.app, t.adminKey, `query($id: ID!) { blockedAddress(id: $id) { id } }`, { id: block.id })
    expect(gone.body.errors![0].extensions.code).toBe('NOT_FOUND')
    expect((await auditOf(block.id)).map((entry) => entry.action)).toEqual(['delete', 'update', 'update', 'update', 'create'])
  })

  it('validates with the REST rules and reports conflicts and scopes by code', async () => {
    for (const pattern of ['nope', '*@', 'sp ace@graph.example', 'ctl\u0007@graph.example', '*x@graph.example']) {
      const bad = await graphql(t.app, t.adminKey, `mutation($input: CreateBlockedAddressInput!) { createBlockedAddress(input: $input) { id } }`, {
        input: { pattern, action: 'SPAM' },
      })
      expect(bad.status, JSON.stringify(pattern)).toBe(400)
      expect(bad.body.errors![0].extensions.code).toBe('VALIDATION_FAILED')
      expect(bad.body.errors![0].extensions.errors.map((error: { field: string }) => error.field)).toEqual(['pattern'])
    }
    const emptyPatch = await graphql(t.app, t.adminKey, `mutation($id: ID!) { updateBlockedAddress(id: $id, input: {}) { id } }`, { id: newId() })
    expect(emptyPatch.body.errors![0].extensions.code).toBe('VALIDATION_FAILED')

    const first = await block('twice@gql.example')
    const dup = await graphql(t.app, t.adminKey, `mutation { createBlockedAddress(input: { pattern: "Twice@GQL.example", action: DISCARD }) { id } }`)
    expect(dup.status).toBe(409)
    expect(dup.body.errors![0].extensions).toMatchObject({ code: 'BLOCKED_ADDRESS_EXISTS', existingId: first.id })

    const reader = await t.keyWith('config:read')
    expect((await graphql(t.app, reader, `{ blockedAddresses { items { id } } }`)).body.errors).toBeUndefined()
    const refused = await graphql(t.app, reader, `mutation { createBlockedAddress(input: { pattern: "r@gql.example", action: SPAM }) { id } }`)
    expect(refused.body.errors![0].extensions.code).toBe('FORBIDDEN')
  })
})

describe('match(), the ingest pipeline\'s port', () => {
  beforeAll(async () => {
    await block('ceo@match.example', 'no_automated_replies')
    await block('*@match.example', 'discard')
    await block('*@spam-only.example', 'spam')
  })

  it('the exact address wins over its domain; both compared lower case', async () => {
    const blocked = t.app.services.blockedAddresses
    const db = t.app.database.db
    expect(await blocked.match(db, 'ceo@match.example')).toEqual({ id: expect.any(String), pattern: 'ceo@match.example', action: 'no_automated_replies' })
    expect(await blocked.match(db, 'CEO@Match.EXAMPLE')).toMatchObject({ pattern: 'ceo@match.example', action: 'no_automated_replies' })
    expect(await blocked.match(db, 'anyone@match.example')).toMatchObject({ pattern: '*@match.example', action: 'discard' })
    expect(await blocked.match(db, 'Anyone@MATCH.example')).toMatchObject({ pattern: '*@match.example' })
    expect(await blocked.match(db, 'x@spam-only.example')).toMatchObject({ pattern: '*@spam-only.example', action: 'spam' })
    // The domain is what follows the last @.
    expect(await blocked.match(db, '"odd@name"@match.example')).toMatchObject({ pattern: '*@match.example' })
  })

  it('answers undefined when nothing matches', async () => {
    const db = t.app.database.db
    const blocked = t.app.services.blockedAddresses
    expect(await blocked.match(db, 'someone@elsewhere.example')).toBeUndefined()
    expect(await blocked.match(db, 'ceo@sub.match.example')).toBeUndefined()
    expect(await blocked.match(db, 'ceo@match.example.org')).toBeUndefined()
    expect(await blocked.match(db, 'no-at-sign')).toBeUndefined()
    expect(await blocked.match(db, 'ceo@')).toBeUndefined()
    expect(await blocked.match(db, '')).toBeUndefined()
  })

  it('on the app\'s db it runs the prepared statement; inside a transaction, a query of the transaction', async () => {
    const db = t.app.database.db
    const blocked = t.app.services.blockedAddresses
    const unprepared = vi.spyOn(BlockedAddressRepository.prototype, 'match')
    expect(await blocked.match(db, 'ceo@match.example')).toMatchObject({ pattern: 'ceo@match.example' })
    expect(unprepared).not.toHaveBeenCalled()
    const rollback = new Error('rollback')
    await expect(
      db.transaction(async (tx) => {
        await tx.insert(schema.blockedAddresses).values({ id: newId(), pattern: 'cfo@match.example', action: 'spam' })
        expect(await blocked.match(tx, 'CFO@match.example')).toMatchObject({ pattern: 'cfo@match.example', action: 'spam' })
        expect(await blocked.match(tx, 'ceo@match.example')).toMatchObject({ pattern: 'ceo@match.example' })
        expect(await blocked.match(tx, 'nobody@nowhere.example')).toBeUndefined()
        throw rollback
      }),
    ).rejects.toBe(rollback)
    expect(unprepared).toHaveBeenCalledTimes(3)
    unprepared.mockRestore()
    expect(await blocked.match(db, 'cfo@match.example')).toMatchObject({ pattern: '*@match.example' })
  })

  it('follows changes made through the API', async () => {
    const db = t.app.database.db
    const blocked = t.app.services.blockedAddresses
    const created = await block('late@follow.example', 'spam')
    expect(await blocked.match(db, 'late@follow.example')).toMatchObject({ id: created.id, action: 'spam' })
    await call('PATCH', `/v1/blocked-addresses/${created.id}`, { action: 'discard' })
    expect(await blocked.match(db, 'late@follow.example')).toMatchObject({ id: created.id, action: 'discard' })
    await call('DELETE', `/v1/blocked-addresses/${created.id}`)
    expect(await blocked.match(db, 'late@follow.example')).toBeUndefined()
  })
})
