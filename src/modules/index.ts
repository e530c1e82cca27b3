import { apiKeysModule } from './api-keys/index.ts'
import { attachmentsModule } from './attachments/index.ts'
import { auditModule } from './audit/index.ts'
import { blockedAddressesModule } from './blocked-addresses/index.ts'
import { connectionTestsModule } from './connection-tests/index.ts'
import { connectorsModule } from './connectors/index.ts'
import { emailRoutesModule } from './email-routes/index.ts'
import { eventsModule } from './events/index.ts'
import { inboundModule } from './inbound/index.ts'
import { integrationsModule } from './integrations/index.ts'
import { mailboxSyncModule } from './mailbox-sync/index.ts'
import type { AppModule } from './module.ts'
import { outboundModule } from './outbound/index.ts'
import { webhooksModule } from './webhooks/index.ts'

/** Every domain module, in the order their routes, schemas and tags appear in the API. */
export const appModules: AppModule[] = [
  apiKeysModule,
  auditModule,
  connectionTestsModule,
  integrationsModule,
  connectorsModule,
  emailRoutesModule,
  blockedAddressesModule,
  outboundModule,
  inboundModule,
  mailboxSyncModule,
  eventsModule,
  webhooksModule,
  attachmentsModule,
]
