ALTER TABLE "outbound_messages" ADD COLUMN "attachment_count" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
CREATE INDEX "outbound_messages_queued_by_connector_idx" ON "outbound_messages" USING btree ("connector_id","next_attempt_at") WHERE "outbound_messages"."status" = 'queued';--> statement-breakpoint
CREATE INDEX "outbound_messages_sending_idx" ON "outbound_messages" USING btree ("lease_expires_at") WHERE "outbound_messages"."status" = 'sending';--> statement-breakpoint
UPDATE "outbound_messages" m SET "attachment_count" = (SELECT count(*) FROM "outbound_attachments" a WHERE a."message_id" = m."id");
