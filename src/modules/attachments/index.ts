import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { AppModule } from '../module.ts'
import { STAGED_UPLOAD_GRACE_MS } from './store.ts'

/** Staged content no owner took (a refused or cut-off upload) goes after a grace period. */
async function attachmentHousekeeping(app: FastifyInstance) {
  const { attachments } = app.services
  app.housekeeping.add('blobs', (now) => attachments.removeUnreferenced(app.database.db, new Date(now.getTime() - STAGED_UPLOAD_GRACE_MS)))
}

export const attachmentsModule: AppModule = {
  name: 'attachments',
  plugin: fp(attachmentHousekeeping, { name: 'attachments-housekeeping', dependencies: ['services', 'workers'] }),
}
