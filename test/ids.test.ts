import { validate, version } from 'uuid'
import { describe, expect, it } from 'vitest'
import { newId } from '../src/lib/ids.ts'

describe('newId', () => {
  it('makes valid, unique UUIDv7s that sort in the order they were made, even many within one millisecond', () => {
    const ids = Array.from({ length: 20_000 }, () => newId())
    expect(ids.every((id) => validate(id) && version(id) === 7)).toBe(true)
    expect(new Set(ids).size).toBe(ids.length)
    expect([...ids].sort()).toEqual(ids)
  })
})
