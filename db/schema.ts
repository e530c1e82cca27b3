/**
 * Drizzle table definitions: the single source of truth for stored shapes.
 * Migrations under db/migrations are generated from this file by `npm run db:generate`.
 */
export * from './tables/api-keys.ts'
export * from './tables/audit-events.ts'
export * from './tables/integrations.ts'
export * from './tables/connection-tests.ts'
export * from './tables/connectors.ts'
export * from './tables/messages.ts'
export * from './tables/events.ts'
export * from './tables/inbound.ts'
export * from './tables/mailbox-sync.ts'
export * from './tables/mailbox-gates.ts'
export * from './tables/webhooks.ts'
export * from './tables/server-instances.ts'
