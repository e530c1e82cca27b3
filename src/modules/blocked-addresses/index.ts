import type { AppModule } from '../module.ts'
import { blockedAddressResolvers } from './resolvers.ts'
import { blockedAddressRoutes } from './routes.ts'
import { BlockedAddressSchema } from './schemas.ts'

export const blockedAddressesModule: AppModule = {
  name: 'blocked-addresses',
  tag: {
    name: 'Blocked addresses',
    description:
      'Senders whose incoming mail is discarded, marked spam, or never answered automatically: an address, or *@domain for everyone at a domain; an exact address wins over its domain',
  },
  schemas: [BlockedAddressSchema],
  routes: blockedAddressRoutes,
  resolvers: blockedAddressResolvers,
}
