ALTER TABLE "outbound_attachments" ALTER COLUMN "blob_id" SET NOT NULL;--> statement-breakpoint
ALTER TABLE "outbound_attachments" DROP COLUMN "content";