import type { IResolvers, MercuriusContext } from 'mercurius'
import { IdParams } from '../../lib/schemas.ts'

export const mailboxSyncResolvers: IResolvers<unknown, MercuriusContext> = {
  Query: {
    connectorSync: async (_root, args, context) => context.app.services.mailboxSync.state(context.app.inputs.validate(IdParams, args).id),
  },
  Mutation: {
    syncConnector: async (_root, args, context) => context.app.services.mailboxSync.syncNow(context.app.inputs.validate(IdParams, args).id),
  },
}
