import { v7 as uuidv7 } from 'uuid'

/** Time-ordered ids: sorting by id sorts by creation, which keyset pagination relies on. */
export function newId(): string {
  return uuidv7()
}
