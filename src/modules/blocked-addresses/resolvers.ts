import type { IResolvers, MercuriusContext } from 'mercurius'
import { BLOCK_ACTIONS, type BlockAction } from '../../../db/schema.ts'
import { ValidationError } from '../../lib/errors.ts'
import { withoutNulls } from '../../lib/graphql.ts'
import { IdParams } from '../../lib/schemas.ts'
import { CreateBlockedAddressBody, ListBlockedAddressesQuery, UpdateBlockedAddressBody, type BlockedAddress } from './schemas.ts'

/** GraphQL enum value (NO_AUTOMATED_REPLIES) <-> action (no_automated_replies). */
export function actionFromEnum(value: string): BlockAction {
  const action = value.toLowerCase() as BlockAction
  if (!BLOCK_ACTIONS.includes(action)) throw new ValidationError([{ field: 'action', message: `unknown action ${value}` }])
  return action
}

export function actionToEnum(action: BlockAction): string {
  return action.toUpperCase()
}

function present(blocked: BlockedAddress) {
  return { ...blocked, action: actionToEnum(blocked.action) }
}

/** The arguments as REST takes them: absent for null, the action in lower case. */
function withAction(args: Record<string, unknown>): Record<string, unknown> {
  return typeof args.action === 'string' ? { ...args, action: actionFromEnum(args.action) } : args
}

export const blockedAddressResolvers: IResolvers<unknown, MercuriusContext> = {
  Query: {
    blockedAddresses: async (_root, args, context) => {
      const query = context.app.inputs.validate(ListBlockedAddressesQuery, withAction(withoutNulls(args)))
      const page = await context.app.services.blockedAddresses.list(query)
      return { ...page, items: page.items.map(present) }
    },
    blockedAddress: async (_root, args, context) =>
      present(await context.app.services.blockedAddresses.get(context.app.inputs.validate(IdParams, args).id)),
  },
  Mutation: {
    createBlockedAddress: async (_root, { input }, context) =>
      present(
        await context.app.services.blockedAddresses.create(
          context.reply.request.actor(),
          context.app.inputs.validate(CreateBlockedAddressBody, withAction(withoutNulls(input))),
        ),
      ),
    updateBlockedAddress: async (_root, { id, input }, context) => {
      // `note: null` clears the note; any other null means "not given".
      const given = withAction(withoutNulls(input))
      const body = 'note' in input && input.note === null ? { ...given, note: null } : given
      return present(
        await context.app.services.blockedAddresses.update(
          context.reply.request.actor(),
          context.app.inputs.validate(IdParams, { id }).id,
          context.app.inputs.validate(UpdateBlockedAddressBody, body),
        ),
      )
    },
    deleteBlockedAddress: async (_root, args, context) => {
      await context.app.services.blockedAddresses.delete(context.reply.request.actor(), context.app.inputs.validate(IdParams, args).id)
      return true
    },
  },
}
