import type { IResolvers, MercuriusContext } from 'mercurius'
import { withoutNulls } from '../../lib/graphql.ts'
import { ListAuditQuery } from './schemas.ts'

export const auditResolvers: IResolvers<unknown, MercuriusContext> = {
  Query: {
    auditEvents: async (_root, args, context) => {
      const query = context.app.inputs.validate(
        ListAuditQuery,
        withoutNulls({ ...(args.filter ?? {}), limit: args.limit, cursor: args.cursor }),
        'args',
      )
      return context.app.services.audit.list(query)
    },
  },
}
