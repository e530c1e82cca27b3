import type { IResolvers, MercuriusContext } from 'mercurius'
import { withoutNulls } from '../../lib/graphql.ts'
import { EventFeedQuery } from './schemas.ts'

export const eventResolvers: IResolvers<unknown, MercuriusContext> = {
  Query: {
    events: async (_root, args, context) => context.app.services.eventFeed.read(context.app.inputs.validate(EventFeedQuery, withoutNulls(args))),
  },
}
