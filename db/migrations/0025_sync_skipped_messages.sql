ALTER TABLE "mailbox_folder_syncs" ADD COLUMN "messages_skipped" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "mailbox_folder_syncs" ADD COLUMN "last_skipped" jsonb;