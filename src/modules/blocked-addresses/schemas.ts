import { Type, type Static } from '@sinclair/typebox'
import { BLOCK_ACTIONS } from '../../../db/schema.ts'
import { DateTime, Page, PageQuery, Uuid } from '../../lib/schemas.ts'
import { MultilineText, NOT_TEXT, patternMessages, Text } from '../../lib/text.ts'

/** A run of address characters: no space, @, * or control character. */
const ADDRESS_PART = `[^\\s@*${NOT_TEXT}]+`

/** An address, or `*@domain`: one @, a dotted domain, a `*` only as the whole local part. */
const BLOCK_PATTERN = `^(\\*|${ADDRESS_PART})@${ADDRESS_PART}\\.${ADDRESS_PART}$`
patternMessages.set(
  BLOCK_PATTERN,
  'must be an address (name@example.com) or *@domain for everyone at a domain (*@example.com): one @, a dotted domain, no spaces or control characters, and * only as the whole part before the @',
)

export const BlockPattern = Type.String({
  maxLength: 320,
  pattern: BLOCK_PATTERN,
  description: 'A sender address, or *@domain for everyone at a domain. Stored lower case.',
})

export const BlockActionSchema = Type.Union(
  BLOCK_ACTIONS.map((action) => Type.Literal(action)),
  {
    description:
      'discard: the mail is taken in and dropped; no_automated_replies: processed, but never answered automatically; spam: kept, marked as spam',
  },
)

const Note = MultilineText({ maxLength: 2000, description: 'Why the sender is blocked; for people' })

export const CreateBlockedAddressBody = Type.Object(
  {
    pattern: BlockPattern,
    action: BlockActionSchema,
    note: Type.Optional(Note),
  },
  { additionalProperties: false },
)
export type CreateBlockedAddressInput = Static<typeof CreateBlockedAddressBody>

export const UpdateBlockedAddressBody = Type.Object(
  {
    pattern: Type.Optional(BlockPattern),
    action: Type.Optional(BlockActionSchema),
    note: Type.Optional(Type.Union([Note, Type.Null()], { description: 'null clears the note' })),
  },
  { additionalProperties: false, minProperties: 1 },
)
export type UpdateBlockedAddressInput = Static<typeof UpdateBlockedAddressBody>

export const BlockedAddressSchema = Type.Object(
  {
    id: Uuid,
    pattern: Type.String({ description: 'Lower case: an address, or *@domain' }),
    action: BlockActionSchema,
    note: Type.Union([Type.String(), Type.Null()]),
    createdAt: DateTime,
    updatedAt: DateTime,
  },
  {
    $id: 'BlockedAddress',
    description: 'A sender whose mail is discarded, marked spam, or never answered automatically. An exact address wins over its *@domain.',
  },
)
export type BlockedAddress = Static<typeof BlockedAddressSchema>

export const ListBlockedAddressesQuery = Type.Object(
  {
    action: Type.Optional(BlockActionSchema),
    q: Type.Optional(Text({ minLength: 1, maxLength: 320, description: 'Only patterns containing this text (any case)' })),
    ...PageQuery,
  },
  { additionalProperties: false },
)
export type ListBlockedAddressesInput = Static<typeof ListBlockedAddressesQuery>

export const BlockedAddressPage = Page(Type.Unsafe<BlockedAddress>({ $ref: 'BlockedAddress#' }), 'A page of blocked addresses, newest first')
